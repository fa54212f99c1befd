//! What ops rely on: a backup of a running SQLite database, and one daemon per SQLite file.

use attune::store::{DatabaseUrl, Db};

use super::helpers::{TestDb, a_run_in_every_shard_state, scalar};
use crate::both_backends;

/// `attune backup PATH` writes a database that opens and holds what the original holds;
/// it never overwrites a file; on PostgreSQL it points at pg_dump.
#[tokio::test]
async fn a_backup_opens_and_holds_everything() {
    let t = TestDb::sqlite().await;
    super::sources::add_customers(&t.db, &["c1", "c2", "c3"]).await;
    t.db.audit("test", "backup.test", "x", &serde_json::json!({}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.db");
    let bytes = t.db.backup_to(&path).await.unwrap();
    assert!(bytes > 0);
    let copy = Db::connect(&DatabaseUrl::Sqlite(path.clone()))
        .await
        .unwrap();
    for sql in [
        "SELECT COUNT(*) FROM customers",
        "SELECT COUNT(*) FROM audit_log",
    ] {
        assert_eq!(scalar(&copy, sql).await, scalar(&t.db, sql).await, "{sql}");
    }
    assert_eq!(scalar(&copy, "SELECT COUNT(*) FROM customers").await, 3);
    // The copy is at the same migration: migrating it changes nothing.
    copy.migrate().await.unwrap();
    copy.close().await;
    let e = t.db.backup_to(&path).await.unwrap_err().to_string();
    assert!(e.contains("exists already"), "{e}");
    t.cleanup().await;
}

#[tokio::test]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "PostgreSQL: build and run with ATTUNE_TEST_POSTGRES_URL set"
)]
async fn backup_on_postgresql_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let pg = TestDb::postgres().await;
    let e = pg
        .db
        .backup_to(&dir.path().join("pg.db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pg_dump"), "{e}");
    pg.cleanup().await;
}

/// Before: a second daemon on the same SQLite file started without a word. Now the second
/// lock is refused, naming the first holder's process; the lock ends with its holder.
#[tokio::test]
async fn a_second_daemon_on_one_sqlite_file_is_refused() {
    let t = TestDb::sqlite().await;
    let first = attune::jobs::daemon::daemon_lock(&t.db).unwrap();
    assert!(first.is_some());
    let e = attune::jobs::daemon::daemon_lock(&t.db)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another attune daemon"), "{e}");
    assert!(
        e.contains(&std::process::id().to_string()),
        "names the holder: {e}"
    );
    drop(first);
    assert!(attune::jobs::daemon::daemon_lock(&t.db).unwrap().is_some());
    t.cleanup().await;
}

/// Several daemons share one PostgreSQL database by design: no lock.
#[tokio::test]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "PostgreSQL: build and run with ATTUNE_TEST_POSTGRES_URL set"
)]
async fn daemons_share_one_postgresql_database() {
    let pg = TestDb::postgres().await;
    assert!(attune::jobs::daemon::daemon_lock(&pg.db).unwrap().is_none());
    pg.cleanup().await;
}

/// `attune demo` again over a demo database people worked in refuses, says what would be
/// lost and how to keep it or start over; `--reset` starts over. A demo nobody touched is
/// simply made again (issue 19: a second `attune demo` erased users, decisions and the
/// audit trail without a word).
#[tokio::test]
async fn the_demo_keeps_peoples_work_unless_told_to_reset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let demo = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
            .current_dir(dir.path())
            .args([
                "--db",
                db.to_str().unwrap(),
                "demo",
                "--once",
                "--customers",
                "300",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = demo(&[]);
    assert!(ok, "{err}");
    // Untouched: made again.
    let (ok, err) = demo(&[]);
    assert!(ok, "{err}");
    // A reviewer decides something.
    let store = Db::connect(&DatabaseUrl::Sqlite(db.clone())).await.unwrap();
    store
        .audit("maria", "nudge.approved", "nudge:1", &serde_json::json!({}))
        .await
        .unwrap();
    store.close().await;
    let (ok, err) = demo(&[]);
    assert!(!ok, "the demo replaced a database with decisions in it");
    assert!(
        err.contains("holds work people did (1 audit entry:") && err.contains("demo --reset"),
        "{err}"
    );
    let (ok, err) = demo(&["--reset"]);
    assert!(ok, "{err}");
}

/// `config check` says which file it read and which variables overrode it; `run --help`
/// says where the daemon's settings come from.
#[test]
fn config_check_names_its_file_and_run_help_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, "[playbook]\nmax_nudges = 3\n").unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
            .current_dir(dir.path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[("ATTUNE_PLAYBOOK_WINDOW_DAYS", "10")],
    );
    assert!(
        text.contains(&format!("read {}", file.display()))
            && text.contains("overridden by ATTUNE_PLAYBOOK_WINDOW_DAYS"),
        "{text}"
    );
    let text = run(&["config", "check"], &[]);
    assert!(
        text.contains("read no file (attune.toml does not exist here)"),
        "{text}"
    );
    let help = run(&["run", "--help"], &[]);
    assert!(
        help.contains("attune config check") && help.contains("ATTUNE_*"),
        "{help}"
    );
}

/// `attune jobs` (the binary, on database `url`) with `args`: what it printed.
fn attune_jobs(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(["--db", url, "jobs"])
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
}

/// `attune jobs` shows the newest scoring run split into shards after the leases: how many
/// shards are in each state and how many customers are scored, how the run ended, and a
/// line for each shard worth a look (running, failed, tried again) with its ids in words,
/// holder, attempt and error; `--json` has the run and every shard. Before any run is
/// split it says so.
async fn jobs_shows_the_shards_of_the_latest_split_run(t: &TestDb) {
    let text = attune_jobs(&t.url, &[]);
    assert!(
        text.contains("leases held now:\n  none\nshards of the latest split scoring run:\n  none yet\nlatest executions:"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&attune_jobs(&t.url, &["--json"])).unwrap();
    assert_eq!(json["shards"], serde_json::Value::Null, "{json}");

    let run = a_run_in_every_shard_state(&t.db).await;
    let text = attune_jobs(&t.url, &[]);
    let summary = format!(
        "shards of the latest split scoring run:\n  scoring run {run} (full, as of 2026-12-07): \
         5 shards: 2 done, 1 running, 1 queued, 1 failed; 198 of 450 customers scored; \
         failed: shard 3 failed after "
    );
    assert!(text.contains(&summary), "{text}");
    assert!(
        text.contains("\n  shard 2 (ids 201 to 300): running on host-b-score, attempt 2, since "),
        "{text}"
    );
    assert!(
        text.contains("\n  shard 3 (ids 301 to 400): failed on host-c-score, attempt 1: boom\n"),
        "{text}"
    );
    for quiet in ["shard 0 (", "shard 1 (", "shard 4 ("] {
        assert!(
            !text.contains(quiet),
            "a shard done or never tried has no line of its own: {text}"
        );
    }

    let json: serde_json::Value = serde_json::from_str(&attune_jobs(&t.url, &["--json"])).unwrap();
    let split = &json["shards"];
    assert_eq!(split["run"]["id"], run, "{json}");
    assert_eq!(split["run"]["scope"], "full");
    assert!(
        split["failed"].as_str().unwrap().ends_with(": boom"),
        "{split}"
    );
    let shards = split["shards"].as_array().unwrap();
    let field = |name: &str| shards.iter().map(|s| s[name].clone()).collect::<Vec<_>>();
    assert_eq!(
        field("status"),
        ["done", "done", "running", "failed", "queued"]
    );
    assert_eq!(field("attempts"), [1, 1, 2, 1, 0]);
    assert_eq!(shards[2]["holder"], "host-b-score");
    assert_eq!(shards[3]["error"], "boom");
    assert_eq!(field("scored")[..2], [100, 98]);
    assert_eq!(field("planned"), [100, 100, 100, 100, 50]);
}
both_backends!(
    jobs_shows_the_shards_of_the_latest_split_run,
    super::jobs_shows_the_shards_of_the_latest_split_run
);
