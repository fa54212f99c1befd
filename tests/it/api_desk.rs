//! A review desk on a test database, driven in-process through its router with
//! `tower::ServiceExt::oneshot`: a known queue of nudges, one user of each role with an API
//! token, and helpers to call it and to check that a refused call changed nothing.

use std::collections::HashMap;

use attune::http::{AppState, router};
use attune::store::{Role, SeedNudge};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use super::helpers::{TestDb, customer, d, email_only};
use crate::both_backends;

pub const RULES: [&str; 3] = ["welcome", "renewal", "risk_check_in"];
pub const CHANNELS: [&str; 2] = ["email", "sms"];
pub const STAGES: [&str; 4] = ["onboarding", "first_bill", "settling_in", "established"];
/// Nudges in the fixture; ids are 1..=N in order.
pub const N: i64 = 60;

pub struct Desk {
    pub app: Router,
    /// API tokens by role name.
    pub tokens: HashMap<&'static str, String>,
}

/// When fixture nudge `i` (0-based) was queued: one an hour from 2026-11-01.
pub fn queued_at(i: i64) -> i64 {
    attune::store::day_start(d("2026-11-01")) + i * 3600
}

/// The fixture's nudge `i` (id i + 1): values chosen so every filter selects a known set,
/// with ties in value at risk, a few without one, and a few already decided.
pub fn fixture(i: i64, customers: &[i64]) -> SeedNudge {
    let ev = (i % 10 != 9).then(|| (100 - i / 2) as f64 * 10.0);
    SeedNudge {
        customer_id: customers[(i % customers.len() as i64) as usize],
        kind: RULES[(i % 3) as usize].into(),
        occasion: format!("fixture:{i}"),
        channel: CHANNELS[((i / 3) % 2) as usize].into(),
        status: if i % 15 == 14 { "approved" } else { "proposed" }.into(),
        stage: STAGES[(i % 4) as usize].into(),
        priority: 1,
        expected_value: ev,
        segment: Some(["consumer", "enterprise"][((i / 2) % 2) as usize].into()),
        risk_band: Some(["low", "high"][(i % 2) as usize].into()),
        message: Some(format!("Hello from nudge {}", i + 1)),
        contact_name: None,
        reason: serde_json::json!({
            "rule": RULES[(i % 3) as usize],
            "why": format!("reason {i}"),
            "drivers": [{"description": "2 failed payments in 90 days", "contribution": 0.7}],
        }),
        probability: Some(0.5),
        created_at: queued_at(i),
    }
}

pub async fn desk(t: &TestDb) -> Desk {
    let signup = d("2026-10-01");
    let people: Vec<_> = (0..6)
        .map(|i| customer(&format!("cust-{i}"), signup, email_only()))
        .collect();
    t.db.upsert_customers(&people).await.unwrap();
    let map = t.db.customer_id_map().await.unwrap();
    let mut ids: Vec<i64> = map.values().copied().collect();
    ids.sort_unstable();
    let nudges: Vec<SeedNudge> = (0..N).map(|i| fixture(i, &ids)).collect();
    assert_eq!(t.db.insert_review_nudges(&nudges).await.unwrap(), N as u64);
    let mut tokens = HashMap::new();
    for (name, role) in [
        ("admin", Role::Admin),
        ("reviewer", Role::Reviewer),
        ("viewer", Role::Viewer),
    ] {
        let hash = attune::http::hash_password(&format!("{name}-password")).unwrap();
        t.db.create_user(name, role, &hash, "test").await.unwrap();
        let (token, hash, prefix) = attune::http::new_api_token();
        t.db.create_api_token(name, &hash, &prefix, "test")
            .await
            .unwrap();
        tokens.insert(name, token);
    }
    let state = AppState::new(t.ctx(|c| c.http.body_limit_bytes = 4096));
    Desk {
        app: router(state),
        tokens,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON error with this status and code whose message contains `words`.
    #[track_caller]
    pub fn refused(&self, status: u16, code: &str, words: &str) {
        let v = self.json();
        assert_eq!(self.status.as_u16(), status, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(words), "{m:?} should say {words:?}");
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

impl Desk {
    pub async fn get(&self, uri: &str, role: &str) -> Answer {
        let mut req = Request::get(uri);
        if let Some(t) = self.tokens.get(role) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        send(&self.app, req.body(Body::empty()).unwrap()).await
    }

    pub async fn post(&self, uri: &str, role: &str, body: &str) -> Answer {
        let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = self.tokens.get(role) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        send(&self.app, req.body(Body::from(body.to_owned())).unwrap()).await
    }
}

/// Everything a decision could change: each nudge's status and review columns, and the
/// audit log's length.
pub async fn snapshot(t: &TestDb) -> (Vec<String>, usize) {
    let ids: Vec<i64> = (1..=N).collect();
    let mut rows = t.db.review_nudges(&ids).await.unwrap();
    rows.sort_by_key(|n| n.id);
    let rows = rows
        .iter()
        .map(|n| {
            format!(
                "{} {} {:?} {:?} {:?} {:?} {:?}",
                n.id,
                n.status,
                n.edited_message,
                n.decided_by,
                n.decision_reason,
                n.snoozed_until,
                n.message
            )
        })
        .collect();
    let audit = t.db.audit_entries(100_000).await.unwrap().len();
    (rows, audit)
}

/// `attune nudges list` pages the queue as the desk does (same order, says how many
/// match, a cursor for the next page) and `attune nudges export --csv` writes the file the
/// desk's export answers, byte for byte (issue 19: the CLI stopped at 50 without a word,
/// sorted otherwise and left out the message, recipient and send time).
async fn cli_lists_and_exports_as_the_desk_does(t: &TestDb) {
    let d = desk(t).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
            .args(["--db", &t.url])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first: Value =
        serde_json::from_str(&run(&["--json", "nudges", "list", "--limit", "20"])).unwrap();
    let proposed = first["total"].as_i64().unwrap();
    assert!(proposed > 20, "{first}");
    let mut ids: Vec<i64> = Vec::new();
    let mut page = first;
    loop {
        ids.extend(
            page["nudges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_i64().unwrap()),
        );
        let Some(next) = page["next"].as_str().map(str::to_owned) else {
            break;
        };
        page = serde_json::from_str(&run(&[
            "--json", "nudges", "list", "--limit", "20", "--after", &next,
        ]))
        .unwrap();
    }
    // The desk's API queue, in its order.
    let api = d
        .get(&format!("/v1/nudges?limit={proposed}"), "viewer")
        .await
        .json();
    let desk_ids: Vec<i64> = api["nudges"]
        .as_array()
        .or_else(|| api["items"].as_array())
        .or_else(|| api.as_array())
        .unwrap_or_else(|| panic!("{api}"))
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len() as i64, proposed);
    assert_eq!(
        ids, desk_ids,
        "the CLI pages through the queue in the desk's order"
    );
    let text = run(&["nudges", "list", "--limit", "5"]);
    assert!(
        text.contains(&format!("5 of {proposed} proposed nudges")),
        "{text}"
    );
    assert!(text.contains("next page: --after "), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n.csv");
    run(&["nudges", "export", "--csv", file.to_str().unwrap()]);
    let web = d.get("/v1/nudges/export.csv", "viewer").await;
    assert_eq!(web.status, 200);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        web.body,
        "the same file as the desk's export"
    );
    let header = String::from_utf8(web.body.clone()).unwrap();
    assert!(header.starts_with("id,customer,rule,stage,channel,status,risk_band,segment,expected_value,probability,queued_at,recipient,send_after,message,"), "{header}");
}
both_backends!(
    the_cli_lists_and_exports_nudges_as_the_desk_does,
    super::cli_lists_and_exports_as_the_desk_does
);
