//! Scoring runs split into shards (issue 22): on PostgreSQL a run is cut into ranges of
//! customer ids that any daemon may take; the scores are those one unsplit run computes,
//! every customer once; a shard taken back from a holder that stopped is redone, and what
//! the holder wrote is gone and it can write no more. SQLite scores a run as one shard.

use std::collections::HashMap;

use attune::jobs::score::{self, ScoreJob};
use attune::store::Db;

use super::helpers::{TestDb, scalar};
use crate::both_backends;

/// Each customer's probability and drivers (as stored) in run `run`.
async fn scores_of(db: &Db, run: i64) -> HashMap<i64, (f64, Vec<u8>)> {
    let rows: Vec<(i64, f64, Vec<u8>)> = match db {
        Db::Sqlite(p, ..) => {
            sqlx::query_as("SELECT customer_id, probability, drivers FROM scores WHERE run_id = $1")
                .bind(run)
                .fetch_all(p)
                .await
                .unwrap()
        }
        Db::Postgres(p) => {
            sqlx::query_as("SELECT customer_id, probability, drivers FROM scores WHERE run_id = $1")
                .bind(run)
                .fetch_all(p)
                .await
                .unwrap()
        }
    };
    let n = rows.len();
    let map: HashMap<i64, (f64, Vec<u8>)> = rows.into_iter().map(|(c, p, d)| (c, (p, d))).collect();
    assert_eq!(map.len(), n, "a customer scored twice in run {run}");
    map
}

fn full(today: chrono::NaiveDate, tick: Option<&str>) -> ScoreJob {
    ScoreJob {
        tick: tick.map(str::to_owned),
        as_of: Some(today),
        changed_only: false,
    }
}

/// A run split into shards of 100 customers (PostgreSQL) scores every customer once with
/// the probability and drivers a run in one shard gives, with the same drift; so does a
/// `changed` run, which also clears the marks it covered. On SQLite every run is one shard.
async fn a_run_in_shards_scores_as_one_run_would(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let sharded = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.scoring.shard_customers = 100;
    });
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&sharded, 1500, 21, today)
        .await
        .unwrap();
    let split = summary.score.run_id;
    let whole = t.ctx(|c| c.scoring.shard_customers = 10_000_000);
    let one = score::run(&whole, &full(today, None)).await.unwrap();

    let shards = t.db.run_shards(split).await.unwrap();
    let expect_shards = if t.db.backend() == "sqlite" {
        1..=1
    } else {
        // 1,500 customers, some gone before today: about a shard per 100.
        10..=15
    };
    assert!(
        expect_shards.contains(&shards.len()),
        "{} shards",
        shards.len()
    );
    assert!(shards.iter().all(|s| s.status == "done" && s.attempts == 1));
    assert_eq!(t.db.run_shards(one.run_id).await.unwrap().len(), 1);
    // The ranges cover the id space without overlap.
    assert_eq!(shards[0].after_id, i64::MIN);
    assert_eq!(shards.last().unwrap().upto_id, i64::MAX);
    assert!(shards.windows(2).all(|w| w[0].upto_id == w[1].after_id));
    assert_eq!(
        shards.iter().map(|s| s.scored.unwrap()).sum::<i64>() as usize,
        summary.score.customers
    );

    let a = scores_of(&t.db, split).await;
    let b = scores_of(&t.db, one.run_id).await;
    assert_eq!(a.len(), summary.score.customers);
    assert_eq!(a.len(), one.customers);
    assert_eq!(
        (summary.score.at_risk, summary.score.customers),
        (one.at_risk, one.customers)
    );
    for (id, (p, drivers)) in &b {
        let (q, d) = a
            .get(id)
            .unwrap_or_else(|| panic!("customer {id} not in the split run"));
        assert_eq!((p, drivers), (q, d), "customer {id}");
    }
    let (da, db) = (
        t.db.drift_for_run(split).await.unwrap(),
        t.db.drift_for_run(one.run_id).await.unwrap(),
    );
    assert_eq!(da.len(), db.len());
    assert!(!da.is_empty());
    for (x, y) in da.iter().zip(&db) {
        assert_eq!(x.feature, y.feature);
        assert!(
            (x.psi - y.psi).abs() < 1e-9,
            "{} {} {}",
            x.feature,
            x.psi,
            y.psi
        );
    }

    // A `changed` run: 300 customers log in.
    let ids = t.db.customer_id_map().await.unwrap();
    let mut names: Vec<(&String, &i64)> = ids.iter().collect();
    names.sort();
    let events: Vec<attune::domain::ActivityEvent> = names
        .iter()
        .step_by(5)
        .map(|(name, _)| super::helpers::login_now(name, "shards"))
        .collect();
    let stored = t.db.insert_events(&events).await.unwrap();
    assert_eq!(stored.customers_changed, 300);
    let changed = score::run(
        &sharded,
        &ScoreJob {
            tick: None,
            as_of: Some(today),
            changed_only: true,
        },
    )
    .await
    .unwrap();
    let shards = t.db.run_shards(changed.run_id).await.unwrap();
    let expect_shards = if t.db.backend() == "sqlite" { 1 } else { 3 };
    assert_eq!(shards.len(), expect_shards);
    let c = scores_of(&t.db, changed.run_id).await;
    assert_eq!(c.len(), changed.customers);
    // Those still customers today: the 300, less those who left.
    assert!((200..=300).contains(&c.len()), "{}", c.len());
    let logged_in: std::collections::HashSet<i64> =
        names.iter().step_by(5).map(|(_, id)| **id).collect();
    assert!(c.keys().all(|id| logged_in.contains(id)));
    assert!(t.db.changed_customers(10).await.unwrap().is_empty());
}
both_backends!(
    a_run_in_shards_scores_as_one_run_would,
    super::a_run_in_shards_scores_as_one_run_would
);

/// A run whose process died mid-shard: its shard's claim runs out, the tick's job (retried
/// or taken back by another daemon) carries on with the same run, takes the shard back,
/// removes what the dead holder wrote and redoes it; the old holder can no longer write
/// or finish. Every customer is scored once, as a fresh run scores them.
async fn a_shard_taken_back_is_redone_once(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.scoring.shard_customers = 100;
    });
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 800, 5, today).await.unwrap();
    let reference = scores_of(&t.db, summary.score.run_id).await;

    // A daemon opens the tick's run, splits it and dies inside its first shard, after
    // writing two scores of its own.
    let tick = "score@2026-12-07T21:00:00Z";
    let model = ctx.scoring_model().await.unwrap();
    let (run, _) =
        t.db.start_scoring_run(&model.version, today, tick, "full", "ghost", None)
            .await
            .unwrap();
    let per = if t.db.backend() == "sqlite" {
        i64::MAX
    } else {
        100
    };
    let ranges = t.db.shard_ranges(today, per).await.unwrap();
    t.db.split_run(run, &ranges).await.unwrap();
    let ghost =
        t.db.claim_shard(run, None, "ghost", -1)
            .await
            .unwrap()
            .unwrap();
    assert_eq!((ghost.shard, ghost.attempt), (0, 1));
    let mine: Vec<i64> = {
        let mut ids: Vec<i64> = reference
            .keys()
            .copied()
            .filter(|id| *id > ghost.range.after_id && *id <= ghost.range.upto_id)
            .collect();
        ids.sort_unstable();
        ids.truncate(2);
        ids
    };
    let bogus = |ids: &[i64]| -> Vec<attune::store::NewScore> {
        ids.iter()
            .map(|id| attune::store::NewScore {
                customer_id: *id,
                probability: 0.123,
                drivers: vec![],
            })
            .collect()
    };
    assert!(
        t.db.insert_shard_scores(&ghost, -1, bogus(&mine))
            .await
            .unwrap()
    );

    // Another daemon takes the shard back (its claim ran out): what the ghost wrote is
    // gone, and while the shard is held again the ghost can neither write nor finish it.
    let other =
        t.db.claim_shard(run, Some(0), "other", -1)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(other.attempt, 2);
    assert_eq!(
        scalar(
            &t.db,
            &format!("SELECT COUNT(*) FROM scores WHERE run_id = {run}")
        )
        .await,
        0
    );
    assert!(
        !t.db
            .insert_shard_scores(&ghost, 60, bogus(&mine[..1]))
            .await
            .unwrap()
    );
    assert_eq!(t.db.finish_shard(&ghost, 2, "{}").await.unwrap(), None);
    assert!(
        t.db.insert_shard_scores(&other, -1, bogus(&mine))
            .await
            .unwrap()
    );

    // That daemon dies too. The tick's job again: the same run, carried on.
    let report = score::run(&ctx, &full(today, Some(tick))).await.unwrap();
    assert_eq!(report.run_id, run);
    let redone = t.db.run_shards(run).await.unwrap();
    assert_eq!(redone[0].attempts, 3, "{redone:?}");
    assert!(redone.iter().all(|s| s.status == "done"));
    // Neither old claim counts once the shard is done.
    for old in [&ghost, &other] {
        assert!(
            !t.db
                .insert_shard_scores(old, 60, bogus(&mine[..1]))
                .await
                .unwrap()
        );
        assert_eq!(t.db.finish_shard(old, 2, "{}").await.unwrap(), None);
    }
    let got = scores_of(&t.db, run).await;
    assert_eq!(got.len(), reference.len());
    assert_eq!(got.len(), report.customers);
    for (id, (p, _)) in &reference {
        assert_eq!(got.get(id).map(|g| g.0), Some(*p), "customer {id}");
    }
    let finished = t.db.scoring_run(run).await.unwrap().unwrap();
    assert_eq!(finished.customers as usize, reference.len());
    // Running the tick's job once more changes nothing: the run is finished.
    let again = score::run(&ctx, &full(today, Some(tick))).await.unwrap();
    assert_eq!((again.run_id, again.customers), (run, report.customers));
    assert_eq!(
        scalar(
            &t.db,
            &format!("SELECT COUNT(*) FROM scores WHERE run_id = {run}")
        )
        .await,
        reference.len() as i64
    );
}
both_backends!(
    a_shard_taken_back_is_redone_once,
    super::a_shard_taken_back_is_redone_once
);

/// A daemon process (`attune run`, the binary cargo built) on database `url`.
fn daemon(url: &str, config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_attune"));
    // The harness's own ATTUNE_* settings are not the daemon's: it refuses variables it
    // does not know.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ATTUNE_")) {
        cmd.env_remove(k);
    }
    cmd.args(["--db", url, "--config"])
        .arg(config)
        .args(["--log-format", "json", "run"])
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting attune run")
}

/// A config whose only tick is a full scoring run at `at` (every other schedule is a
/// year away), in shards of 10,000 customers, with 3-second leases.
fn one_run_at(dir: &std::path::Path, at: chrono::DateTime<chrono::Utc>) -> std::path::PathBuf {
    use chrono::{Datelike as _, Timelike as _};
    let never = "0 0 0 1 1 *";
    let path = dir.join(format!("attune-{}.toml", at.timestamp()));
    std::fs::write(
        &path,
        format!(
            r#"[schedule]
pull = "{never}"
rescore = "{never}"
score = "{} {} {} {} {} *"
[retrain]
schedule = "{never}"
[scoring]
shard_customers = 10000
[worker]
lease_secs = 3
poll_interval_ms = 100
shutdown_grace_secs = 2
[http]
enabled = false
"#,
            at.second(),
            at.minute(),
            at.hour(),
            at.day(),
            at.month()
        ),
    )
    .unwrap();
    path
}

/// `n` customers, all active since 2025, written 20,000 at a time.
async fn seed_customers(db: &Db, n: usize) {
    let customers: Vec<attune::domain::Customer> = (0..n)
        .map(|i| {
            super::helpers::customer(
                &format!("c{i:07}"),
                super::helpers::d("2025-01-01"),
                super::helpers::email_only(),
            )
        })
        .collect();
    for chunk in customers.chunks(20_000) {
        db.upsert_customers(chunk).await.unwrap();
    }
}

/// The last `lines` lines of the daemons' log, for a failure's message.
fn log_tail(log: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The process that split run `run` (it holds the scoring lease while the run goes on).
async fn run_holder(db: &Db, run: i64) -> String {
    let Db::Postgres(p) = db else {
        unreachable!("several daemons share PostgreSQL only")
    };
    sqlx::query_scalar::<_, Option<String>>("SELECT holder FROM scoring_runs WHERE id = $1")
        .bind(run)
        .fetch_one(p)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// A job run as [`state`] shows it: id, kind, key, status, worker, error.
type JobRow = (i64, String, String, String, Option<String>, Option<String>);
/// A scoring run as [`state`] shows it: id, trigger, finished, failed, error, holder.
type RunRow = (
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// Where the jobs, runs, shards and leases stand, for a failure's message.
async fn state(db: &Db) -> String {
    let Db::Postgres(p) = db else {
        return String::new();
    };
    let mut out = String::new();
    let jobs: Vec<JobRow> = sqlx::query_as(
        "SELECT id, kind, job_key, status, worker, error FROM job_runs ORDER BY id DESC LIMIT 12",
    )
    .fetch_all(p)
    .await
    .unwrap_or_default();
    for j in jobs {
        out.push_str(&format!("job {j:?}\n"));
    }
    let runs: Vec<RunRow> =
        sqlx::query_as(
            "SELECT id, trigger, finished_at, failed_at, error, holder FROM scoring_runs ORDER BY id DESC LIMIT 6",
        )
        .fetch_all(p)
        .await
        .unwrap_or_default();
    for r in runs {
        out.push_str(&format!("run {r:?}\n"));
    }
    let shards: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT run_id, status, COUNT(*) FROM run_shards GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT 12",
    )
    .fetch_all(p)
    .await
    .unwrap_or_default();
    out.push_str(&format!("shards {shards:?}\n"));
    let leases: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT name, holder, expires_at FROM run_leases")
            .fetch_all(p)
            .await
            .unwrap_or_default();
    out.push_str(&format!(
        "leases {leases:?} now {}\n",
        attune::store::now_secs()
    ));
    let apalis: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT job_type, status, COUNT(*) FROM apalis.jobs GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(p)
    .await
    .unwrap_or_default();
    out.push_str(&format!("apalis {apalis:?}\n"));
    out
}

/// The process id in a holder's name (`PREFIX-HOST-PID-SUFFIX`).
fn pid_of(holder: &str) -> Option<u32> {
    holder.rsplit('-').nth(1)?.parse().ok()
}

/// Waits until run `trigger` has finished; its id. Panics with the logs after `limit`.
async fn wait_finished(
    db: &Db,
    trigger: &str,
    limit: std::time::Duration,
    log: &std::path::Path,
) -> i64 {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(run) = db.run_of_trigger(trigger).await.unwrap()
            && run.finished_at.is_some()
        {
            return run.id;
        }
        if std::time::Instant::now() > deadline {
            let tail = log_tail(log, 60);
            panic!("scoring run {trigger} did not finish within {limit:?}:\n{tail}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// (Named `postgres_...`: CI's PostgreSQL suite runs the tests whose names say so.)
///
/// Three daemon processes on one PostgreSQL database share a scoring run over 200,000
/// customers: every customer is scored once and the shards are worked by more than one
/// daemon. Then, in two more runs, a daemon holding a shard is SIGKILLed mid-shard (the
/// one that split the run, then one that only works shards): each run still finishes, the
/// shard redone by another daemon, every customer once, its planning queued once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "PostgreSQL: build and run with ATTUNE_TEST_POSTGRES_URL set"
)]
async fn postgres_three_daemons_share_a_run_and_one_killed_mid_run_loses_no_one() {
    let t = TestDb::postgres().await;
    let n: usize = std::env::var("ATTUNE_SHARDS_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let started = std::time::Instant::now();
    seed_customers(&t.db, n).await;
    eprintln!(
        "seeded {n} customers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemons.log");
    let count = |run: i64| {
        let db = t.db.clone();
        async move {
            (
                scalar(
                    &db,
                    &format!("SELECT COUNT(*) FROM scores WHERE run_id = {run}"),
                )
                .await,
                scalar(
                    &db,
                    &format!("SELECT COUNT(DISTINCT customer_id) FROM scores WHERE run_id = {run}"),
                )
                .await,
            )
        }
    };

    // One run, three daemons.
    let at = chrono::Utc::now() + chrono::Duration::seconds(8);
    let config = one_run_at(dir.path(), at);
    let mut daemons: Vec<_> = (0..3).map(|_| daemon(&t.url, &config, &log)).collect();
    let trigger = format!("score@{}", at.format("%Y-%m-%dT%H:%M:%SZ"));
    let run = wait_finished(&t.db, &trigger, std::time::Duration::from_secs(300), &log).await;
    let took = started.elapsed();
    assert_eq!(count(run).await, (n as i64, n as i64));
    let shards = t.db.run_shards(run).await.unwrap();
    assert!(shards.len() >= 19, "{} shards", shards.len());
    assert!(shards.iter().all(|s| s.status == "done"));
    let holders: std::collections::HashSet<&str> =
        shards.iter().filter_map(|s| s.holder.as_deref()).collect();
    assert!(
        holders.len() >= 2,
        "one daemon did every shard: {holders:?}"
    );
    for d in &mut daemons {
        d.kill().unwrap();
        d.wait().unwrap();
    }
    eprintln!(
        "three daemons: {n} customers in {} shards by {} daemons, run finished {:.1} s after the start",
        shards.len(),
        holders.len(),
        took.as_secs_f64()
    );

    // Two more runs: in each a daemon is SIGKILLed while it holds a shard: first the one
    // that split the run (it holds the scoring lease and waits for the run to finish),
    // then one that only works shards.
    for coordinator in [true, false] {
        let at = chrono::Utc::now() + chrono::Duration::seconds(8);
        let config = one_run_at(dir.path(), at);
        let mut daemons: Vec<_> = (0..3).map(|_| daemon(&t.url, &config, &log)).collect();
        let trigger = format!("score@{}", at.format("%Y-%m-%dT%H:%M:%SZ"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let (killed_shard, killed_pid) = loop {
            assert!(std::time::Instant::now() < deadline, "no shard ever ran");
            if let Some(run) = t.db.run_of_trigger(&trigger).await.unwrap() {
                let splitter = run_holder(&t.db, run.id).await;
                let shards = t.db.run_shards(run.id).await.unwrap();
                let done = shards.iter().filter(|s| s.status == "done").count();
                let running = shards.iter().find(|s| {
                    let Some(holder) = s.holder.as_deref() else {
                        return false;
                    };
                    s.status == "running"
                        && (holder == splitter) == coordinator
                        && pid_of(holder).is_some_and(|p| daemons.iter().any(|d| d.id() == p))
                });
                if done >= 2
                    && let Some(s) = running
                {
                    break (s.shard, pid_of(s.holder.as_deref().unwrap()).unwrap());
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let i = daemons.iter().position(|d| d.id() == killed_pid).unwrap();
        let mut dead = daemons.remove(i);
        dead.kill().unwrap();
        dead.wait().unwrap();
        let killed_at = std::time::Instant::now();
        let run = wait_finished(&t.db, &trigger, std::time::Duration::from_secs(300), &log).await;
        let finished_after = killed_at.elapsed();
        assert_eq!(count(run).await, (n as i64, n as i64));
        let shards = t.db.run_shards(run).await.unwrap();
        assert!(shards.iter().all(|s| s.status == "done"), "{shards:?}");
        let redone = &shards[killed_shard as usize];
        assert!(redone.attempts >= 2, "{redone:?}");
        assert_ne!(redone.holder.as_deref().and_then(pid_of), Some(killed_pid));
        let finished = t.db.scoring_run(run).await.unwrap().unwrap();
        assert_eq!(finished.customers as usize, n);
        // The planning that follows the run is queued once, whoever finished it.
        let plan_key = format!("plan@run-{run}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let plans = loop {
            let plans = scalar(
                &t.db,
                &format!("SELECT COUNT(*) FROM job_runs WHERE job_key = '{plan_key}'"),
            )
            .await;
            if plans > 0 || std::time::Instant::now() > deadline {
                break plans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        assert_eq!(plans, 1, "{plan_key} queued {plans} times");
        eprintln!(
            "one of three daemons SIGKILLed holding shard {killed_shard} ({}): run finished {:.1} s after the kill, the shard redone at attempt {}, {n} customers once, its planning queued once",
            if coordinator {
                "the daemon that split the run"
            } else {
                "a daemon working shards only"
            },
            finished_after.as_secs_f64(),
            redone.attempts
        );
        for d in &mut daemons {
            d.kill().unwrap();
            d.wait().unwrap();
        }
    }
    t.cleanup().await;
}

/// What the daemons' sweep offers again: a shard whose claim ran out, and the queued
/// shards of a run nobody is working; not the queued shards of a run being worked. A
/// shard that fails its last attempt fails its run, and no shard of it is claimed after.
async fn stalled_shards_are_offered_again_and_a_failed_shard_fails_its_run(t: &TestDb) {
    let today = attune::jobs::today();
    seed_customers(&t.db, 30).await;
    let (run, _) =
        t.db.start_scoring_run("v", today, "test", "full", "a", None)
            .await
            .unwrap();
    let ranges = t.db.shard_ranges(today, 10).await.unwrap();
    assert_eq!(
        ranges.iter().map(|r| r.planned).collect::<Vec<_>>(),
        vec![10, 10, 10]
    );
    t.db.split_run(run, &ranges).await.unwrap();
    // Split again (a retried job): the shards it has stay.
    assert_eq!(t.db.split_run(run, &ranges[..1]).await.unwrap(), 3);
    let wanting = |ttl: i64| {
        let db = t.db.clone();
        async move {
            db.shards_wanting_workers(ttl)
                .await
                .unwrap()
                .into_iter()
                .map(|(r, s, a)| {
                    assert_eq!(r, run);
                    (s, a)
                })
                .collect::<Vec<_>>()
        }
    };
    // Just split, being worked: nothing to offer again, and a new tick would wait.
    assert_eq!(t.db.run_being_worked().await.unwrap(), None);
    let a =
        t.db.claim_shard(run, Some(0), "a", 60)
            .await
            .unwrap()
            .unwrap();
    assert!(wanting(60).await.is_empty());
    assert_eq!(t.db.run_being_worked().await.unwrap(), Some(run));
    // Its holder stops: the claim runs out and the shard is offered again, while the
    // queued ones of a run split just now are not.
    let b =
        t.db.claim_shard(run, Some(1), "b", -1)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(wanting(60).await, vec![(1, 1)]);
    // A run nobody works any more (split long ago, no live claim, nothing finished
    // since): its queued shard is offered again too.
    assert!(
        t.db.release_shard(&a, "stopped", 5)
            .await
            .unwrap()
            .as_deref()
            == Some("queued")
    );
    assert_eq!(wanting(-5).await, vec![(0, 1), (1, 1), (2, 0)]);
    // A shard failing on its last attempt fails the run; its shards are never claimed.
    assert_eq!(
        t.db.release_shard(&b, "boom", 1).await.unwrap().as_deref(),
        Some("failed")
    );
    let (finished, failed) = t.db.run_state(run).await.unwrap();
    assert!(!finished);
    let failed = failed.unwrap();
    assert!(
        failed.contains("shard 1 failed after 1 attempt: boom"),
        "{failed}"
    );
    assert!(
        t.db.claim_shard(run, None, "c", 60)
            .await
            .unwrap()
            .is_none()
    );
    assert!(wanting(-5).await.is_empty());
    assert_eq!(t.db.run_being_worked().await.unwrap(), None);
    assert!(!t.db.finish_scoring_run_once(run, 0).await.unwrap());
}
both_backends!(
    stalled_shards_are_offered_again_and_a_failed_shard_fails_its_run,
    super::stalled_shards_are_offered_again_and_a_failed_shard_fails_its_run
);

/// kill -9, many times, while three daemons share scoring runs: a full run every 6 s over
/// `ATTUNE_SHARDS_CUSTOMERS` customers (CI: 40,000) in shards of 2,000, and a random
/// daemon SIGKILLed at a random moment of a run (up to a second after a shard is being
/// worked) and started again, `ATTUNE_SHARDS_KILLS` times (CI: 6). Then the daemons run until every run is closed, and each run that finished has
/// scored every customer exactly once, its shards all done; none is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "PostgreSQL: build and run with ATTUNE_TEST_POSTGRES_URL set"
)]
async fn postgres_shared_runs_survive_kill_9_at_random_moments() {
    use rand::{Rng as _, SeedableRng as _};
    let t = TestDb::postgres().await;
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, kills) = (
        env("ATTUNE_SHARDS_CUSTOMERS", 40_000) as usize,
        env("ATTUNE_SHARDS_KILLS", 6),
    );
    let seed = env("ATTUNE_CHAOS_SEED", rand::random());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = std::time::Instant::now();
    seed_customers(&t.db, n).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemons.log");
    let config = dir.path().join("attune.toml");
    let never = "0 0 0 1 1 *";
    std::fs::write(
        &config,
        format!(
            r#"[schedule]
pull = "{never}"
rescore = "{never}"
score = "*/6 * * * * *"
[retrain]
schedule = "{never}"
[scoring]
shard_customers = 2000
[worker]
lease_secs = 3
poll_interval_ms = 100
shutdown_grace_secs = 2
[http]
enabled = false
"#
        ),
    )
    .unwrap();
    let mut daemons: Vec<_> = (0..3).map(|_| daemon(&t.url, &config, &log)).collect();
    let mut holding = 0;
    for _ in 0..kills {
        // A random moment of a run: once a shard is being worked, up to a second later.
        let wait = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while scalar(
            &t.db,
            "SELECT COUNT(*) FROM run_shards WHERE status = 'running'",
        )
        .await
            == 0
        {
            if std::time::Instant::now() > wait {
                panic!(
                    "no shard ran for 60 s (seed {seed}):\n{}\n{}",
                    log_tail(&log, 40),
                    state(&t.db).await
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(rng.gen_range(0..1000))).await;
        let i = rng.gen_range(0..daemons.len());
        let pid = daemons[i].id();
        holding += scalar(
            &t.db,
            &format!(
                "SELECT COUNT(*) FROM run_shards WHERE status = 'running' AND holder LIKE '%-{pid}-%'"
            ),
        )
        .await;
        daemons[i].kill().unwrap();
        daemons[i].wait().unwrap();
        daemons[i] = daemon(&t.url, &config, &log);
    }
    // Until every run is closed, and one has finished since the last kill.
    let last_kill = attune::store::now_secs();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let open = scalar(
            &t.db,
            "SELECT COUNT(*) FROM scoring_runs WHERE finished_at IS NULL AND failed_at IS NULL",
        )
        .await;
        let after = scalar(
            &t.db,
            &format!("SELECT COUNT(*) FROM scoring_runs WHERE started_at > {last_kill} AND finished_at IS NOT NULL"),
        )
        .await;
        if open == 0 && after > 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{open} runs still open, {after} finished since the last kill (seed {seed}):\n{}\n{}",
                log_tail(&log, 40),
                state(&t.db).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    for d in &mut daemons {
        d.kill().unwrap();
        d.wait().unwrap();
    }
    let Db::Postgres(p) = &t.db else {
        unreachable!()
    };
    let runs: Vec<(i64, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
        "SELECT id, finished_at, failed_at, customers FROM scoring_runs ORDER BY id",
    )
    .fetch_all(p)
    .await
    .unwrap();
    let (mut finished, mut failed, mut retaken) = (0, 0, 0);
    for (run, fin, fail, scored) in &runs {
        assert!(fin.is_some() || fail.is_some(), "run {run} left open");
        if fin.is_none() {
            failed += 1;
            continue;
        }
        finished += 1;
        let (rows, distinct): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM scores WHERE run_id = $1",
        )
        .bind(run)
        .fetch_one(p)
        .await
        .unwrap();
        assert_eq!(
            (rows, distinct, *scored),
            (n as i64, n as i64, n as i64),
            "run {run} (seed {seed})"
        );
        let shards = t.db.run_shards(*run).await.unwrap();
        assert!(
            shards.iter().all(|s| s.status == "done"),
            "run {run}: {shards:?}"
        );
        retaken += shards.iter().filter(|s| s.attempts > 1).count();
    }
    assert!(finished >= 1, "no run finished (seed {seed})");
    eprintln!(
        "shards chaos: {n} customers, {kills} SIGKILLs of 3 daemons (seed {seed}), {holding} of them while holding a shard; {} runs: {finished} finished, every customer once each, {failed} closed unfinished (superseded or failed); {retaken} shards redone; {:.1} s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    t.cleanup().await;
}
