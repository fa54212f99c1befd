//! Deliveries against real local receivers (issue 20): signed webhooks with retries,
//! `Retry-After`, a dead letter and the breaker; checks at send time (consent withdrawn,
//! expiry passed); the outbox's whole files; email through an SMTP sink; configuration
//! errors named by key.

use std::collections::HashMap;

use attune::config::Config;
use attune::delivery::Breaker;
use attune::delivery::signature::Secret;
use attune::domain::{DeliveryStatus, NudgeStatus, RuleName};
use attune::jobs::JobContext;
use attune::jobs::deliver::{self, Receiver};
use attune::store::NewNudge;

use super::helpers::{TestDb, customer, d, email_only, scalar};
use super::receivers::{SmtpSink, WebhookReceiver};
use crate::both_backends;

pub const NEW_SECRET: [u8; 32] = [7; 32];
pub const OLD_SECRET: [u8; 32] = [9; 32];

/// A config delivering through `channels` (TOML), no quiet hours, no cap in the way, fast
/// retries.
pub fn config(channels: &str) -> Config {
    let text = format!(
        "[playbook]\nquiet_hours_start = \"00:00\"\nquiet_hours_end = \"00:00\"\nmax_nudges = 1000\n\
         [delivery]\nlease_secs = 5\nretry_base_secs = 1\nretry_max_secs = 2\nmax_attempts = 3\n\
         recheck_within_secs = 2\nbreaker_failures = 100\npoll_interval_ms = 100\n{channels}"
    );
    Config::from_toml(&text, "test", []).unwrap()
}

pub fn hook_channel(url: &str) -> String {
    format!(
        "[[channels]]\nname = \"hook\"\ntype = \"webhook\"\ncarries = [\"email\", \"sms\", \"phone\", \"post\", \"task\"]\n\
         url = \"{url}\"\nsecret_env = [\"HOOK_SECRET_NEW\", \"HOOK_SECRET_OLD\"]\ntimeout_ms = 2000\n"
    )
}

pub fn env(k: &str) -> Option<String> {
    match k {
        "HOOK_SECRET_NEW" => Some(Secret::from_bytes(&NEW_SECRET).expose()),
        "HOOK_SECRET_OLD" => Some(Secret::from_bytes(&OLD_SECRET).expose()),
        "SMTP_PASSWORD" => Some("wrong".into()),
        _ => None,
    }
}

/// `n` customers with email consent and an address, each with one approved nudge (by its
/// rule); the nudges' ids in customer order.
pub async fn approved(t: &TestDb, n: usize) -> Vec<i64> {
    let signup = d("2026-11-01");
    let customers: Vec<_> = (0..n)
        .map(|i| {
            let mut c = customer(&format!("c{i:05}"), signup, email_only());
            c.attributes
                .insert("email".into(), format!("c{i}@example.com"));
            c
        })
        .collect();
    for chunk in customers.chunks(5000) {
        t.db.upsert_customers(chunk).await.unwrap();
    }
    let ids = t.db.customer_id_map().await.unwrap();
    let now = attune::store::now_secs();
    let nudges: Vec<NewNudge> = customers
        .iter()
        .map(|c| NewNudge {
            customer_id: ids[c.external_id.as_str()],
            kind: RuleName::parse("welcome").unwrap(),
            occasion: "signup:2026-11-01".into(),
            channel: "email".into(),
            status: NudgeStatus::Approved,
            reason: "{}".into(),
            probability: Some(0.2),
            run_id: None,
            stage: "early".into(),
            priority: 50,
            holdout: false,
            expected_value: None,
            segment: None,
            risk_band: None,
            message: Some(format!("Welcome, {}.", c.external_id)),
            contact_role: None,
            contact_name: None,
            send_after: Some(now - 10),
            expires_at: Some(now + 86_400),
            planned_at: now - 10,
            decided_by: Some("playbook".into()),
            decision_reason: None,
        })
        .collect();
    for chunk in nudges.chunks(5000) {
        t.db.insert_nudges(chunk.to_vec()).await.unwrap();
    }
    let rows: Vec<(i64,)> = match &t.db {
        attune::store::Db::Sqlite(p, ..) => {
            sqlx::query_as("SELECT id FROM nudges ORDER BY customer_id")
                .fetch_all(p)
                .await
                .unwrap()
        }
        attune::store::Db::Postgres(p) => {
            sqlx::query_as("SELECT id FROM nudges ORDER BY customer_id")
                .fetch_all(p)
                .await
                .unwrap()
        }
    };
    rows.into_iter().map(|(id,)| id).collect()
}

/// Runs `sql` (no result) on either backend.
pub async fn exec(t: &TestDb, sql: &str) {
    match &t.db {
        attune::store::Db::Sqlite(p, ..) => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .unwrap();
        }
        attune::store::Db::Postgres(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .unwrap();
        }
    }
}

struct Run {
    ctx: JobContext,
    pb: attune::playbook::Playbook,
    channel: attune::config::ChannelConfig,
    receiver: Receiver,
    breaker: Breaker,
}

impl Run {
    fn new(t: &TestDb, config: Config) -> Run {
        let ctx = JobContext::new(t.db.clone(), config);
        let mut rs = deliver::receivers(&ctx.config, &env).unwrap();
        let (channel, receiver) = rs.remove(0);
        let d = &ctx.config.delivery;
        Run {
            breaker: Breaker::new(d.breaker_failures, d.breaker_pause.as_secs() as i64),
            pb: attune::jobs::plan::load_playbook(None).unwrap(),
            ctx,
            channel,
            receiver,
        }
    }

    async fn once(&mut self) -> usize {
        deliver::deliver_once(
            &self.ctx,
            &self.pb,
            &self.channel,
            &mut self.receiver,
            &mut self.breaker,
        )
        .await
        .unwrap()
    }
}

async fn statuses(t: &TestDb) -> HashMap<i64, (String, i32, Option<String>, Option<String>)> {
    t.db.deliveries(None, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.nudge_id, (r.status, r.attempts, r.reason, r.last_error)))
        .collect()
}

async fn webhooks_are_signed_retried_and_checked_at_send_time(t: &TestDb) {
    let ids = approved(t, 6).await;
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM deliveries").await,
        6,
        "the trigger made one delivery per approved nudge"
    );
    // The receiver knows only the old secret: rotation keeps it verifying.
    let hook = WebhookReceiver::start(Secret::from_bytes(&OLD_SECRET)).await;
    // Customer 2 withdraws consent and nudge 3 expires after approval, before sending.
    let mut c2 = customer(
        "c00002",
        d("2026-11-01"),
        attune::domain::Consent::default(),
    );
    c2.attributes
        .insert("email".into(), "c2@example.com".into());
    t.db.upsert_customers(&[c2]).await.unwrap();
    exec(
        t,
        &format!("UPDATE nudges SET expires_at = 1 WHERE id = {}", ids[3]),
    )
    .await;
    // First answers: a 500 (retried), a 429 asking for 30 s, a 410 (gone: dead at once).
    hook.script(&[(500, None), (429, Some("30")), (410, None)]);
    let mut run = Run::new(t, config(&hook_channel(&hook.url())));
    assert_eq!(run.once().await, 6);
    let got = hook.got();
    assert_eq!(got.len(), 4, "four may go: {got:?}");
    assert!(
        got.iter().all(|g| g.verified),
        "every request carries a valid signature"
    );
    assert!(got.iter().all(|g| g.id == format!("nudge_{}", g.nudge_id)));
    assert!(
        got.iter()
            .all(|g| g.body["type"] == "nudge.approved" && g.body["data"]["channel"] == "email")
    );
    let s = statuses(t).await;
    assert_eq!(s[&ids[2]].0, "blocked");
    assert_eq!(
        s[&ids[2]].2.as_deref(),
        Some("the customer no longer consents to email")
    );
    assert_eq!(s[&ids[3]].0, "blocked");
    assert!(s[&ids[3]].2.as_deref().unwrap().contains("expired"));
    let by_status = |st: &str| got.iter().filter(|g| s[&g.nudge_id].0 == st).count();
    assert_eq!(by_status("sent"), 1);
    assert_eq!(by_status("dead"), 1);
    let dead = got.iter().find(|g| g.status == 410).unwrap();
    assert_eq!(
        s[&dead.nudge_id].3.as_deref(),
        Some("HTTP 410 Gone: answer 410")
    );
    let limited = got.iter().find(|g| g.status == 429).unwrap();
    let next_at = scalar(
        &t.db,
        &format!(
            "SELECT next_at FROM deliveries WHERE nudge_id = {}",
            limited.nudge_id
        ),
    )
    .await;
    assert!(
        (next_at - attune::store::now_secs() - 30).abs() <= 2,
        "Retry-After honoured: {next_at}"
    );
    let failed = got.iter().find(|g| g.status == 500).unwrap();
    assert_eq!(s[&failed.nudge_id].0, "pending");
    assert_eq!(s[&failed.nudge_id].1, 1);

    // The retry comes due within the backoff (1-2 s) and goes with the same id.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    run.once().await;
    let s = statuses(t).await;
    assert_eq!(s[&failed.nudge_id].0, "sent");
    assert_eq!(s[&failed.nudge_id].1, 2);
    let again: Vec<_> = hook
        .got()
        .into_iter()
        .filter(|g| g.nudge_id == failed.nudge_id)
        .collect();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].id, again[1].id, "a retry keeps its webhook-id");
    // Nothing marked sent without a 2xx.
    for (id, (st, ..)) in &s {
        if st == "sent" {
            assert!(
                hook.got()
                    .iter()
                    .any(|g| g.nudge_id == *id && g.status == 200)
            );
        }
    }
    let c = t.db.delivery_counts().await.unwrap();
    assert_eq!((c.sent, c.dead, c.blocked, c.retrying), (2, 1, 2, 1));
}
both_backends!(
    webhooks_are_signed_retried_and_checked_at_send_time,
    super::webhooks_are_signed_retried_and_checked_at_send_time
);

async fn attempts_run_out_and_the_breaker_pauses_the_channel(t: &TestDb) {
    approved(t, 3).await;
    let hook = WebhookReceiver::start(Secret::from_bytes(&NEW_SECRET)).await;
    hook.fail_share(1.0);
    let mut cfg = config(&hook_channel(&hook.url()));
    cfg.delivery.breaker_failures = 3;
    cfg.delivery.max_attempts = 1;
    let mut run = Run::new(t, cfg);
    run.once().await;
    let s = statuses(t).await;
    assert!(
        s.values().all(|(st, n, _, e)| st == "dead"
            && *n == 1
            && e.as_deref() == Some("HTTP 500 Internal Server Error: answer 500")),
        "{s:?}"
    );
    let states = t.db.channel_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert!(states[0].paused_until.unwrap() > attune::store::now_secs());
    assert_eq!(states[0].failures, 3);
    assert_eq!(
        states[0].reason.as_deref(),
        Some("last answer: HTTP 500 Internal Server Error: answer 500")
    );
    // In words, as the desk's overview says it.
    let said = attune::http::views::channel_pause(
        &states[0].name,
        states[0].failures as i64,
        states[0].paused_until.unwrap(),
        states[0].reason.as_deref(),
    );
    assert!(
        said.starts_with("hook is paused until ")
            && said.ends_with(" after 3 failed attempts in a row: last answer: HTTP 500 Internal Server Error: answer 500"),
        "{said}"
    );
    // Paused: nothing is claimed. A person sends one again; it waits for the pause.
    assert!(
        t.db.retry_delivery(s.keys().next().copied().unwrap(), "ops")
            .await
            .unwrap()
    );
    assert_eq!(run.once().await, 0);
    assert_eq!(hook.got().len(), 3);
    // Another process (`attune deliveries send`) keeps the stored pause: nothing goes.
    let receivers = deliver::receivers(&run.ctx.config, &env).unwrap();
    let passes = deliver::send_due(&run.ctx, receivers, None).await.unwrap();
    assert_eq!(passes[0].claimed, 0);
    assert!(passes[0].paused.is_some());
    assert_eq!(hook.got().len(), 3);
}
both_backends!(
    attempts_run_out_and_the_breaker_pauses_the_channel,
    super::attempts_run_out_and_the_breaker_pauses_the_channel
);

async fn only_approved_nudges_that_are_not_held_out_are_delivered(t: &TestDb) {
    let ids = approved(t, 2).await;
    // A proposed nudge has no delivery until a reviewer approves it; a held-out one never.
    exec(
        t,
        &format!("DELETE FROM deliveries WHERE nudge_id = {}", ids[1]),
    )
    .await;
    exec(
        t,
        &format!(
            "UPDATE nudges SET status = 'proposed' WHERE id = {}",
            ids[1]
        ),
    )
    .await;
    assert_eq!(scalar(&t.db, "SELECT COUNT(*) FROM deliveries").await, 1);
    let out =
        t.db.decide_nudges(&[ids[1]], NudgeStatus::Approved, "ann", None)
            .await
            .unwrap();
    assert_eq!(out.decided, vec![ids[1]]);
    assert_eq!(
        scalar(
            &t.db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
        )
        .await,
        2
    );
    exec(t, "UPDATE nudges SET holdout = TRUE, status = 'holdout'").await;
    exec(t, "DELETE FROM deliveries").await;
    exec(t, "UPDATE nudges SET status = 'approved'").await;
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM deliveries").await,
        0,
        "a held-out nudge is never delivered"
    );
    let _ = DeliveryStatus::Pending;
}
both_backends!(
    only_approved_nudges_that_are_not_held_out_are_delivered,
    super::only_approved_nudges_that_are_not_held_out_are_delivered
);

async fn the_outbox_holds_whole_files_only(t: &TestDb) {
    approved(t, 50).await;
    let dir = tempfile::tempdir().unwrap();
    for (format, ext) in [("ndjson", "ndjson"), ("csv", "csv")] {
        exec(
            t,
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = 0",
        )
        .await;
        let out = dir.path().join(format);
        let channel = format!(
            "[[channels]]\nname = \"crm\"\ntype = \"outbox\"\ncarries = [\"email\", \"sms\", \"phone\", \"post\", \"task\"]\n\
             dir = \"{}\"\nformat = \"{format}\"\nroll_secs = 1\n",
            out.display()
        );
        let mut cfg = config(&channel);
        cfg.delivery.batch = 20;
        let mut run = Run::new(t, cfg);
        // Three claims fill the open file; none is sent before the file is renamed.
        for _ in 0..3 {
            run.once().await;
        }
        assert_eq!(
            scalar(
                &t.db,
                "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'"
            )
            .await,
            0
        );
        let listed = |ext: &str| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        };
        assert!(listed(ext).is_empty(), "no file before the roll");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        run.once().await;
        let files = listed(ext);
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(
            scalar(
                &t.db,
                "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'"
            )
            .await,
            50
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        match format {
            "ndjson" => {
                let lines: Vec<serde_json::Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(lines.len(), 50);
                assert!(
                    lines
                        .iter()
                        .all(|l| l["id"] == format!("nudge_{}", l["data"]["nudge_id"]))
                );
            }
            _ => {
                let mut r = csv::Reader::from_reader(text.as_bytes());
                assert_eq!(r.headers().unwrap().get(0), Some("id"));
                assert_eq!(r.records().count(), 50);
            }
        }
        // No temporary file is left where a reader looks.
        assert!(
            std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        );
    }
}
both_backends!(
    the_outbox_holds_whole_files_only,
    super::the_outbox_holds_whole_files_only
);

async fn email_goes_through_smtp_with_a_text_part_and_list_unsubscribe(t: &TestDb) {
    let ids = approved(t, 3).await;
    let sink = SmtpSink::start(false).await;
    let channel = format!(
        "[[channels]]\nname = \"mail\"\ntype = \"email\"\ncarries = [\"email\", \"sms\", \"phone\", \"post\", \"task\"]\n\
         smtp = \"{}\"\nfrom = \"Acme care <care@acme.example>\"\nsubject = \"About your account, {{customer}}\"\n\
         unsubscribe_url = \"https://acme.example/unsubscribe/{{customer}}\"\n",
        sink.addr
    );
    let mut run = Run::new(t, config(&channel));
    run.once().await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 3);
    assert!(
        mails.iter().all(|m| m.from == "<care@acme.example>"),
        "{mails:?}"
    );
    let m = mails
        .iter()
        .find(|m| m.to[0].contains("c0@example.com"))
        .unwrap();
    assert!(
        m.data.contains("Subject: About your account, c00000"),
        "{}",
        m.data
    );
    assert!(
        m.data
            .contains("List-Unsubscribe: <https://acme.example/unsubscribe/c00000>"),
        "{}",
        m.data
    );
    assert!(
        m.data
            .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    );
    assert!(
        m.data
            .contains(&format!("Message-ID: <nudge_{}@acme.example>", ids[0])),
        "{}",
        m.data
    );
    assert!(m.data.contains("Content-Type: text/plain"));
    assert!(m.data.contains("Welcome, c00000."));
    assert_eq!(
        scalar(
            &t.db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'"
        )
        .await,
        3
    );
}
both_backends!(
    email_goes_through_smtp_with_a_text_part_and_list_unsubscribe,
    super::email_goes_through_smtp_with_a_text_part_and_list_unsubscribe
);

/// `attune config check` with a config file: its exit status and what it printed.
fn config_check(config: &str, env: &[(&str, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attune.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channel_configuration_is_named_by_its_key() {
    let secret = ("HOOK_SECRET_NEW", Secret::from_bytes(&NEW_SECRET).expose());
    let old = ("HOOK_SECRET_OLD", Secret::from_bytes(&OLD_SECRET).expose());
    // A receiver that answers: the check passes.
    let hook = WebhookReceiver::start(Secret::from_bytes(&NEW_SECRET)).await;
    let (ok, out) = config_check(&hook_channel(&hook.url()), &[secret.clone(), old.clone()]);
    assert!(ok, "{out}");
    // A missing secret.
    let (ok, out) = config_check(&hook_channel(&hook.url()), std::slice::from_ref(&secret));
    assert!(
        !ok && out.contains("channels[0] (hook).secret_env")
            && out.contains("HOOK_SECRET_OLD is not set"),
        "{out}"
    );
    // An unreachable URL: nothing listens on port 9 of this host.
    let (ok, out) = config_check(
        &hook_channel("http://127.0.0.1:9/hook"),
        &[secret.clone(), old.clone()],
    );
    assert!(
        !ok && out.contains("channels[0] (hook).url") && out.contains("unreachable"),
        "{out}"
    );
    // A channel a rule sends on that no configured channel carries.
    let narrow = hook_channel(&hook.url()).replace(
        "[\"email\", \"sms\", \"phone\", \"post\", \"task\"]",
        "[\"email\"]",
    );
    let (ok, out) = config_check(&narrow, &[secret.clone(), old.clone()]);
    assert!(
        !ok && out.contains("which no [[channels]] entry carries"),
        "{out}"
    );
    // An SMTP server refusing the login.
    let sink = SmtpSink::start(true).await;
    let mail = format!(
        "[[channels]]\nname = \"mail\"\ntype = \"email\"\ncarries = [\"email\", \"sms\", \"phone\", \"post\", \"task\"]\n\
         smtp = \"{}\"\nfrom = \"care@acme.example\"\nusername = \"attune\"\npassword_env = \"SMTP_PASSWORD\"\n",
        sink.addr
    );
    let (ok, out) = config_check(&mail, &[("SMTP_PASSWORD", "wrong".into())]);
    assert!(
        !ok && out.contains("channels[0] (mail).smtp") && out.contains("535"),
        "{out}"
    );
    // https is not built in: said at the key.
    let (ok, out) = config_check(&hook_channel("https://crm.example/hook"), &[secret, old]);
    assert!(
        !ok && out.contains("channels[0] (hook).url") && out.contains("http:// only"),
        "{out}"
    );
}

async fn deliveries_send_empties_what_is_due(t: &TestDb) {
    approved(t, 5).await;
    let hook = WebhookReceiver::start(Secret::from_bytes(&NEW_SECRET)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attune.toml");
    std::fs::write(
        &path,
        format!(
            "[playbook]\nquiet_hours_start = \"00:00\"\nquiet_hours_end = \"00:00\"\n{}",
            hook_channel(&hook.url())
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(["--db", &t.url, "--config"])
        .arg(&path)
        .args(["--json", "deliveries", "send"])
        .env("HOOK_SECRET_NEW", Secret::from_bytes(&NEW_SECRET).expose())
        .env("HOOK_SECRET_OLD", Secret::from_bytes(&OLD_SECRET).expose())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["channels"][0]["channel"], "hook");
    assert_eq!(v["channels"][0]["claimed"], 5);
    assert_eq!(v["counts"]["sent"], 5);
    assert_eq!(hook.got().len(), 5);
    // Nothing is due now: a second run takes nothing and sends nothing again.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(["--db", &t.url, "--config"])
        .arg(&path)
        .args(["--json", "deliveries", "send", "--channel", "hook"])
        .env("HOOK_SECRET_NEW", Secret::from_bytes(&NEW_SECRET).expose())
        .env("HOOK_SECRET_OLD", Secret::from_bytes(&OLD_SECRET).expose())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["channels"][0]["claimed"], 0);
    assert_eq!(hook.got().len(), 5);
}
both_backends!(
    deliveries_send_empties_what_is_due,
    super::deliveries_send_empties_what_is_due
);

/// POSTs a callback to the desk's router, signed with `secret`; the status.
async fn callback(app: &axum::Router, channel: &str, body: &str, secret: &Secret) -> u16 {
    use tower::ServiceExt as _;
    let ts = attune::store::now_secs();
    let sig = attune::delivery::signature::sign(
        std::slice::from_ref(secret),
        "cb_1",
        ts,
        body.as_bytes(),
    );
    let req = axum::http::Request::post(format!("/v1/deliveries/callback/{channel}"))
        .header("content-type", "application/json")
        .header("webhook-id", "cb_1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

async fn a_signed_callback_records_a_bounce_and_uplift_counts_it_undelivered(t: &TestDb) {
    let ids = approved(t, 2).await;
    let hook = WebhookReceiver::start(Secret::from_bytes(&NEW_SECRET)).await;
    let cfg = config(&hook_channel(&hook.url()));
    let mut run = Run::new(t, cfg.clone());
    run.once().await;
    let state = attune::http::AppState::new(JobContext::new(t.db.clone(), cfg)).with_env(env);
    let app = attune::http::router(state);
    let good = Secret::from_bytes(&OLD_SECRET);
    let body = format!(r#"{{"id": "nudge_{}", "outcome": "bounced"}}"#, ids[0]);
    assert_eq!(
        callback(&app, "hook", &body, &Secret::from_bytes(&[1; 32])).await,
        401,
        "a wrong secret"
    );
    assert_eq!(
        callback(&app, "nope", &body, &good).await,
        404,
        "no such channel"
    );
    assert_eq!(
        callback(
            &app,
            "hook",
            r#"{"id": "nudge_1", "outcome": "lost"}"#,
            &good
        )
        .await,
        400
    );
    assert_eq!(
        callback(
            &app,
            "hook",
            r#"{"id": "nudge_999999", "outcome": "bounced"}"#,
            &good
        )
        .await,
        404
    );
    assert_eq!(callback(&app, "hook", &body, &good).await, 204);
    let row = t.db.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!(row.outcome.as_deref(), Some("bounced"));
    // The bounced nudge was not delivered; the other was.
    let cohorts = t.db.uplift_cohorts().await.unwrap();
    let delivered: Vec<i32> = cohorts.iter().map(|c| c.delivered).collect();
    assert_eq!(delivered, vec![0, 1]);
}
both_backends!(
    a_signed_callback_records_a_bounce_and_uplift_counts_it_undelivered,
    super::a_signed_callback_records_a_bounce_and_uplift_counts_it_undelivered
);

async fn the_contact_cap_counts_what_a_batch_sends(t: &TestDb) {
    approved(t, 1).await;
    // A second approved nudge for the same customer, due now, in the same batch.
    let ids = t.db.customer_id_map().await.unwrap();
    let now = attune::store::now_secs();
    t.db.insert_nudges(vec![NewNudge {
        customer_id: ids["c00000"],
        kind: RuleName::parse("bill_explainer").unwrap(),
        occasion: "first_invoice:2026-12-01".into(),
        channel: "email".into(),
        status: NudgeStatus::Approved,
        reason: "{}".into(),
        probability: None,
        run_id: None,
        stage: "early".into(),
        priority: 50,
        holdout: false,
        expected_value: None,
        segment: None,
        risk_band: None,
        message: Some("Your first bill, explained.".into()),
        contact_role: None,
        contact_name: None,
        send_after: Some(now - 10),
        expires_at: None,
        planned_at: now - 10,
        decided_by: Some("playbook".into()),
        decision_reason: None,
    }])
    .await
    .unwrap();
    let hook = WebhookReceiver::start(Secret::from_bytes(&NEW_SECRET)).await;
    let mut cfg = config(&hook_channel(&hook.url()));
    cfg.playbook.max_nudges = 1;
    let mut run = Run::new(t, cfg);
    assert_eq!(run.once().await, 2);
    assert_eq!(hook.got().len(), 1, "one nudge in the window, not two");
    let s = statuses(t).await;
    let waiting: Vec<_> = s.values().filter(|(st, ..)| st == "pending").collect();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].2.as_deref(),
        Some("the contact cap: 1 sent in the last 14 days")
    );
}
both_backends!(
    the_contact_cap_counts_what_a_batch_sends,
    super::the_contact_cap_counts_what_a_batch_sends
);

async fn an_offer_waits_at_send_time_while_a_complaint_is_open(t: &TestDb) {
    let ids = approved(t, 2).await;
    // The first customer's nudge is an offer (the default playbook's `better_tariff`), and
    // they complained after it was approved.
    exec(
        t,
        &format!(
            "UPDATE nudges SET kind = 'better_tariff' WHERE id = {}",
            ids[0]
        ),
    )
    .await;
    let complaint = attune::domain::ActivityEvent {
        customer: attune::domain::CustomerId::parse("c00000").unwrap(),
        kind: attune::domain::Meaning::ComplaintOpened.code(),
        occurred_at: chrono::Utc::now() - chrono::Duration::hours(20),
        value: None,
        attributes: Default::default(),
        source: "crm".into(),
        source_event_id: "complaint-1".into(),
    };
    t.db.insert_events(&[complaint]).await.unwrap();
    let hook = WebhookReceiver::start(Secret::from_bytes(&NEW_SECRET)).await;
    let mut run = Run::new(t, config(&hook_channel(&hook.url())));
    assert_eq!(run.once().await, 2);
    let got: Vec<i64> = hook.got().iter().map(|g| g.nudge_id).collect();
    assert_eq!(
        got,
        vec![ids[1]],
        "only the nudge that is not an offer went"
    );
    let s = statuses(t).await;
    assert_eq!(s[&ids[0]].0, "pending");
    let why = s[&ids[0]].2.as_deref().unwrap();
    assert!(why.starts_with("held while the complaint opened"), "{why}");
}
both_backends!(
    an_offer_waits_at_send_time_while_a_complaint_is_open,
    super::an_offer_waits_at_send_time_while_a_complaint_is_open
);
