//! Activity sources: a crash between fetching and committing loses and duplicates nothing,
//! a restart resumes from the cursor, bad rows cost only themselves, and an event for an
//! unknown customer waits in quarantine until the customer exists.

use std::path::Path;

use attune::config::SourceConfig;
use attune::jobs::JobContext;
use attune::jobs::sources::{self, PullOptions};
use attune::store::Db;

use super::helpers::{TestDb, customer, d, email_only, exec, scalar};
use crate::both_backends;

fn files_source(dir: &Path, batch: usize) -> SourceConfig {
    toml::from_str(&format!(
        "name = \"crm\"\ntype = \"files\"\ndir = {:?}\nbatch = {batch}\ncommit_rows = {batch}\n",
        dir.display().to_string()
    ))
    .unwrap()
}

pub(crate) async fn add_customers(db: &Db, ids: &[&str]) {
    let cs: Vec<_> = ids
        .iter()
        .map(|id| customer(id, d("2025-01-01"), email_only()))
        .collect();
    db.upsert_customers(&cs).await.unwrap();
}

async fn event_count(db: &Db) -> i64 {
    db.counts().await.unwrap().events
}

/// Events counted in the daily rollups.
async fn rollup_total(db: &Db) -> i64 {
    let sql = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM activity_daily";
    match db {
        Db::Sqlite(p, ..) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
    }
}

const EVENTS: &str = "\
customer_id,kind,occurred_at,value,source_event_id
c1,login,2026-03-01T09:00:00Z,,e1
c1,usage,2026-03-01,12.5,e2
c2,teleport,2026-03-02,,e3
c2,usage,soon,1,e4
c2,usage,2026-03-02,-5,e5
c2,login,2026-03-02,,e6,extra
c3,login,2026-03-03,,e7
c2,payment_made,2026-03-04,40,e8
";

async fn files_crash_bad_rows_and_unknown_customers(t: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    add_customers(&t.db, &["c1", "c2"]).await;
    std::fs::write(dir.path().join("events-march.csv"), EVENTS).unwrap();
    let src = files_source(dir.path(), 100);
    let ctx = t.ctx(|c| c.sources = vec![src.clone()]);

    // A crash after the batch is written but before it commits: nothing is kept, the file
    // stays where it was.
    let crash = PullOptions {
        fail_at_batch: Some(0),
    };
    assert!(sources::pull_source(&ctx, &src, crash).await.is_err());
    assert_eq!(event_count(&t.db).await, 0);
    assert_eq!(rollup_total(&t.db).await, 0);
    assert!(t.db.quarantined(true, None, 100).await.unwrap().is_empty());
    assert!(dir.path().join("events-march.csv").exists());

    // The restart takes it once: good rows stored, each bad row quarantined with its reason.
    let r = sources::pull_source(&ctx, &src, PullOptions::default())
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicate, r.quarantined), (3, 0, 5));
    assert_eq!(event_count(&t.db).await, 3);
    assert_eq!(rollup_total(&t.db).await, 3);
    let q = t.db.quarantined(false, None, 100).await.unwrap();
    let got: Vec<(&str, &str)> = q
        .iter()
        .map(|r| (r.location.as_deref().unwrap(), r.reason_code.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("events-march.csv:4", "unknown_kind"),
            ("events-march.csv:5", "bad_timestamp"),
            ("events-march.csv:6", "bad_value"),
            ("events-march.csv:7", "malformed"),
            ("events-march.csv:8", "unknown_customer"),
        ]
    );
    assert!(!dir.path().join("events-march.csv").exists());
    let listing =
        std::fs::read_to_string(dir.path().join("rejected/events-march.csv.rejected.txt")).unwrap();
    assert_eq!(listing.lines().count(), 5, "{listing}");
    assert!(
        listing.contains("events-march.csv:4: column kind: unknown event kind \"teleport\""),
        "{listing}"
    );
    assert!(dir.path().join("rejected/events-march.csv").exists());

    // The same file dropped again stores nothing twice and quarantines nothing twice.
    std::fs::write(dir.path().join("events-march.csv"), EVENTS).unwrap();
    let r = sources::pull_source(&ctx, &src, PullOptions::default())
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicate), (0, 3));
    assert_eq!(event_count(&t.db).await, 3);
    assert_eq!(t.db.quarantined(false, None, 100).await.unwrap().len(), 5);

    // The unknown customer arrives: a retry stores their event, the rest stay.
    add_customers(&t.db, &["c3"]).await;
    let o = sources::retry_quarantine(&ctx).await.unwrap();
    assert_eq!((o.released, o.still_quarantined), (1, 4));
    assert_eq!(event_count(&t.db).await, 4);
    assert_eq!(rollup_total(&t.db).await, 4);
}
both_backends!(
    files_source_survives_a_crash_and_keeps_good_rows,
    super::files_crash_bad_rows_and_unknown_customers
);

async fn files_resume_mid_file(t: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    add_customers(&t.db, &["c1"]).await;
    let mut csv = String::from("customer_id,kind,occurred_at,source_event_id\n");
    for i in 0..10 {
        csv.push_str(&format!("c1,login,2026-03-{:02},e{i}\n", i + 1));
    }
    std::fs::write(dir.path().join("events.csv"), &csv).unwrap();
    let src = files_source(dir.path(), 3);
    let ctx = t.ctx(|c| c.sources = vec![src.clone()]);
    // Batches of 3: the first two commit, the third fails.
    let crash = PullOptions {
        fail_at_batch: Some(2),
    };
    assert!(sources::pull_source(&ctx, &src, crash).await.is_err());
    assert_eq!(event_count(&t.db).await, 6);
    // The restart resumes after line 7: it reads only the rest, so nothing is a duplicate.
    let r = sources::pull_source(&ctx, &src, PullOptions::default())
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicate, r.quarantined), (4, 0, 0));
    assert_eq!(event_count(&t.db).await, 10);
    assert_eq!(r.files[0].outcome, "done");
    assert_eq!((r.files[0].stored, r.files[0].duplicate), (10, 0));
    assert!(dir.path().join("done/events.csv").exists());
}
both_backends!(
    files_source_resumes_from_the_last_committed_line,
    super::files_resume_mid_file
);

/// An external database with a billing table, in the company's own names.
async fn billing_table(t: &TestDb, dir: &Path) -> (SourceConfig, String) {
    let ddl = "CREATE TABLE billing_events (id INTEGER PRIMARY KEY, acct TEXT, type TEXT, ts TEXT, amount DOUBLE PRECISION)";
    let url = match &t.db {
        Db::Sqlite(..) => {
            let path = dir.join("billing.db");
            let url = format!("sqlite://{}", path.display());
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            sqlx::query(ddl).execute(&pool).await.unwrap();
            pool.close().await;
            url
        }
        // The test's own database stands in for the company's replica.
        Db::Postgres(p) => {
            sqlx::query(ddl).execute(p).await.unwrap();
            let name: String = sqlx::query_scalar("SELECT current_database()")
                .fetch_one(p)
                .await
                .unwrap();
            let admin = std::env::var(super::helpers::PG_ENV).unwrap();
            format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
        }
    };
    let src: SourceConfig = toml::from_str(&format!(
        r#"
name = "billing"
type = "sql"
url = "{url}"
query = "SELECT id, acct, type, ts, amount FROM billing_events WHERE id > $1 ORDER BY id LIMIT $2"
cursor_column = "id"
batch = 4
[columns]
customer_id = "acct"
kind = "type"
occurred_at = "ts"
value = "amount"
source_event_id = "id"
[kinds]
BILL = "invoice_issued"
PAY = "payment_made"
"#
    ))
    .unwrap();
    (src, url)
}

async fn insert_billing(t: &TestDb, url: &str, from: i64, to: i64, acct: &str) {
    let rows: Vec<(i64, String, &str, String, f64)> = (from..to)
        .map(|i| {
            (
                i,
                acct.to_owned(),
                if i % 2 == 0 { "BILL" } else { "PAY" },
                format!("2026-03-{:02}T10:00:00Z", (i % 28) + 1),
                40.0,
            )
        })
        .collect();
    let sql = "INSERT INTO billing_events (id, acct, type, ts, amount) VALUES ($1, $2, $3, $4, $5)";
    match &t.db {
        Db::Sqlite(..) => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            for r in rows {
                sqlx::query(sql)
                    .bind(r.0)
                    .bind(r.1)
                    .bind(r.2)
                    .bind(r.3)
                    .bind(r.4)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        Db::Postgres(p) => {
            for r in rows {
                sqlx::query(sql)
                    .bind(r.0)
                    .bind(r.1)
                    .bind(r.2)
                    .bind(r.3)
                    .bind(r.4)
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
    }
}

async fn sql_crash_and_resume(t: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    add_customers(&t.db, &["acct-1"]).await;
    let (src, url) = billing_table(t, dir.path()).await;
    insert_billing(t, &url, 1, 11, "acct-1").await;
    let ctx: JobContext = t.ctx(|c| c.sources = vec![src.clone()]);

    // Batches of 4: the first commits with its cursor, the second fails before commit.
    let crash = PullOptions {
        fail_at_batch: Some(1),
    };
    assert!(sources::pull_source(&ctx, &src, crash).await.is_err());
    assert_eq!(event_count(&t.db).await, 4);
    assert_eq!(
        t.db.source_cursor("billing").await.unwrap().as_deref(),
        Some("4")
    );

    // The restart fetches from the cursor: rows 5..10, none a duplicate.
    let r = sources::pull_source(&ctx, &src, PullOptions::default())
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicate), (6, 0));
    assert_eq!(r.cursor.as_deref(), Some("10"));
    assert_eq!(event_count(&t.db).await, 10);

    // New rows, some for a customer attune does not know yet.
    insert_billing(t, &url, 11, 13, "acct-1").await;
    insert_billing(t, &url, 13, 14, "acct-2").await;
    let r = sources::pull_source(&ctx, &src, PullOptions::default())
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicate, r.quarantined), (2, 0, 1));
    assert_eq!(r.cursor.as_deref(), Some("13"));
    let kinds: Vec<(String, String)> = match &t.db {
        Db::Sqlite(p, ..) => sqlx::query_as(
            "SELECT k.name, e.source FROM events e JOIN event_kinds k ON k.code = e.kind ORDER BY e.id LIMIT 2",
        )
            .fetch_all(p)
            .await
            .unwrap(),
        Db::Postgres(p) => sqlx::query_as("SELECT kind, source FROM events ORDER BY id LIMIT 2")
            .fetch_all(p)
            .await
            .unwrap(),
    };
    assert_eq!(kinds[0], ("payment_made".into(), "billing".into()));
    assert_eq!(kinds[1], ("invoice_issued".into(), "billing".into()));

    add_customers(&t.db, &["acct-2"]).await;
    let o = sources::retry_quarantine(&ctx).await.unwrap();
    assert_eq!((o.released, o.still_quarantined), (1, 0));
    assert_eq!(event_count(&t.db).await, 13);
}
both_backends!(
    sql_source_resumes_from_its_cursor,
    super::sql_crash_and_resume
);

async fn http_batches(t: &TestDb) {
    add_customers(&t.db, &["c1"]).await;
    let src: SourceConfig = toml::from_str(
        "name = \"app\"\ntype = \"http\"\ntoken_env = \"X\"\n[kinds]\nvisit = \"login\"\n",
    )
    .unwrap();
    let ctx = t.ctx(|c| c.sources = vec![src.clone()]);
    let ids = t.db.customer_ids().await.unwrap();
    let body = br#"[
        {"customer_id": "c1", "kind": "visit", "occurred_at": "2026-03-01T10:00:00Z", "source_event_id": "v1"},
        {"customer_id": "c1", "kind": "usage", "occurred_at": "2026-03-01", "value": 3.5, "source_event_id": "u1"},
        {"customer_id": "c9", "kind": "login", "occurred_at": "2026-03-01", "source_event_id": "x1"},
        {"customer_id": "c1", "kind": "usage", "occurred_at": "2026-03-01", "value": "lots", "source_event_id": "u2"},
        "not an object"
    ]"#;
    let r = sources::http::ingest_body(&ctx, &src, &ids, body, JSON, "request 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.accepted, r.duplicate, r.rejected), (2, 0, 3));
    let reasons: Vec<(usize, &str)> = r.rejections.iter().map(|x| (x.index, x.code)).collect();
    assert_eq!(
        reasons,
        [(2, "unknown_customer"), (3, "bad_value"), (4, "malformed")]
    );
    assert!(r.rejections.iter().all(|x| x.quarantined));
    // The client retries the same request: nothing is stored or quarantined twice.
    let r = sources::http::ingest_body(&ctx, &src, &ids, body, JSON, "request 2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.accepted, r.duplicate, r.rejected), (0, 2, 3));
    assert_eq!(event_count(&t.db).await, 2);
    assert_eq!(t.db.quarantined(false, None, 100).await.unwrap().len(), 3);
    // A body that is not JSON at all is refused whole, with the reason.
    let e = sources::http::ingest_body(&ctx, &src, &ids, b"[{", JSON, "request 3")
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.0.contains("not valid JSON"), "{e}");
}
both_backends!(http_batches_answer_per_event, super::http_batches);

const JSON: sources::http::BodyFormat = sources::http::BodyFormat::JsonArray;

async fn post_events(
    router: &axum::Router,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    post_events_as(router, token, "application/json", body).await
}

async fn post_events_as(
    router: &axum::Router,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::post("/v1/events").header("content-type", content_type);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router
        .clone()
        .oneshot(req.body(axum::body::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn http_endpoint(t: &TestDb) {
    add_customers(&t.db, &["c1"]).await;
    // The token is read from the variable `token_env` names; cargo sets CARGO_PKG_NAME
    // ("attune") for every test process, so it stands in for a secret here.
    let src: SourceConfig =
        toml::from_str("name = \"app\"\ntype = \"http\"\ntoken_env = \"CARGO_PKG_NAME\"\n")
            .unwrap();
    let ctx = t.ctx(|c| c.sources = vec![src]);
    let router = attune::http::router(attune::http::AppState::new(ctx));
    let body = br#"[{"customer_id":"c1","kind":"login","occurred_at":"2026-03-01","source_event_id":"a"},
                    {"customer_id":"c1","kind":"usage","occurred_at":"2026-03-01","value":-1,"source_event_id":"b"}]"#;
    let (status, v) = post_events(&router, Some("attune"), body.to_vec()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["rejections"][0]["code"], "bad_value");
    assert_eq!(v["rejections"][0]["index"], 1);
    // NDJSON with the same events: the accepted one is a duplicate now.
    let nd = b"{\"customer_id\":\"c1\",\"kind\":\"login\",\"occurred_at\":\"2026-03-01\",\"source_event_id\":\"a\"}\n".to_vec();
    let (status, v) = post_events_as(&router, Some("attune"), "application/x-ndjson", nd).await;
    assert_eq!((status, v["duplicate"].as_u64()), (200, Some(1)));
    // No token, a wrong token, a body that is not JSON, a body that is too large: refused
    // with a reason, and nothing stored.
    let before = event_count(&t.db).await;
    let (status, v) = post_events(&router, None, body.to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    let (status, _) = post_events(&router, Some("guess"), body.to_vec()).await;
    assert_eq!(status, 401);
    let (status, v) = post_events(&router, Some("attune"), b"[{".to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{v}"
    );
    let huge = vec![b' '; attune::http::events::MAX_BODY + 1];
    let (status, v) = post_events(&router, Some("attune"), huge).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "a JSON error, as every refusal: {v}"
    );
    // The contract the README documents: a body sent as anything but JSON or NDJSON is
    // 415; an object where the array belongs, or a line of NDJSON that is not JSON, is
    // 400, and nothing of the request is stored.
    let (status, v) = post_events_as(&router, Some("attune"), "text/plain", body.to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{v}"
    );
    let object =
        br#"{"customer_id":"c1","kind":"login","occurred_at":"2026-03-02","source_event_id":"o"}"#;
    let (status, v) = post_events(&router, Some("attune"), object.to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an array"),
        "{v}"
    );
    let nd = b"{\"customer_id\":\"c1\",\"kind\":\"login\",\"occurred_at\":\"2026-03-02\",\"source_event_id\":\"n\"}\n{\"customer_id\": \n".to_vec();
    let (status, v) = post_events_as(&router, Some("attune"), "application/x-ndjson", nd).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2 "),
        "{v}"
    );
    assert_eq!(event_count(&t.db).await, before);
}
both_backends!(
    http_endpoint_authenticates_and_answers,
    super::http_endpoint
);

/// Ingest notes changed customers in a log; reading the marks folds it in first, so a
/// customer with new events is marked with when, a run clears only what it started after,
/// and a change during a run stays marked for the next.
async fn changed_marks(t: &TestDb) {
    add_customers(&t.db, &["c1", "c2"]).await;
    let far = i64::MAX / 2;
    t.db.clear_changes(None, far).await.unwrap();
    assert!(t.db.changed_customers(100).await.unwrap().is_empty());

    let event = |id: &str, sid: &str| attune::domain::ActivityEvent {
        customer: attune::domain::CustomerId::parse(id).unwrap(),
        kind: attune::domain::Meaning::Login.code(),
        occurred_at: chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
        value: None,
        attributes: Default::default(),
        source: "app".into(),
        source_event_id: sid.into(),
    };
    let before = chrono::Utc::now().timestamp() - 5;
    let r =
        t.db.insert_events(&[event("c1", "a"), event("c1", "b")])
            .await
            .unwrap();
    assert_eq!((r.stored, r.customers_changed), (2, 1));
    let ids = t.db.customer_ids().await.unwrap();
    let c1 = ids.get("c1").unwrap();
    let marked = t.db.changed_customers(100).await.unwrap();
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].0, c1);
    assert!(marked[0].1 >= before, "marked with when it changed");

    // A run that started before the change leaves it marked; one after clears it.
    assert_eq!(
        t.db.clear_changes(Some(&[c1]), before - 10).await.unwrap(),
        0
    );
    assert_eq!(t.db.changed_customers(100).await.unwrap().len(), 1);
    assert_eq!(t.db.clear_changes(Some(&[c1]), far).await.unwrap(), 1);
    assert!(t.db.changed_customers(100).await.unwrap().is_empty());

    // A duplicate changes nothing, so marks nothing.
    let r = t.db.insert_events(&[event("c1", "a")]).await.unwrap();
    assert_eq!((r.stored, r.duplicate, r.customers_changed), (0, 1, 0));
    assert!(t.db.changed_customers(100).await.unwrap().is_empty());

    // A full run (no ids) clears without folding the log first: log entries and marks
    // up to its start go, and what is left folds to the marks a fold first would leave.
    let c2 = ids.get("c2").unwrap();
    exec(
        &t.db,
        &format!(
            "INSERT INTO activity_changes (customer_id, changed_at) VALUES ({c1}, 300), ({c2}, 50);
             INSERT INTO activity_changes_log (changed_at, customer_id) VALUES (100, {c1}), (100, {c2}), (200, {c2})"
        ),
    )
    .await;
    t.db.clear_changes(None, 150).await.unwrap();
    let mut left = t.db.changed_customers(100).await.unwrap();
    left.sort_unstable();
    assert_eq!(left, vec![(c1, 300), (c2, 200)]);
    // Nothing later than the run: both emptied.
    exec(
        &t.db,
        &format!("INSERT INTO activity_changes_log (changed_at, customer_id) VALUES (120, {c1})"),
    )
    .await;
    assert_eq!(t.db.clear_changes(None, 1_000).await.unwrap(), 2);
    assert!(t.db.changed_customers(100).await.unwrap().is_empty());
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM activity_changes_log").await,
        0
    );
}
both_backends!(
    changed_customers_are_marked_and_cleared_by_the_runs_after,
    super::changed_marks
);

/// With an `http` source, `/readyz` answers 503 until the customer ids `/v1/events`
/// resolves events with are loaded (the probe starts the load), then 200.
async fn ready_once_ids_are_loaded(t: &TestDb) {
    use tower::ServiceExt as _;
    add_customers(&t.db, &["c1"]).await;
    let src: SourceConfig =
        toml::from_str("name = \"app\"\ntype = \"http\"\ntoken_env = \"CARGO_PKG_NAME\"\n")
            .unwrap();
    let ctx = t.ctx(|c| c.sources = vec![src]);
    let router = attune::http::router(attune::http::AppState::new(ctx));
    let mut seen = Vec::new();
    for _ in 0..200 {
        let res = router
            .clone()
            .oneshot(
                axum::http::Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: serde_json::Value = serde_json::from_slice(
            &axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
        .unwrap();
        seen.push(status);
        if status == 200 {
            assert_eq!(body["status"], "ready");
            break;
        }
        assert_eq!(
            (status, &body["error"]["code"]),
            (503, &serde_json::json!("warming_up"))
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.first(),
        Some(&503),
        "not ready before the ids are loaded: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&200), "ready once they are: {seen:?}");
}
both_backends!(
    readiness_waits_for_the_customer_ids_of_an_http_source,
    super::ready_once_ids_are_loaded
);

/// Every kind is stored and read back under its own name, on both backends (SQLite stores
/// the kind's code and no attributes as NULL; PostgreSQL the name and jsonb), and the
/// complaint readers pick out exactly the complaint kinds.
async fn every_kind_reads_back_by_name(t: &TestDb) {
    use attune::domain::{ActivityEvent, CustomerId, Meaning};
    add_customers(&t.db, &["k1", "k2"]).await;
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(i as i64)
    };
    let events: Vec<ActivityEvent> = Meaning::ALL
        .iter()
        .enumerate()
        .map(|(i, k)| ActivityEvent {
            // The churned event goes to another customer: it ends k1's relationship.
            customer: CustomerId::parse(if *k == Meaning::Churned { "k2" } else { "k1" }).unwrap(),
            kind: k.code(),
            occurred_at: at(i),
            value: (*k == Meaning::ComplaintResolved).then_some(4.0),
            // Every other event carries an attribute, so both spellings of none are stored.
            attributes: if i % 2 == 0 {
                [("channel".to_owned(), "app".to_owned())].into()
            } else {
                Default::default()
            },
            source: "kinds".into(),
            source_event_id: format!("e{i}"),
        })
        .collect();
    let counts = t.db.insert_events(&events).await.unwrap();
    assert_eq!(counts.stored, Meaning::ALL.len() as u64);
    let id =
        t.db.customer_by_external_id("k1")
            .await
            .unwrap()
            .unwrap()
            .id;
    let mut read = t.db.customer_events(id, 100).await.unwrap();
    read.reverse();
    let names: Vec<&str> = read.iter().map(|e| e.kind.as_str()).collect();
    let want: Vec<&str> = Meaning::ALL
        .iter()
        .filter(|k| **k != Meaning::Churned)
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, want);
    // A churned event sets its customer's churned_on to its day.
    let k2 = t.db.customer_by_external_id("k2").await.unwrap().unwrap();
    let (_, k2) =
        t.db.customers_with_ids(&[k2.id])
            .await
            .unwrap()
            .pop()
            .unwrap();
    assert_eq!(k2.churned_on, Some(at(Meaning::ALL.len() - 1).date_naive()));
    let complaints = t.db.customer_complaints(id).await.unwrap();
    assert_eq!(complaints.len(), 1, "{complaints:?}");
    // The complaint was reopened after it was resolved: it is open again.
    let open = t.db.open_problems(10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].customer_id, id);
}
both_backends!(
    every_event_kind_is_stored_and_read_back_by_name,
    super::every_kind_reads_back_by_name
);

/// SQLite's `events_narrow` migration turns each stored kind name into its code and '{}'
/// into NULL, and keeps every event and every other column.
#[tokio::test]
async fn sqlite_events_narrow_migration_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("old.db"))
            .create_if_missing(true),
    )
    .await
    .unwrap();
    let mut files: Vec<_> = std::fs::read_dir("migrations/sqlite")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let narrow = "20261202000003_events_narrow.sql";
    let (before, after): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|p| p.file_name().unwrap().to_str().unwrap() < narrow);
    assert_eq!(after[0].file_name().unwrap(), narrow);
    let run = |p: &Path| {
        let sql = std::fs::read_to_string(p).unwrap();
        let pool = pool.clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap()
        }
    };
    for p in &before {
        run(p).await;
    }
    sqlx::raw_sql(
        "INSERT INTO events (day, customer_id, source, source_event_id, id, kind, occurred_at, value, attributes, ingested_at) VALUES
             (20513, 1, 'crm', 'a', 1, 'complaint_opened', 1772323200, NULL, '{}', 5),
             (20514, 1, 'crm', 'b', 2, 'usage', 1772409600, 2.5, '{\"channel\":\"app\"}', 6),
             (20515, 1, 'crm', 'c', 3, 'churned', 1772496000, NULL, '{}', 7);",
    )
    .execute(&pool)
    .await
    .unwrap();
    run(&after[0]).await;
    type Row = (
        i64,
        i64,
        String,
        String,
        i64,
        i64,
        i64,
        Option<f64>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT day, customer_id, source, source_event_id, id, kind, occurred_at, value, attributes, ingested_at
         FROM events ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let kv = |s: &str, sid: &str, id, kind, at, v, a: Option<&str>, ing| -> Row {
        let day = at / 86_400;
        (
            day,
            1,
            s.into(),
            sid.into(),
            id,
            kind,
            at,
            v,
            a.map(Into::into),
            ing,
        )
    };
    assert_eq!(
        rows,
        vec![
            kv("crm", "a", 1, 6, 1772323200, None, None, 5),
            kv(
                "crm",
                "b",
                2,
                1,
                1772409600,
                Some(2.5),
                Some("{\"channel\":\"app\"}"),
                6
            ),
            kv("crm", "c", 3, 14, 1772496000, None, None, 7),
        ]
    );
    pool.close().await;
}
