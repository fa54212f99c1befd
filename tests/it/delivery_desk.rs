//! Deliveries as people see and steer them (issue 20): `attune deliveries`, the
//! `/v1/deliveries` API and the desk's nudge and overview pages. A nudge approved on the
//! desk gets its delivery from the database's trigger; it is listed pending, cancelled
//! once (a second cancel is refused with the reason), sent again by a retry, and a failed
//! one shows the receiver's answer; each change is audited, and a refused one changes
//! nothing.

use serde_json::Value;

use super::api_desk::{Desk, desk, send};
use super::deliveries::exec;
use super::helpers::TestDb;
use super::web::{csrf_of, form, page, sign_in};
use crate::both_backends;

/// Nudge 1 of the fixture (proposed, email, cust-0) approved through the API; its
/// delivery is made by the trigger.
async fn approve_first(d: &Desk) {
    let a = d
        .post(
            "/v1/nudges/1/decision",
            "reviewer",
            r#"{"decision":"approve"}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["status"], "approved");
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|d| d["nudge_id"].as_i64().unwrap())
        .collect()
}

/// `value`'s keys are those `schema` (a component of the OpenAPI document) describes, and
/// it has every one the schema requires.
#[track_caller]
fn matches_schema(value: &Value, schema: &str) {
    let doc = attune::http::openapi_document();
    let s = &doc["components"]["schemas"][schema];
    let props = s["properties"].as_object().unwrap();
    let obj = value.as_object().unwrap_or_else(|| panic!("{value}"));
    for k in obj.keys() {
        assert!(props.contains_key(k), "{schema} does not document {k}");
    }
    for r in s["required"].as_array().unwrap() {
        assert!(obj.contains_key(r.as_str().unwrap()), "{value} lacks {r}");
    }
}

async fn the_api_lists_retries_and_cancels(t: &TestDb) {
    let d = desk(t).await;
    // The fixture's approved nudges (15, 30, 45, 60) have theirs already.
    let v = d.get("/v1/deliveries", "viewer").await.json();
    assert_eq!(v["counts"]["pending"], 4, "{v}");
    approve_first(&d).await;
    let a = d.get("/v1/deliveries", "viewer").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["limit"], 50);
    let mut listed = ids(&v);
    listed.sort_unstable();
    assert_eq!(listed, [1, 15, 30, 45, 60]);
    matches_schema(&v["counts"], "DeliveryCounts");
    assert_eq!(v["counts"]["pending"], 5, "{v}");
    let first = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["nudge_id"] == 1)
        .unwrap();
    matches_schema(first, "Delivery");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["customer"], "cust-0");
    assert_eq!(first["rule"], "welcome");
    assert_eq!(first["channel"], "email");
    assert_eq!(first["attempts"], 0);
    // Filters: the fixture's nudges 30 and 60 are sms, 1, 15 and 45 email.
    let v = d
        .get(
            "/v1/deliveries?status=pending&channel=text&limit=10",
            "viewer",
        )
        .await
        .json();
    let mut sms = ids(&v);
    sms.sort_unstable();
    assert_eq!(sms, [30, 60], "{v}");
    assert!(ids(&d.get("/v1/deliveries?status=sent", "viewer").await.json()).is_empty());
    assert_eq!(
        ids(&d.get("/v1/deliveries?limit=2", "viewer").await.json()).len(),
        2
    );
    // One delivery.
    let v = d.get("/v1/deliveries/1", "viewer").await.json();
    matches_schema(&v, "Delivery");
    assert_eq!(
        (v["nudge_id"].as_i64(), v["status"].as_str()),
        (Some(1), Some("pending"))
    );
    d.get("/v1/deliveries/2", "viewer").await.refused(
        404,
        "not_found",
        "nudge 2 has no delivery: it is proposed",
    );
    d.get("/v1/deliveries/99999", "viewer").await.refused(
        404,
        "not_found",
        "there is no nudge 99999",
    );
    // Bad input names the parameter.
    for (uri, words) in [
        (
            "/v1/deliveries?status=lost",
            "status: unknown delivery status \"lost\"",
        ),
        ("/v1/deliveries?status=", "status: is empty"),
        (
            "/v1/deliveries?channel=pigeon",
            "channel: unknown channel \"pigeon\"",
        ),
        (
            "/v1/deliveries?limit=0",
            "limit: \"0\" is not a whole number",
        ),
        ("/v1/deliveries?limit=201", "limit:"),
        (
            "/v1/deliveries?route=crm",
            "unknown query parameter \"route\"",
        ),
        ("/v1/deliveries?status=sent&status=dead", "more than once"),
        ("/v1/deliveries/abc", "id: \"abc\" is not a nudge id"),
        ("/v1/deliveries/0", "id: \"0\""),
    ] {
        d.get(uri, "viewer")
            .await
            .refused(400, "invalid_parameter", words);
    }
    d.get("/v1/deliveries", "nobody")
        .await
        .refused(401, "unauthenticated", "sign in");

    // A viewer may not change a delivery; nothing changes.
    let audit_before = t.db.audit_entries(100_000).await.unwrap().len();
    d.post("/v1/deliveries/1/cancel", "viewer", "")
        .await
        .refused(403, "forbidden", "cannot retry or cancel deliveries");
    assert_eq!(t.db.delivery(1).await.unwrap().unwrap().status, "pending");
    // Cancel works once, then says why not.
    let a = d.post("/v1/deliveries/1/cancel", "reviewer", "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    matches_schema(&v, "Delivery");
    assert_eq!(v["status"], "cancelled");
    d.post("/v1/deliveries/1/cancel", "reviewer", "")
        .await
        .refused(
            409,
            "conflict",
            "the delivery of nudge 1 is cancelled: it will not be sent; only a pending delivery can be cancelled",
        );
    // A retry of the cancelled one makes it pending again, due now; a second is refused.
    let a = d.post("/v1/deliveries/1/retry", "reviewer", "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(
        (v["status"].as_str(), v["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    assert!(v["next_at"].as_i64().unwrap() <= attune::store::now_secs());
    d.post("/v1/deliveries/1/retry", "reviewer", "")
        .await
        .refused(
            409,
            "conflict",
            "only a failed (dead) or cancelled delivery can be retried",
        );
    d.post("/v1/deliveries/2/retry", "reviewer", "")
        .await
        .refused(404, "not_found", "nudge 2 has no delivery");
    d.post("/v1/deliveries/x/cancel", "reviewer", "")
        .await
        .refused(400, "invalid_parameter", "id: \"x\"");
    // Each change is in the audit log, by who asked; refusals wrote nothing.
    let audit = t.db.audit_entries(100_000).await.unwrap();
    assert_eq!(audit.len(), audit_before + 2);
    let mine: Vec<(String, String, String)> = audit[..2]
        .iter()
        .map(|e| (e.actor.clone(), e.action.clone(), e.subject.clone()))
        .collect();
    assert_eq!(
        mine,
        [
            ("reviewer".into(), "delivery.retry".into(), "nudge:1".into()),
            (
                "reviewer".into(),
                "delivery.cancel".into(),
                "nudge:1".into()
            ),
        ]
    );
    // A session call needs the CSRF header, as every unsafe API call does.
    let cookie = sign_in(&d, "reviewer").await.0;
    let req = axum::http::Request::post("/v1/deliveries/1/cancel")
        .header("cookie", cookie)
        .body(axum::body::Body::empty())
        .unwrap();
    send(&d.app, req)
        .await
        .refused(403, "csrf_token_invalid", "X-CSRF-Token");
    assert_eq!(t.db.delivery(1).await.unwrap().unwrap().status, "pending");
    // The document describes the four operations.
    let ops = attune::http::openapi_operations();
    for (method, path) in [
        ("GET", "/v1/deliveries"),
        ("GET", "/v1/deliveries/{id}"),
        ("POST", "/v1/deliveries/{id}/retry"),
        ("POST", "/v1/deliveries/{id}/cancel"),
    ] {
        assert!(
            ops.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not in the OpenAPI document"
        );
    }
}
both_backends!(
    deliveries_api_lists_cancels_and_retries,
    super::the_api_lists_retries_and_cancels
);

/// `attune deliveries list / cancel / retry`, for people and with `--json`; a refusal says
/// why and exits non-zero.
async fn the_cli_lists_retries_and_cancels(t: &TestDb) {
    let d = desk(t).await;
    approve_first(&d).await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
            .args(["--db", &t.url])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let refused = |args: &[&str], words: &str| {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should be refused");
        assert!(
            err.contains(words),
            "{args:?}: {err:?} should say {words:?}"
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&ok(&["--json", "deliveries", "list"])).unwrap();
    let mut listed = ids(&v);
    listed.sort_unstable();
    assert_eq!(listed, [1, 15, 30, 45, 60]);
    assert_eq!(v["counts"]["pending"], 5);
    assert_eq!(v["paused_channels"], serde_json::json!([]));
    let v: Value = serde_json::from_str(&ok(&[
        "--json",
        "deliveries",
        "list",
        "--status",
        "pending",
        "--channel",
        "email",
        "--limit",
        "1",
    ]))
    .unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["items"][0]["channel"], "email");
    let text = ok(&["deliveries", "list", "--status", "pending"]);
    assert!(text.contains("5 deliveries shown"), "{text}");
    assert!(
        text.contains(
            "in all: 0 sent, 5 pending, 0 retrying, 0 failed (dead), 0 blocked, 0 cancelled"
        ),
        "{text}"
    );
    assert!(
        text.contains("cust-0") && text.contains("welcome"),
        "{text}"
    );
    assert_eq!(
        ok(&["deliveries", "list", "--status", "sent"])
            .lines()
            .next(),
        Some("no sent deliveries")
    );

    // Cancel once; the second is refused, saying why, and exits non-zero.
    let text = ok(&["deliveries", "cancel", "1", "--by", "maria"]);
    assert!(
        text.contains("cancelled the delivery of nudge 1: cancelled: it will not be sent"),
        "{text}"
    );
    assert_eq!(t.db.delivery(1).await.unwrap().unwrap().status, "cancelled");
    let audit = t.db.audit_entries(1).await.unwrap();
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("maria", "delivery.cancel")
    );
    refused(
        &["deliveries", "cancel", "1"],
        "the delivery of nudge 1 is cancelled",
    );
    let out = refused(
        &["--json", "deliveries", "cancel", "1"],
        "only a pending delivery can be cancelled",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"], false);
    assert_eq!(v["error"]["code"], "conflict");
    // A retry of the cancelled one makes it pending.
    let v: Value = serde_json::from_str(&ok(&[
        "--json",
        "deliveries",
        "retry",
        "1",
        "--by",
        "maria",
    ]))
    .unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(v["delivery"]["status"], "pending");
    assert_eq!(t.db.delivery(1).await.unwrap().unwrap().status, "pending");
    refused(
        &["deliveries", "retry", "1"],
        "only a failed (dead) or cancelled delivery can be retried",
    );
    refused(&["deliveries", "retry", "2"], "nudge 2 has no delivery");
    refused(
        &["deliveries", "cancel", "99999"],
        "there is no nudge 99999",
    );
    refused(
        &["deliveries", "list", "--status", "lost"],
        "unknown delivery status \"lost\"",
    );
    refused(
        &["deliveries", "list", "--channel", "pigeon"],
        "--channel: unknown channel \"pigeon\"",
    );
    refused(&["deliveries", "list", "--limit", "0"], "--limit 0");
}
both_backends!(
    deliveries_cli_lists_cancels_and_retries,
    super::the_cli_lists_retries_and_cancels
);

/// The nudge page shows its delivery, and a reviewer cancels and retries it there; the
/// overview counts deliveries and names a paused channel with its reason.
async fn the_desk_shows_and_steers_deliveries(t: &TestDb) {
    let d = desk(t).await;
    approve_first(&d).await;
    let (reviewer, _) = sign_in(&d, "reviewer").await;
    let (viewer, _) = sign_in(&d, "viewer").await;
    let html = page(&d, "/nudges/1", &reviewer).await.text();
    assert!(
        html.contains("id=\"delivery\" data-status=\"pending\""),
        "{html}"
    );
    assert!(html.contains("waiting to be sent"), "{html}");
    assert!(html.contains("0 attempts"), "{html}");
    assert!(html.contains("id=\"delivery-cancel\""));
    assert!(!html.contains("id=\"delivery-retry\""));
    // A viewer sees it, without the buttons; a proposed nudge has none.
    let html = page(&d, "/nudges/1", &viewer).await.text();
    assert!(html.contains("id=\"delivery\"") && !html.contains("id=\"delivery-cancel\""));
    assert!(
        !page(&d, "/nudges/2", &reviewer)
            .await
            .text()
            .contains("id=\"delivery\"")
    );

    // Forms need the session's CSRF token and a reviewer.
    let csrf = csrf_of(&d, &reviewer).await;
    let a = form(&d, "/nudges/1/delivery", &reviewer, &[("action", "cancel")]).await;
    assert_eq!(a.status, 403);
    let viewer_csrf = csrf_of(&d, &viewer).await;
    let a = form(
        &d,
        "/nudges/1/delivery",
        &viewer,
        &[("csrf", &viewer_csrf), ("action", "cancel")],
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.text());
    let a = form(
        &d,
        "/nudges/1/delivery",
        &reviewer,
        &[("csrf", &csrf), ("action", "launch")],
    )
    .await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert_eq!(t.db.delivery(1).await.unwrap().unwrap().status, "pending");
    // Cancel, then a second cancel is refused with the reason.
    let a = form(
        &d,
        "/nudges/1/delivery",
        &reviewer,
        &[("csrf", &csrf), ("action", "cancel")],
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(a.headers["location"], "/nudges/1?done=cancelled");
    let html = page(&d, "/nudges/1?done=cancelled", &reviewer).await.text();
    assert!(html.contains("The delivery is cancelled; it will not be sent."));
    assert!(html.contains("id=\"delivery\" data-status=\"cancelled\""));
    assert!(html.contains("cancelled by a person"), "the reason");
    assert!(html.contains("id=\"delivery-retry\""));
    assert!(html.contains("cancelled the delivery") || html.contains("delivery.cancel"));
    let a = form(
        &d,
        "/nudges/1/delivery",
        &reviewer,
        &[("csrf", &csrf), ("action", "cancel")],
    )
    .await;
    assert_eq!(a.status, 409);
    assert!(
        a.text()
            .contains("only a pending delivery can be cancelled"),
        "{}",
        a.text()
    );
    let a = form(
        &d,
        "/nudges/1/delivery",
        &reviewer,
        &[("csrf", &csrf), ("action", "retry")],
    )
    .await;
    assert_eq!(a.headers["location"], "/nudges/1?done=retried");
    assert_eq!(t.db.delivery(1).await.unwrap().unwrap().status, "pending");

    // A delivery that ran out of attempts shows the receiver's answer and where it went.
    exec(
        t,
        "UPDATE deliveries SET status = 'dead', attempts = 5, route = 'crm_webhook',
         last_error = 'HTTP 503: the CRM is down for maintenance' WHERE nudge_id = 15",
    )
    .await;
    let html = page(&d, "/nudges/15", &reviewer).await.text();
    for words in [
        "data-status=\"dead\"",
        ">failed</span>",
        "failed: no more attempts after 5 attempts",
        "email, through crm webhook",
        "<code id=\"delivery-answer\">HTTP 503: the CRM is down for maintenance</code>",
        "id=\"delivery-retry\"",
    ] {
        assert!(html.contains(words), "the page shows {words:?}: {html}");
    }
    let a = form(
        &d,
        "/nudges/15/delivery",
        &reviewer,
        &[("csrf", &csrf), ("action", "retry")],
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.text());
    let after = t.db.delivery(15).await.unwrap().unwrap();
    assert_eq!((after.status.as_str(), after.attempts), ("pending", 0));

    // The overview: counts by status, and a channel paused now (one paused before is not).
    exec(
        t,
        "UPDATE deliveries SET status = 'sent', sent_at = updated_at WHERE nudge_id = 30",
    )
    .await;
    exec(
        t,
        "UPDATE deliveries SET attempts = 2, last_error = 'timed out' WHERE nudge_id = 45",
    )
    .await;
    let now = attune::store::now_secs();
    t.db.set_channel_state(
        "crm_webhook",
        5,
        Some(now + 3600),
        Some("HTTP 503 five times"),
    )
    .await
    .unwrap();
    t.db.set_channel_state("letters", 0, Some(now - 60), None)
        .await
        .unwrap();
    let html = page(&d, "/overview", &viewer).await.text();
    for (status, n) in [
        ("sent", 1),
        ("pending", 3),
        ("retrying", 1),
        ("dead", 0),
        ("blocked", 0),
        ("cancelled", 0),
    ] {
        assert!(
            html.contains(&format!("data-status=\"{status}\">{n}<")),
            "{status} {n}: {html}"
        );
    }
    assert!(html.contains("<th class=\"num\">Failed</th>"));
    assert!(
        html.contains("crm webhook is paused until ")
            && html.contains("after 5 failed attempts in a row: HTTP 503 five times"),
        "{html}"
    );
    assert!(!html.contains("letters is paused"), "{html}");
    assert!(!html.contains("No channel is paused."));
}
both_backends!(
    deliveries_on_the_desk_nudge_page_and_overview,
    super::the_desk_shows_and_steers_deliveries
);
