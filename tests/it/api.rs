//! The review desk's JSON API, in-process through the router: every endpoint, the paging
//! and filters against a known queue, decisions with their audit entries, and bad input
//! (unknown ids, invalid filters, wrong role, missing tokens, oversized bodies), each
//! answered with a clear JSON error and no change made.

use attune::store::SeedNudge;
use serde_json::{Value, json};

use super::api_desk::{Desk, N, desk, fixture, queued_at, snapshot};
use super::helpers::TestDb;
use crate::both_backends;

/// The fixture's ids a filter should list, in queue order: value at risk descending
/// (ties by id), then those without one by id.
fn expected(keep: impl Fn(&SeedNudge) -> bool) -> Vec<i64> {
    let all: Vec<(i64, SeedNudge)> = (0..N).map(|i| (i + 1, fixture(i, &[1]))).collect();
    let mut with: Vec<&(i64, SeedNudge)> = all
        .iter()
        .filter(|(_, n)| keep(n) && n.expected_value.is_some())
        .collect();
    with.sort_by(|a, b| {
        b.1.expected_value
            .partial_cmp(&a.1.expected_value)
            .unwrap()
            .then(a.0.cmp(&b.0))
    });
    let mut ids: Vec<i64> = with.iter().map(|(id, _)| *id).collect();
    ids.extend(
        all.iter()
            .filter(|(_, n)| keep(n) && n.expected_value.is_none())
            .map(|(id, _)| *id),
    );
    ids
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect()
}

/// Every page of a list, following next_cursor.
async fn all_pages(d: &Desk, query: &str, limit: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut uri = format!("/v1/nudges?limit={limit}&{query}");
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let a = d.get(&uri, "viewer").await;
        assert_eq!(a.status, 200, "{uri}: {}", a.text());
        let v = a.json();
        let page = ids(&v);
        assert!(page.len() as i64 <= limit);
        out.extend(page);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

async fn lists_filters_and_pages(t: &TestDb) {
    let d = desk(t).await;
    let proposed = |n: &SeedNudge| n.status == "proposed";
    // The default page: proposed, by value at risk, 50 at most.
    let a = d.get("/v1/nudges", "viewer").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let want = expected(proposed);
    assert_eq!(ids(&v), want[..50].to_vec());
    assert_eq!(v["limit"], 50);
    let first = &v["items"][0];
    assert_eq!(first["rule"], "welcome");
    assert_eq!(first["customer"], "cust-0");
    assert_eq!(first["effective_message"], "Hello from nudge 1");
    assert_eq!(first["reason"]["why"], "reason 0");
    // Paging by keyset returns every row once, in order, across ties and the rows
    // without a value at risk, whatever the page size.
    for limit in [1, 7, 50, 200] {
        assert_eq!(all_pages(&d, "", limit).await, want, "limit {limit}");
    }
    // Each filter selects exactly its rows.
    type Keep = Box<dyn Fn(&SeedNudge) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        (
            "rule=renewal",
            Box::new(|n: &SeedNudge| n.kind == "renewal"),
        ),
        ("channel=sms", Box::new(|n: &SeedNudge| n.channel == "sms")),
        (
            "stage=first_bill",
            Box::new(|n: &SeedNudge| n.stage == "first_bill"),
        ),
        (
            "risk_band=high",
            Box::new(|n: &SeedNudge| n.risk_band.as_deref() == Some("high")),
        ),
        (
            "segment=enterprise",
            Box::new(|n: &SeedNudge| n.segment.as_deref() == Some("enterprise")),
        ),
        (
            "rule=welcome&channel=email&risk_band=low",
            Box::new(|n: &SeedNudge| {
                n.kind == "welcome" && n.channel == "email" && n.risk_band.as_deref() == Some("low")
            }),
        ),
        (
            // One hour per nudge from 2026-11-01: the 2nd is nudges 25..=48.
            "from=2026-11-02&to=2026-11-02",
            Box::new(|n: &SeedNudge| {
                n.created_at >= queued_at(24) && n.created_at <= queued_at(47)
            }),
        ),
        ("channel=text", Box::new(|n: &SeedNudge| n.channel == "sms")),
    ];
    for (q, keep) in &cases {
        let want = expected(|n| proposed(n) && keep(n));
        assert!(!want.is_empty(), "{q} selects something");
        assert_eq!(all_pages(&d, q, 5).await, want, "{q}");
    }
    let approved = expected(|n| n.status == "approved");
    assert_eq!(all_pages(&d, "status=approved", 50).await, approved);
    assert_eq!(approved.len(), 4);
    assert!(all_pages(&d, "rule=no_such_rule", 50).await.is_empty());

    // Counts per rule.
    let v = d.get("/v1/rules", "viewer").await.json();
    let counts: Vec<(String, i64)> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_owned(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect();
    for (rule, n) in &counts {
        assert_eq!(
            *n as usize,
            expected(|x| proposed(x) && x.kind == *rule).len(),
            "{rule}"
        );
    }
    assert_eq!(counts.len(), 3);

    // One nudge.
    let v = d.get("/v1/nudges/7", "viewer").await.json();
    assert_eq!(
        (v["id"].as_i64(), v["status"].as_str()),
        (Some(7), Some("proposed"))
    );
    assert_eq!(v["occasion"], "fixture:6");
}
both_backends!(
    api_lists_filters_and_pages_by_value_at_risk,
    super::lists_filters_and_pages
);

async fn bad_input_is_refused_and_changes_nothing(t: &TestDb) {
    let d = desk(t).await;
    let before = snapshot(t).await;
    // Malformed filters name the parameter.
    for (uri, words) in [
        (
            "/v1/nudges?colour=red",
            "unknown query parameter \"colour\"",
        ),
        ("/v1/nudges?status=maybe", "status: unknown status"),
        ("/v1/nudges?channel=pigeon", "channel: unknown channel"),
        (
            "/v1/nudges?from=2026-02-30",
            "from: \"2026-02-30\" is not a date",
        ),
        (
            "/v1/nudges?from=2026-11-03&to=2026-11-02",
            "to: 2026-11-02 is before from",
        ),
        ("/v1/nudges?limit=0", "limit:"),
        ("/v1/nudges?limit=abc", "limit:"),
        ("/v1/nudges?cursor=zzz", "cursor:"),
        ("/v1/nudges?rule=a%3Bdrop", "rule:"),
        ("/v1/nudges?rule=a&rule=b", "more than once"),
        ("/v1/nudges/abc", "id: \"abc\" is not a nudge id"),
        ("/v1/nudges/0", "id: \"0\""),
        ("/v1/scores?min_probability=2", "min_probability"),
        ("/v1/audit?before=x", "before:"),
        (
            "/v1/nudges/export.csv?cursor=1~1",
            "unknown query parameter \"cursor\"",
        ),
    ] {
        d.get(uri, "viewer")
            .await
            .refused(400, "invalid_parameter", words);
    }
    // Unknown things are 404s.
    d.get("/v1/nudges/999999", "viewer").await.refused(
        404,
        "not_found",
        "there is no nudge 999999",
    );
    d.get("/v1/customers/nobody/scores", "viewer")
        .await
        .refused(404, "not_found", "no customer");
    d.get("/v1/models/v-none/report", "viewer")
        .await
        .refused(404, "not_found", "no model");
    d.get("/v1/nothing-here", "viewer").await.refused(
        404,
        "not_found",
        "nothing at /v1/nothing-here",
    );
    d.post(
        "/v1/nudges/999999/decision",
        "reviewer",
        r#"{"decision":"approve"}"#,
    )
    .await
    .refused(404, "not_found", "no nudge 999999");
    // Who is asking.
    let a = d.get("/v1/nudges", "nobody").await;
    a.refused(401, "unauthenticated", "Bearer");
    assert!(a.headers.contains_key("www-authenticate"));
    let req = axum::http::Request::get("/v1/nudges")
        .header("authorization", "Bearer attune_0000")
        .body(axum::body::Body::empty())
        .unwrap();
    super::api_desk::send(&d.app, req)
        .await
        .refused(401, "unauthenticated", "not valid");
    let req = axum::http::Request::get("/v1/nudges")
        .header("authorization", "Basic abc")
        .body(axum::body::Body::empty())
        .unwrap();
    super::api_desk::send(&d.app, req)
        .await
        .refused(401, "unauthenticated", "Bearer TOKEN");
    d.post(
        "/v1/nudges/1/decision",
        "viewer",
        r#"{"decision":"approve"}"#,
    )
    .await
    .refused(
        403,
        "forbidden",
        "viewer has the viewer role, which cannot decide on nudges",
    );
    d.post(
        "/v1/nudges/decisions",
        "viewer",
        r#"{"ids":[1],"decision":"approve"}"#,
    )
    .await
    .refused(403, "forbidden", "reviewer role");
    d.post(
        "/v1/nudges/1/decision",
        "nobody",
        r#"{"decision":"approve"}"#,
    )
    .await
    .refused(401, "unauthenticated", "");
    // Bodies of the wrong shape name the field.
    for (body, status, code, words) in [
        (
            r#"{"decision":"launch"}"#,
            422,
            "invalid_body",
            "decision: \"launch\" is not a decision",
        ),
        (r#"{}"#, 422, "invalid_body", "missing field `decision`"),
        (
            r#"{"decision":"approve","colour":1}"#,
            422,
            "invalid_body",
            "unknown field `colour`",
        ),
        (
            r#"{"decision":"reject"}"#,
            422,
            "invalid_body",
            "reason: say why",
        ),
        (
            r#"{"decision":"reject","reason":"   "}"#,
            422,
            "invalid_body",
            "reason: say why",
        ),
        (
            r#"{"decision":"reject","reason":"x","message":"y"}"#,
            422,
            "invalid_body",
            "message: only an approval",
        ),
        (
            r#"{"decision":"snooze","until":"2020-01-01"}"#,
            422,
            "invalid_body",
            "until: 2020-01-01 must be after today",
        ),
        (
            r#"{"decision":"snooze","until":"soon"}"#,
            422,
            "invalid_body",
            "until: \"soon\" is not a date",
        ),
        (
            r#"{"decision":"snooze"}"#,
            422,
            "invalid_body",
            "until: say until which day",
        ),
        (
            r#"{"decision":"edit","message":"  "}"#,
            422,
            "invalid_body",
            "message: is empty",
        ),
        (
            r#"{"decision":"edit"}"#,
            422,
            "invalid_body",
            "message: give the edited text",
        ),
        (r#"{"decision": 7}"#, 422, "invalid_body", "invalid type"),
        (
            r#"{"decision":"approve""#,
            400,
            "invalid_json",
            "the body is not JSON",
        ),
        ("not json", 400, "invalid_json", "the body is not JSON"),
    ] {
        d.post("/v1/nudges/1/decision", "reviewer", body)
            .await
            .refused(status, code, words);
    }
    for (body, words) in [
        (r#"{"ids":[],"decision":"approve"}"#, "ids: give 1 to 1000"),
        (
            r#"{"ids":[1,-2],"decision":"approve"}"#,
            "ids: -2 is not a nudge id",
        ),
        (
            r#"{"ids":[1],"decision":"edit"}"#,
            "edits are made one nudge at a time",
        ),
        (r#"{"ids":[1],"decision":"reject"}"#, "reason: say why"),
        (r#"{"ids":"1","decision":"approve"}"#, "invalid type"),
    ] {
        d.post("/v1/nudges/decisions", "reviewer", body)
            .await
            .refused(422, "invalid_body", words);
    }
    let too_many =
        json!({"ids": (1..=1001).collect::<Vec<i64>>(), "decision": "approve"}).to_string();
    d.post("/v1/nudges/decisions", "reviewer", &too_many)
        .await
        .refused(
            422,
            "invalid_body",
            "ids: give 1 to 1000 nudge ids (got 1001)",
        );
    let padded = format!(
        r#"{{"ids":[1],"decision":"reject","reason":"{}"}}"#,
        " ".repeat(4100)
    );
    d.post("/v1/nudges/decisions", "reviewer", &padded)
        .await
        .refused(413, "body_too_large", "limit of 4096 bytes");
    let big = format!(
        r#"{{"decision":"approve","message":"{}"}}"#,
        "x".repeat(5000)
    );
    d.post("/v1/nudges/1/decision", "reviewer", &big)
        .await
        .refused(413, "body_too_large", "larger than the limit");
    // The wrong media type.
    let req = axum::http::Request::post("/v1/nudges/1/decision")
        .header("authorization", format!("Bearer {}", d.tokens["reviewer"]))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from(r#"{"decision":"approve"}"#))
        .unwrap();
    super::api_desk::send(&d.app, req).await.refused(
        415,
        "unsupported_media_type",
        "application/json",
    );
    // Decided nudges stay decided: nudge 15 is approved in the fixture.
    d.post(
        "/v1/nudges/15/decision",
        "reviewer",
        r#"{"decision":"reject","reason":"no"}"#,
    )
    .await
    .refused(409, "conflict", "nudge 15 is already approved");
    // All or nothing: one unknown or decided id stops the whole batch.
    d.post(
        "/v1/nudges/decisions",
        "reviewer",
        r#"{"ids":[1,2,15],"decision":"approve"}"#,
    )
    .await
    .refused(409, "conflict", "nudge 15 is already approved");
    d.post(
        "/v1/nudges/decisions",
        "reviewer",
        r#"{"ids":[1,2,424242],"decision":"approve"}"#,
    )
    .await
    .refused(404, "not_found", "there is no nudge 424242");
    // A wrong method.
    let req = axum::http::Request::delete("/v1/nudges/1")
        .header("authorization", format!("Bearer {}", d.tokens["reviewer"]))
        .body(axum::body::Body::empty())
        .unwrap();
    super::api_desk::send(&d.app, req).await.refused(
        405,
        "method_not_allowed",
        "DELETE is not allowed",
    );
    assert_eq!(
        snapshot(t).await,
        before,
        "no refused call changed anything"
    );
}
both_backends!(
    api_bad_input_is_refused_with_a_clear_error_and_no_change,
    super::bad_input_is_refused_and_changes_nothing
);

async fn decisions_are_made_once_and_audited(t: &TestDb) {
    let d = desk(t).await;
    // Approve with an edit: the edit is kept beside the planned message.
    let a = d
        .post(
            "/v1/nudges/1/decision",
            "reviewer",
            r#"{"decision":"approve","message":"Hi!\r\nWelcome."}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["status"], "approved");
    assert_eq!(v["message"], "Hello from nudge 1");
    assert_eq!(v["edited_message"], "Hi!\nWelcome.");
    assert_eq!(v["effective_message"], "Hi!\nWelcome.");
    assert_eq!(
        (v["edited_by"].as_str(), v["decided_by"].as_str()),
        (Some("reviewer"), Some("reviewer"))
    );
    // Approving again is a conflict and changes nothing.
    d.post(
        "/v1/nudges/1/decision",
        "admin",
        r#"{"decision":"approve"}"#,
    )
    .await
    .refused(409, "conflict", "already approved (by reviewer");
    // Reject with a reason; snooze to a day.
    let v = d
        .post(
            "/v1/nudges/2/decision",
            "reviewer",
            r#"{"decision":"reject","reason":" wrong tone "}"#,
        )
        .await
        .json();
    assert_eq!(
        (v["status"].as_str(), v["decision_reason"].as_str()),
        (Some("rejected"), Some("wrong tone"))
    );
    let until = attune::jobs::today() + chrono::Days::new(3);
    let v = d
        .post(
            "/v1/nudges/3/decision",
            "admin",
            &format!(r#"{{"decision":"snooze","until":"{until}"}}"#),
        )
        .await
        .json();
    assert_eq!(v["status"], "snoozed");
    assert_eq!(
        v["snoozed_until"].as_i64(),
        Some(attune::store::day_start(until))
    );
    // An edit alone leaves the nudge proposed; the same text again is no edit.
    let v = d
        .post(
            "/v1/nudges/4/decision",
            "reviewer",
            r#"{"decision":"edit","message":"New text"}"#,
        )
        .await
        .json();
    assert_eq!(
        (v["status"].as_str(), v["edited_message"].as_str()),
        (Some("proposed"), Some("New text"))
    );
    let audit_len = t.db.audit_entries(1000).await.unwrap().len();
    let v = d
        .post(
            "/v1/nudges/4/decision",
            "reviewer",
            r#"{"decision":"edit","message":"New text "}"#,
        )
        .await
        .json();
    assert_eq!(v["edited_message"], "New text");
    assert_eq!(
        t.db.audit_entries(1000).await.unwrap().len(),
        audit_len,
        "an unchanged edit is not recorded"
    );
    // Many at once.
    let a = d
        .post(
            "/v1/nudges/decisions",
            "reviewer",
            r#"{"ids":[6,5,5,7],"decision":"reject","reason":"paused"}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"decided": [5, 6, 7], "status": "rejected"})
    );
    // The audit log holds every decision with who, when, before and after.
    let v = d.get("/v1/audit?limit=200", "viewer").await.json();
    let entries = v["items"].as_array().unwrap();
    let of = |subject: &str| -> Vec<(String, String, Value)> {
        entries
            .iter()
            .filter(|e| e["subject"] == subject)
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["actor"].as_str().unwrap().to_owned(),
                    e["detail"].clone(),
                )
            })
            .collect()
    };
    let one = of("nudge:1");
    assert_eq!(
        one.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["nudge.approved", "nudge.edited"]
    );
    assert_eq!(one[1].2["before"]["message"], "Hello from nudge 1");
    assert_eq!(one[1].2["after"]["message"], "Hi!\nWelcome.");
    assert_eq!(one[0].2["before"]["status"], "proposed");
    assert_eq!(one[0].2["after"]["status"], "approved");
    assert_eq!(one[0].2["via"], "api");
    assert_eq!(of("nudge:2")[0].2["after"]["decision_reason"], "wrong tone");
    assert_eq!(of("nudge:3")[0].1, "admin");
    for id in 5..=7 {
        let e = of(&format!("nudge:{id}"));
        assert_eq!(
            (e.len(), e[0].0.as_str(), e[0].1.as_str()),
            (1, "nudge.rejected", "reviewer")
        );
    }
    assert!(entries.iter().all(|e| e["at"].as_i64().unwrap() > 0));
    let page = d
        .get("/v1/audit?limit=2&action=nudge.rejected", "viewer")
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let older = d
        .get(
            &format!(
                "/v1/audit?limit=50&action=nudge.rejected&before={}",
                page["next_before"]
            ),
            "viewer",
        )
        .await
        .json();
    assert_eq!(
        older["items"].as_array().unwrap().len(),
        2,
        "4 rejections in all"
    );
    // Counts per rule follow the decisions at once.
    let rules = d.get("/v1/rules", "viewer").await.json();
    let total: i64 = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 56 - 6, "56 proposed in the fixture, 6 decided here");
}
both_backends!(
    api_decisions_are_made_once_and_audited,
    super::decisions_are_made_once_and_audited
);

async fn export_scores_models_and_the_document(t: &TestDb) {
    let d = desk(t).await;
    // CSV export of a filter, header first, rows in queue order.
    let a = d.get("/v1/nudges/export.csv?rule=renewal", "viewer").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "text/csv; charset=utf-8");
    let mut r = csv::Reader::from_reader(a.body.as_slice());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        attune::http::CSV_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    let got: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(
        got,
        expected(|n| n.status == "proposed" && n.kind == "renewal")
    );
    assert!(
        rows.iter()
            .all(|r| &r[2] == "renewal" && r[10].starts_with("2026-11-"))
    );
    // More than one page of 1000 streams completely.
    let mut ids: Vec<i64> =
        t.db.customer_id_map()
            .await
            .unwrap()
            .into_values()
            .collect();
    ids.sort_unstable();
    let more: Vec<SeedNudge> = (0..2100)
        .map(|i| {
            let mut n = fixture(i % N, &ids);
            n.occasion = format!("bulk:{i}");
            n.status = "proposed".into();
            n
        })
        .collect();
    t.db.insert_review_nudges(&more).await.unwrap();
    let a = d.get("/v1/nudges/export.csv", "viewer").await;
    let n = csv::Reader::from_reader(a.body.as_slice())
        .records()
        .count();
    assert_eq!(n, 56 + 2100);

    // Scores of a run, paged, and a customer's history.
    let cust = ids[0];
    let (run, _) =
        t.db.start_scoring_run("m1", attune::jobs::today(), "test", "full", "test", None)
            .await
            .unwrap();
    let scores: Vec<attune::store::NewScore> = ids
        .iter()
        .map(|&c| attune::store::NewScore {
            customer_id: c,
            probability: 0.1 * (c % 7) as f64,
            // As scores written before compact drivers held them.
            drivers:
                json!([{"feature": "f", "source": "f", "description": "x", "contribution": 0.1}])
                    .to_string()
                    .into_bytes(),
        })
        .collect();
    let n = scores.len();
    t.db.insert_scores(run, scores).await.unwrap();
    t.db.finish_scoring_run(run, n).await.unwrap();
    let v = d.get("/v1/scores?limit=4", "viewer").await.json();
    assert_eq!(v["run"]["id"].as_i64(), Some(run));
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
    let rest = d
        .get(
            &format!(
                "/v1/scores?limit=4&cursor={}",
                v["next_cursor"].as_str().unwrap()
            ),
            "viewer",
        )
        .await
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next_cursor"], Value::Null);
    let v = d
        .get(
            &format!("/v1/scores?run={run}&min_probability=0.3"),
            "viewer",
        )
        .await
        .json();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["probability"].as_f64().unwrap() >= 0.3)
    );
    d.get("/v1/scores?run=99999", "viewer")
        .await
        .refused(404, "not_found", "no scoring run 99999");
    let v = d.get("/v1/customers/cust-0/scores", "viewer").await.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["run_id"].as_i64(), Some(run));
    let _ = cust;
    let v = d.get("/v1/scoring-runs", "viewer").await.json();
    assert_eq!(v["items"][0]["id"].as_i64(), Some(run));
    // Models: none registered, so the champion is the shipped Telco model.
    assert_eq!(
        d.get("/v1/models", "viewer").await.json()["items"],
        json!([])
    );
    let v = d.get("/v1/models/champion/report", "viewer").await.json();
    assert!(v["model"]["version"].as_str().is_some(), "{v}");
    assert!(v["metrics"]["auc"].as_f64().unwrap() > 0.5, "{v}");
    // Who am I.
    assert_eq!(
        d.get("/v1/me", "reviewer").await.json(),
        json!({"name": "reviewer", "role": "reviewer", "via": "token"})
    );
    // Ops probes need no sign-in.
    assert_eq!(d.get("/healthz", "nobody").await.json()["status"], "ok");
    assert_eq!(d.get("/readyz", "nobody").await.json()["status"], "ready");
    // The OpenAPI document is served, and every operation it lists is routed.
    let doc = d.get("/v1/openapi.json", "nobody").await.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let ops = attune::http::openapi_operations();
    assert_eq!(ops.len(), 22, "{ops:?}");
    for (method, path) in ops {
        let uri = path
            .replace("{id}", "1")
            .replace("{customer}", "cust-0")
            .replace("{version}", "champion")
            .replace("{channel}", "hook");
        let a = if method == "GET" {
            d.get(&uri, "reviewer").await
        } else {
            d.post(&uri, "reviewer", r#"{"decision":"approve","ids":[8]}"#)
                .await
        };
        assert!(
            !matches!(a.status.as_u16(), 404 | 405)
                || a.text().contains("no nudge")
                || a.text().contains("has no delivery")
                || a.text().contains("no webhook channel is named"),
            "{method} {uri} is documented but not routed: {} {}",
            a.status,
            a.text()
        );
        assert!(a.status.as_u16() < 500, "{method} {uri}: {}", a.text());
    }
}
both_backends!(
    api_exports_csv_reads_scores_models_and_serves_its_document,
    super::export_scores_models_and_the_document
);

async fn sessions_need_the_csrf_header(t: &TestDb) {
    let d = desk(t).await;
    let cookie = super::web::sign_in(&d, "reviewer").await.0;
    let call = |csrf: Option<String>| {
        let mut req = axum::http::Request::post("/v1/nudges/1/decision")
            .header("cookie", cookie.clone())
            .header("content-type", "application/json");
        if let Some(c) = csrf {
            req = req.header(attune::http::CSRF_HEADER, c);
        }
        req.body(axum::body::Body::from(r#"{"decision":"approve"}"#))
            .unwrap()
    };
    super::api_desk::send(&d.app, call(None)).await.refused(
        403,
        "csrf_token_invalid",
        "X-CSRF-Token",
    );
    super::api_desk::send(&d.app, call(Some("wrong".into())))
        .await
        .refused(403, "csrf_token_invalid", "X-CSRF-Token");
    assert_eq!(
        t.db.review_nudge(1).await.unwrap().unwrap().status,
        "proposed"
    );
    let csrf = super::web::csrf_of(&d, &cookie).await;
    let a = super::api_desk::send(&d.app, call(Some(csrf))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["status"], "approved");
    // A session reads without the header.
    let req = axum::http::Request::get("/v1/me")
        .header("cookie", cookie)
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        super::api_desk::send(&d.app, req).await.json()["via"],
        "session"
    );
}
both_backends!(
    api_calls_with_a_session_cookie_need_the_csrf_header,
    super::sessions_need_the_csrf_header
);
