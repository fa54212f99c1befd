//! Test databases: a temp SQLite file, or a fresh PostgreSQL database created from
//! `ATTUNE_TEST_POSTGRES_URL` and dropped afterwards.

use std::collections::BTreeMap;

use attune::config::Config;
use attune::domain::{Channel, Consent, ContractType, Customer, CustomerId};
use attune::jobs::JobContext;
use attune::store::{DatabaseUrl, Db};
use chrono::NaiveDate;

pub struct TestDb {
    pub db: Db,
    /// The database's URL, for a process of its own (`attune --db URL`).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

pub const PG_ENV: &str = "ATTUNE_TEST_POSTGRES_URL";

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        attune::telemetry::init(attune::config::LogFormat::Human, "info,sqlx=warn");
    }
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("attune.db"));
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        TestDb {
            db,
            url: dir.path().join("attune.db").display().to_string(),
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh database on the server `ATTUNE_TEST_POSTGRES_URL` names. The PostgreSQL
    /// variants are compiled as ignored when the variable is not set at build time
    /// (`build.rs`), so they are reported as ignored, never as passed; run with
    /// `--ignored` but no server, this panics naming the variable.
    pub async fn postgres() -> TestDb {
        init_logs();
        let admin_url = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            panic!("{PG_ENV} is not set: it names the PostgreSQL server this test creates its database on, e.g. postgres://postgres@127.0.0.1:5432/test")
        });
        let name = format!(
            "attune_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("connecting to ATTUNE_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (base, _db) = admin_url
            .rsplit_once('/')
            .expect("a database URL ends in /DBNAME");
        let url = DatabaseUrl::Postgres(format!("{base}/{name}"));
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        TestDb {
            db,
            url: format!("{base}/{name}"),
            _dir: None,
            pg: Some((admin_url, name)),
        }
    }

    pub fn ctx(&self, tweak: impl FnOnce(&mut Config)) -> JobContext {
        let mut config = Config::default();
        tweak(&mut config);
        JobContext::new(self.db.clone(), config)
    }

    /// Closes the pool and drops the PostgreSQL database. A test that fails before it gets
    /// here still leaves nothing behind: `Drop` drops the database.
    pub async fn cleanup(mut self) {
        self.db.close().await;
        if let Some((admin_url, name)) = self.pg.take() {
            drop_database(&admin_url, &name).await;
        }
    }

    /// Counts jobs of a queue in apalis's own table.
    pub async fn apalis_jobs(&self, queue: &str) -> i64 {
        let queue_db = self.db.queue_pool().await.unwrap();
        let n = match &queue_db {
            Db::Sqlite(p, ..) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = $1")
                    .bind(queue)
                    .fetch_one(p)
                    .await
                    .unwrap()
            }
            Db::Postgres(p) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1")
                    .bind(queue)
                    .fetch_one(p)
                    .await
                    .unwrap()
            }
        };
        queue_db.close().await;
        n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            // Unwinding from a failed assertion, inside the test's runtime: a thread of its
            // own with a runtime of its own. `WITH (FORCE)` ends the pool's connections.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime to drop the test database")
                    .block_on(drop_database(&admin_url, &name))
            })
            .join();
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let admin = sqlx::PgPool::connect(admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

/// Writes `test_name` twice, once per backend. The PostgreSQL variant is ignored (reported
/// as such) unless `ATTUNE_TEST_POSTGRES_URL` was set when the tests were built.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = $crate::it::helpers::TestDb::sqlite().await;
                $body(&t).await;
                t.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(attune_test_postgres),
                ignore = "PostgreSQL: build and run with ATTUNE_TEST_POSTGRES_URL set"
            )]
            async fn postgres() {
                let t = $crate::it::helpers::TestDb::postgres().await;
                $body(&t).await;
                t.cleanup().await;
            }
        }
    };
}

pub fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

pub fn customer(id: &str, signup: NaiveDate, consent: Consent) -> Customer {
    Customer {
        external_id: CustomerId::parse(id).unwrap(),
        signup_date: signup,
        plan: "standard".into(),
        monthly_charge: 30.0,
        contract_type: ContractType::MonthToMonth,
        contract_end: None,
        first_invoice_due: None,
        preferred_channel: Channel::Email,
        consent,
        churned_on: None,
        attributes: BTreeMap::new(),
    }
}

pub fn email_only() -> Consent {
    Consent {
        email: true,
        ..Consent::default()
    }
}

/// One integer from `sql` (a count, a sum), on either backend.
pub async fn scalar(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(p, ..) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(p)
            .await
            .unwrap(),
        Db::Postgres(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(p)
            .await
            .unwrap(),
    }
}

/// Runs a statement that returns no rows.
pub async fn exec(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(p, ..) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(p)
            .await
            .map(drop)
            .unwrap(),
        Db::Postgres(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(p)
            .await
            .map(drop)
            .unwrap(),
    }
}

/// A full scoring run as of 2026-12-07 split into five shards of customer ids, one in each
/// state a shard can be in, as `attune jobs` and the desk's jobs page show them: shards 0
/// and 1 done (100 and 98 of 100 scored), 2 running on `host-b-score` at its second
/// attempt (`host-a-score` gave it back), 3 failed on `host-c-score` with `boom` (which
/// fails the run), 4 queued, never tried (50 planned). Returns the run's id.
pub async fn a_run_in_every_shard_state(db: &Db) -> i64 {
    use attune::store::ShardRange;
    let (run, _) = db
        .start_scoring_run("v1", d("2026-12-07"), "test", "full", "host-a", None)
        .await
        .unwrap();
    let bounds = [i64::MIN, 100, 200, 300, 400, i64::MAX];
    let ranges: Vec<ShardRange> = bounds
        .windows(2)
        .map(|w| ShardRange {
            after_id: w[0],
            upto_id: w[1],
            planned: if w[1] == i64::MAX { 50 } else { 100 },
            ids: None,
        })
        .collect();
    assert_eq!(db.split_run(run, &ranges).await.unwrap(), 5);
    let claim = |shard: i32, holder: &'static str| {
        let db = db.clone();
        async move {
            db.claim_shard(run, Some(shard), holder, 600)
                .await
                .unwrap()
                .expect("a queued shard is claimed")
        }
    };
    for (shard, scored) in [(0, 100), (1, 98)] {
        let c = claim(shard, "host-a-score").await;
        assert!(db.finish_shard(&c, scored, "{}").await.unwrap().is_some());
    }
    let given_back = claim(2, "host-a-score").await;
    assert_eq!(
        db.release_shard(&given_back, "stopped", 5)
            .await
            .unwrap()
            .as_deref(),
        Some("queued")
    );
    assert_eq!(claim(2, "host-b-score").await.attempt, 2);
    let failing = claim(3, "host-c-score").await;
    assert_eq!(
        db.release_shard(&failing, "boom", 0)
            .await
            .unwrap()
            .as_deref(),
        Some("failed")
    );
    run
}

/// A login by customer `name` five minutes ago, from source `app`, with event id
/// `{prefix}-{name}`: activity that marks the customer for a re-score.
pub fn login_now(name: &str, prefix: &str) -> attune::domain::ActivityEvent {
    attune::domain::ActivityEvent {
        customer: CustomerId::parse(name).unwrap(),
        kind: attune::domain::Meaning::Login.code(),
        occurred_at: chrono::Utc::now() - chrono::Duration::minutes(5),
        value: None,
        attributes: Default::default(),
        source: "app".into(),
        source_event_id: format!("{prefix}-{name}"),
    }
}
