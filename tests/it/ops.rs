//! What ops rely on: a backup of a running SQLite database, and one daemon per SQLite file.

use attune::store::{DatabaseUrl, Db};

use super::helpers::{TestDb, scalar};

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
    if let Some(pg) = TestDb::postgres().await {
        let e = pg
            .db
            .backup_to(&dir.path().join("pg.db"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("pg_dump"), "{e}");
        pg.cleanup().await;
    }
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
    if let Some(pg) = TestDb::postgres().await {
        // Several daemons share one PostgreSQL database by design.
        assert!(attune::jobs::daemon::daemon_lock(&pg.db).unwrap().is_none());
        pg.cleanup().await;
    }
}
