//! kill -9 while delivering (issue 20): 10,000 approved nudges go to a local webhook
//! receiver that verifies signatures and answers 500 to a tenth of requests at random,
//! while the real daemon (`attune run`) is SIGKILLed at random moments. Mid-run, 200
//! customers withdraw consent and 200 nudges pass their expiry (the channel sends 500 a
//! second, so most are still pending then). Then the daemon runs
//! until nothing is pending and is stopped cleanly. Invariants: the receiver saw every
//! nudge that may go, duplicates only with the same `webhook-id`, nothing is marked sent
//! without a 2xx, nothing was checked and sent after its consent was withdrawn or its
//! expiry passed, and every such nudge not sent before is blocked.
//!
//! `ATTUNE_CHAOS_KILLS` sets the number of kills (CI: 8), `ATTUNE_CHAOS_SEED` the moments,
//! `ATTUNE_CHAOS_NUDGES` the nudges (10,000).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attune::delivery::signature::Secret;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::deliveries::{NEW_SECRET, OLD_SECRET, approved, exec};
use super::helpers::{TestDb, customer, d, scalar};
use super::receivers::WebhookReceiver;
use crate::both_backends;

fn start(db_url: &str, config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(["--db", db_url, "--config"])
        .arg(config)
        .args(["--log-format", "json", "run"])
        .env("HOOK_SECRET_NEW", Secret::from_bytes(&NEW_SECRET).expose())
        .env("HOOK_SECRET_OLD", Secret::from_bytes(&OLD_SECRET).expose())
        .env_remove("ATTUNE_CHAOS_KILLS")
        .env_remove("ATTUNE_CHAOS_SEED")
        .env_remove("ATTUNE_CHAOS_NUDGES")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting attune run")
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

async fn kill9_while_delivering(t: &TestDb) {
    let env = |k: &str, default: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let kills = env("ATTUNE_CHAOS_KILLS", 8) as usize;
    let n = env("ATTUNE_CHAOS_NUDGES", 10_000) as usize;
    let seed = env("ATTUNE_CHAOS_SEED", rand::random());
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let ids = approved(t, n).await;
    let hook = WebhookReceiver::start(Secret::from_bytes(&OLD_SECRET)).await;
    hook.fail_share(0.1);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let config = dir.path().join("attune.toml");
    std::fs::write(
        &config,
        format!(
            r#"[schedule]
pull = "0 0 0 1 1 *"
rescore = "0 0 0 1 1 *"
score = "0 0 0 1 1 *"
[retrain]
schedule = "0 0 0 1 1 *"
[http]
enabled = false
[worker]
shutdown_grace_secs = 10
[playbook]
quiet_hours_start = "00:00"
quiet_hours_end = "00:00"
max_nudges = 1000
[delivery]
lease_secs = 3
recheck_within_secs = 2
retry_base_secs = 1
retry_max_secs = 2
max_attempts = 1000
breaker_failures = 100000
poll_interval_ms = 100
batch = 200
{}"#,
            // 500 a second: the run outlasts the first kills, so the changes come mid-run.
            super::deliveries::hook_channel(&hook.url()) + "rate_per_second = 500\n"
        ),
    )
    .unwrap();

    // The last customers' nudges: most are still pending when the changes come.
    let withdrawn: HashSet<i64> = ids[n - 400..n - 200].iter().copied().collect();
    let expired: HashSet<i64> = ids[n - 200..].iter().copied().collect();
    let mut consent_ms = i64::MAX;
    let mut expiry_ms = i64::MAX;
    for round in 0..kills {
        let mut daemon = start(&t.url, &config, &log);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2500))).await;
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        if round == kills / 2 {
            // Mid-run: consent withdrawn by 200 customers, 200 nudges past their expiry.
            let customers: Vec<_> = (n - 400..n - 200)
                .map(|i| {
                    customer(
                        &format!("c{i:05}"),
                        d("2026-11-01"),
                        attune::domain::Consent::default(),
                    )
                })
                .collect();
            t.db.upsert_customers(&customers).await.unwrap();
            consent_ms = chrono::Utc::now().timestamp_millis();
            // The expiry is the next whole second, written before it comes: from then on
            // every check sees it.
            let at = attune::store::now_secs() + 2;
            let list = ids[n - 200..]
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",");
            exec(
                t,
                &format!("UPDATE nudges SET expires_at = {at} WHERE id IN ({list})"),
            )
            .await;
            assert!(
                attune::store::now_secs() < at,
                "the expiry was written after it passed"
            );
            expiry_ms = at * 1000;
        }
    }
    // Once more, to the end, then a clean stop.
    let mut daemon = start(&t.url, &config, &log);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = scalar(
            &t.db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
        )
        .await;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} still pending after 180 s:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let stop = Instant::now();
    while daemon.try_wait().unwrap().is_none() {
        assert!(
            stop.elapsed() < Duration::from_secs(30),
            "no clean stop:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let got = hook.got();
    assert!(
        got.iter().all(|g| g.verified),
        "a request without a valid signature"
    );
    assert!(
        got.iter().all(|g| g.id == format!("nudge_{}", g.nudge_id)),
        "webhook-id is the nudge's"
    );
    let mut accepted: HashMap<i64, usize> = HashMap::new();
    for g in got.iter().filter(|g| g.status == 200) {
        *accepted.entry(g.nudge_id).or_default() += 1;
    }
    let rows = t.db.deliveries(None, None, 1_000_000).await.unwrap();
    assert_eq!(rows.len(), n);
    let mut blocked = 0;
    for r in &rows {
        match r.status.as_str() {
            "sent" => assert!(
                accepted.contains_key(&r.nudge_id),
                "nudge {} marked sent without a 2xx",
                r.nudge_id
            ),
            "blocked" => {
                blocked += 1;
                assert!(
                    withdrawn.contains(&r.nudge_id) || expired.contains(&r.nudge_id),
                    "nudge {} blocked: {:?}",
                    r.nudge_id,
                    r.reason
                );
            }
            other => panic!(
                "nudge {} ended {other}: {:?} {:?}",
                r.nudge_id, r.reason, r.last_error
            ),
        }
    }
    // The receiver saw every nudge that may go.
    for id in &ids {
        if !withdrawn.contains(id) && !expired.contains(id) {
            assert!(
                accepted.contains_key(id),
                "nudge {id} never reached the receiver"
            );
        }
    }
    // Nothing checked and sent after consent was withdrawn or the expiry passed.
    for g in &got {
        if withdrawn.contains(&g.nudge_id) {
            assert!(
                g.checked_ms < consent_ms,
                "nudge {} checked at {} after consent was withdrawn at {consent_ms}",
                g.nudge_id,
                g.checked_ms
            );
        }
        if expired.contains(&g.nudge_id) {
            assert!(
                g.checked_ms < expiry_ms,
                "nudge {} checked at {} after it expired at {expiry_ms}",
                g.nudge_id,
                g.checked_ms
            );
        }
        assert!(
            g.at_ms - g.checked_ms <= 4_000,
            "nudge {} arrived {} ms after its check (at most recheck_within + timeout)",
            g.nudge_id,
            g.at_ms - g.checked_ms
        );
    }
    // Those withdrawn or expired and never accepted before are blocked, not pending.
    for id in withdrawn.iter().chain(&expired) {
        let r = rows.iter().find(|r| r.nudge_id == *id).unwrap();
        assert!(r.status == "blocked" || accepted.contains_key(id), "{r:?}");
    }
    let duplicates = accepted.values().filter(|c| **c > 1).count();
    let refused = got.iter().filter(|g| g.status != 200).count();
    eprintln!(
        "delivery chaos ({}): {n} nudges, {kills} kills (seed {seed}), {} requests ({refused} answered 500), {} nudges accepted, {duplicates} accepted more than once (same webhook-id), {blocked} blocked, {:.1} s",
        t.db.backend(),
        got.len(),
        accepted.len(),
        started.elapsed().as_secs_f64()
    );
}
both_backends!(kill_9_while_delivering, super::kill9_while_delivering);
