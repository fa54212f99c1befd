//! kill -9, many times: the real daemon (`attune run`, the binary cargo built) under a
//! workload of files dropped in its inbox, HTTP batches and schedules of a few seconds, is
//! SIGKILLed at random moments; then it runs once more, is stopped cleanly, and the
//! invariants are checked: every event stored once, rollups exact, every file done once,
//! nudges unique, no execution left running, every scoring run finished or marked, every
//! tick accounted for, and the schedule kept after the last restart.
//!
//! `ATTUNE_CHAOS_KILLS` sets the number of kills (CI: the default, a few; BENCHMARKS.md:
//! 200), `ATTUNE_CHAOS_SEED` the random moments. The figures are printed past the test
//! harness's capture.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attune::demo::synth::{SynthOptions, generate};
use attune::domain::{ActivityEvent, CustomerId, EventKinds};
use attune::store::Db;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::helpers::{TestDb, scalar};
use crate::both_backends;

const TOKEN: &str = "chaos-token-0123456789";

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(db_url: &str, config: &Path, log: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_attune"))
            .args(["--db", db_url, "--config"])
            .arg(config)
            .args(["--log-format", "json", "run"])
            .env("ATTUNE_CHAOS_TOKEN", TOKEN)
            // The harness's own settings are not the daemon's: it refuses unknown
            // ATTUNE_* variables, so with these inherited it never started at all.
            .env_remove("ATTUNE_CHAOS_KILLS")
            .env_remove("ATTUNE_CHAOS_SEED")
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting attune run");
        Daemon { child }
    }

    fn kill9(mut self) {
        // std's kill is SIGKILL on Unix.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("the daemon did not stop within 30 s of SIGTERM");
    }
}

/// POSTs `body` to `/v1/events`; the status, or None when nobody answered.
fn post_events(port: u16, body: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn get_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An event of the workload: one of a few kinds, in the last weeks, a unique id.
fn workload_event(rng: &mut StdRng, ids: &[String], source: &str, id: String) -> ActivityEvent {
    let kinds = EventKinds::builtin();
    let (kind, value) = if rng.gen_bool(0.5) {
        ("login", None)
    } else {
        ("usage", Some(f64::from(rng.gen_range(1..500u32)) / 10.0))
    };
    let days = rng.gen_range(1..40i64);
    let at = chrono::Utc::now() - chrono::Duration::days(days)
        + chrono::Duration::seconds(rng.gen_range(0..3600));
    ActivityEvent {
        customer: CustomerId::parse(&ids[rng.gen_range(0..ids.len())]).unwrap(),
        kind: kinds.lookup(kind).unwrap().code,
        occurred_at: chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap(),
        value,
        attributes: Default::default(),
        source: source.into(),
        source_event_id: id,
    }
}

fn csv_of(events: &[ActivityEvent], kind_name: impl Fn(&ActivityEvent) -> &'static str) -> String {
    let mut out = String::from("customer_id,kind,occurred_at,value,source_event_id\n");
    for e in events {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            e.customer.as_str(),
            kind_name(e),
            e.occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.value.map(|v| v.to_string()).unwrap_or_default(),
            e.source_event_id
        ));
    }
    out
}

fn json_of(events: &[ActivityEvent], kind_name: impl Fn(&ActivityEvent) -> &'static str) -> String {
    let items: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "customer_id": e.customer.as_str(),
                "kind": kind_name(e),
                "occurred_at": e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "value": e.value,
                "source_event_id": e.source_event_id,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn files_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    names
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn kill9_chaos(t: &TestDb) {
    let kills: usize = std::env::var("ATTUNE_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("ATTUNE_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_owned();
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let log = root.join("daemon.log");
    let today = chrono::Utc::now().date_naive();
    let pop = generate(&SynthOptions::new(150, seed, today));
    t.db.upsert_customers(&pop.customers).await.unwrap();
    let ids: Vec<String> = pop
        .customers
        .iter()
        .map(|c| c.external_id.as_str().to_owned())
        .collect();
    let port = free_port();
    let config = root.join("attune.toml");
    std::fs::write(
        &config,
        format!(
            r#"[schedule]
pull = "* * * * * *"
rescore = "*/2 * * * * *"
score = "*/3 * * * * *"
[pull]
inbox = "{inbox}"
[worker]
lease_secs = 3
poll_interval_ms = 200
shutdown_grace_secs = 10
[http]
listen = "127.0.0.1:{port}"
cookie_secure = false
[[sources]]
name = "app"
type = "http"
token_env = "ATTUNE_CHAOS_TOKEN"
"#,
            inbox = inbox.display()
        ),
    )
    .unwrap();
    let kinds = EventKinds::builtin();
    let name_of = |e: &ActivityEvent| -> &'static str {
        if kinds.lookup("login").unwrap().code == e.kind {
            "login"
        } else {
            "usage"
        }
    };

    let mut expected: Vec<ActivityEvent> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    // HTTP batches not yet answered 200: sent again until they are (the same ids).
    let mut unconfirmed: Vec<String> = Vec::new();
    let (mut posted, mut confirmed) = (0usize, 0usize);
    let mut n = 0usize;
    for round in 0..=kills {
        let daemon = Daemon::start(&t.url, &config, &log);
        let last = round == kills;
        let window = if last {
            Duration::from_secs(4)
        } else {
            Duration::from_millis(rng.gen_range(200..4000))
        };
        let until = Instant::now() + window;
        while Instant::now() < until {
            // A file of events, written aside and renamed in, as a producer does.
            let events: Vec<ActivityEvent> = (0..rng.gen_range(20..120))
                .map(|_| {
                    n += 1;
                    workload_event(&mut rng, &ids, "inbox", format!("f{n}"))
                })
                .collect();
            let name = format!("events-{round:04}-{n:07}.csv");
            std::fs::write(
                inbox.join(format!(".{name}.part")),
                csv_of(&events, name_of),
            )
            .unwrap();
            std::fs::rename(inbox.join(format!(".{name}.part")), inbox.join(&name)).unwrap();
            dropped.push(name);
            expected.extend(events);
            // An HTTP batch.
            let events: Vec<ActivityEvent> = (0..rng.gen_range(10..200))
                .map(|_| {
                    n += 1;
                    workload_event(&mut rng, &ids, "app", format!("h{n}"))
                })
                .collect();
            unconfirmed.push(json_of(&events, name_of));
            expected.extend(events);
            let mut still = Vec::new();
            for body in unconfirmed.drain(..) {
                posted += 1;
                match post_events(port, &body) {
                    Some(200) => confirmed += 1,
                    Some(503) | None => still.push(body),
                    Some(other) => panic!("POST /v1/events answered {other}"),
                }
            }
            unconfirmed = still;
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        }
        if !last {
            daemon.kill9();
            continue;
        }
        // The last run: every unconfirmed batch goes through, every file is taken, then
        // the schedule is watched for a while before a clean stop.
        // Two minutes, and a second for each batch left over from the kills (after 200
        // kills there are hundreds, each a request of its own).
        let left = unconfirmed.len();
        let deadline = Instant::now() + Duration::from_secs(120 + left as u64);
        while !unconfirmed.is_empty() {
            assert!(
                Instant::now() < deadline,
                "HTTP batches never accepted: {} of {left} left (last answer {:?})\n{}",
                unconfirmed.len(),
                post_events(port, "[]"),
                tail(&log)
            );
            let body = unconfirmed.pop().unwrap();
            posted += 1;
            if post_events(port, &body) == Some(200) {
                confirmed += 1;
            } else {
                unconfirmed.push(body);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        while !files_in(&inbox).is_empty() {
            assert!(
                Instant::now() < deadline,
                "files never taken: {:?}\n{}",
                files_in(&inbox),
                tail(&log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let watch_from = chrono::Utc::now().timestamp_millis() + 2000;
        // Long enough for the sweeper to take back what the last kill left (lease 3 s).
        std::thread::sleep(Duration::from_secs(10));
        let watch_to = chrono::Utc::now().timestamp_millis() - 1500;
        assert!(get_ok(port, "/metrics"), "GET /metrics");
        daemon.stop();
        check_invariants(t, &root, &expected, &dropped, watch_from, watch_to, &log).await;
    }
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "chaos ({}): {kills} SIGKILLs, seed {seed}, {} events ({} files, {posted} HTTP posts, {confirmed} answered 200), {:.0} s",
        t.db.backend(),
        expected.len(),
        dropped.len(),
        started.elapsed().as_secs_f64()
    );
}

async fn check_invariants(
    t: &TestDb,
    root: &Path,
    expected: &[ActivityEvent],
    dropped: &[String],
    watch_from: i64,
    watch_to: i64,
    log: &Path,
) {
    let db = &t.db;
    let mut err = std::io::stderr();
    // Every event stored once, none kept back.
    let stored = db.counts().await.unwrap().events;
    assert_eq!(stored as usize, expected.len(), "events stored once each");
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM quarantine").await, 0);
    // Rollups exact.
    super::features::assert_rollups_match(db, expected, chrono::Utc::now().date_naive()).await;
    // Every file done once: none left, none rejected, each in done/ once.
    assert!(files_in(&root.join("inbox")).is_empty());
    let rejected = files_in(&root.join("inbox/rejected"));
    assert!(rejected.is_empty(), "rejected files: {rejected:?}");
    let done = files_in(&root.join("inbox/done"));
    assert_eq!(done.len(), dropped.len(), "every file moved to done/ once");
    let mut wanted = dropped.to_vec();
    wanted.sort();
    assert_eq!(done, wanted);
    // Nudges unique.
    let doubled = scalar(
        db,
        "SELECT COUNT(*) FROM (SELECT customer_id, kind, occasion FROM nudges
         GROUP BY customer_id, kind, occasion HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0, "nudges queued twice");
    // No execution left running after the clean stop; none in apalis's table either.
    let running = scalar(db, "SELECT COUNT(*) FROM job_runs WHERE status = 'running'").await;
    assert_eq!(running, 0, "executions still marked running\n{}", tail(log));
    let apalis_running = match db {
        Db::Sqlite(..) => {
            let queue = db.queue_pool().await.unwrap();
            let n = scalar(&queue, "SELECT COUNT(*) FROM Jobs WHERE status = 'Running'").await;
            queue.close().await;
            n
        }
        Db::Postgres(_) => {
            scalar(
                db,
                "SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Running'",
            )
            .await
        }
    };
    assert_eq!(apalis_running, 0, "apalis jobs left Running");
    // Every scoring run finished or marked failed.
    let open_runs = scalar(
        db,
        "SELECT COUNT(*) FROM scoring_runs WHERE finished_at IS NULL AND failed_at IS NULL",
    )
    .await;
    assert_eq!(
        open_runs, 0,
        "scoring runs neither finished nor marked failed"
    );
    // Every tick accounted for: enqueued (or skipped), and recorded as an execution.
    let unqueued = scalar(db, "SELECT COUNT(*) FROM ticks WHERE enqueued_at IS NULL").await;
    assert_eq!(unqueued, 0, "ticks claimed and never enqueued");
    let unrecorded = scalar(
        db,
        "SELECT COUNT(*) FROM ticks t WHERE NOT EXISTS (SELECT 1 FROM job_runs j WHERE j.job_key = t.id)",
    )
    .await;
    assert_eq!(unrecorded, 0, "ticks with no execution recorded");
    // The schedule kept after the last restart: a pull tick every second, each started
    // (or skipped) within 2 s of its tick.
    let window = format!("due_ms >= {watch_from} AND due_ms <= {watch_to}");
    let pull_ticks = scalar(
        db,
        &format!(
            "SELECT COUNT(DISTINCT job_key) FROM job_runs WHERE kind = 'pull' AND job_key LIKE 'pull@%' AND {window}"
        ),
    )
    .await;
    let seconds = (watch_to - watch_from) / 1000;
    assert!(
        pull_ticks >= seconds - 1,
        "{pull_ticks} pull ticks in {seconds} s after the last restart"
    );
    let late = scalar(
        db,
        &format!(
            "SELECT COUNT(*) FROM job_runs WHERE started_ms IS NOT NULL AND started_ms - due_ms > 2000 AND {window}"
        ),
    )
    .await;
    let max_lag = scalar(
        db,
        &format!(
            "SELECT COALESCE(MAX(started_ms - due_ms), 0) FROM job_runs WHERE started_ms IS NOT NULL AND {window}"
        ),
    )
    .await;
    assert_eq!(
        late, 0,
        "jobs started more than 2 s after their tick (max {max_lag} ms)"
    );
    let interrupted = scalar(
        db,
        "SELECT COUNT(*) FROM job_runs WHERE status = 'interrupted'",
    )
    .await;
    let failed_runs = scalar(
        db,
        "SELECT COUNT(*) FROM scoring_runs WHERE failed_at IS NOT NULL",
    )
    .await;
    let ticks = scalar(db, "SELECT COUNT(*) FROM ticks").await;
    let nudges = scalar(db, "SELECT COUNT(*) FROM nudges").await;
    let _ = writeln!(
        err,
        "chaos invariants ({}): {stored} events stored once; rollups exact; {} files done once; \
         {nudges} nudges, none doubled; 0 running; {interrupted} executions marked interrupted; \
         {failed_runs} scoring runs marked failed, 0 open; {ticks} ticks all recorded; \
         {pull_ticks} pull ticks in the last {seconds} s, max lag {max_lag} ms",
        db.backend(),
        done.len()
    );
}

both_backends!(kill_9_at_random_moments, super::kill9_chaos);

/// A SQLite queue file that is gone (removed, or a restore without it) while `job_runs`
/// says a pull is queued: the daemon marks that execution lost at start and pulls on its
/// schedule. Before, the orphan read as "a pull job is already queued" and every pull
/// tick was skipped until the sweeper's one-hour bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_queue_file_does_not_stop_the_schedule() {
    let t = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let config = dir.path().join("attune.toml");
    std::fs::write(
        &config,
        format!(
            "[schedule]\npull = \"* * * * * *\"\n[pull]\ninbox = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\ncookie_secure = false\n[[sources]]\nname = \"app\"\ntype = \"http\"\ntoken_env = \"ATTUNE_CHAOS_TOKEN\"\n",
            inbox.display(),
            free_port()
        ),
    )
    .unwrap();
    let due = chrono::Utc::now().timestamp_millis() - 60_000;
    sqlx::query(
        "INSERT INTO job_runs (kind, job_key, attempt, status, due_ms, queued_at) VALUES ('pull', 'pull@orphan', 1, 'queued', ?1, ?2)",
    )
    .bind(due)
    .bind(due / 1000)
    .execute(match &t.db {
        Db::Sqlite(p, _) => p,
        Db::Postgres(_) => unreachable!(),
    })
    .await
    .unwrap();
    let queue = attune::store::queue_path(std::path::Path::new(&t.url));
    assert!(!queue.exists(), "no queue file yet: {}", queue.display());
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start(&t.url, &config, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pulled = 0;
    while Instant::now() < deadline && pulled < 3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pulled = scalar(
            &t.db,
            "SELECT COUNT(*) FROM job_runs WHERE kind = 'pull' AND status = 'succeeded'",
        )
        .await;
    }
    daemon.stop();
    assert!(
        pulled >= 3,
        "pulls ran on schedule: {pulled}\n{}",
        tail(&log)
    );
    let lost = scalar(
        &t.db,
        "SELECT COUNT(*) FROM job_runs WHERE job_key = 'pull@orphan' AND status = 'lost'",
    )
    .await;
    assert_eq!(lost, 1, "the orphan is marked lost");
    t.cleanup().await;
}
