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
        attune::telemetry::init("human", "info,sqlx=warn");
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

    /// None (and a note on stderr) when the PostgreSQL suite is not asked for.
    pub async fn postgres() -> Option<TestDb> {
        init_logs();
        let admin_url = match std::env::var(PG_ENV) {
            Ok(u) if !u.is_empty() => u,
            _ => {
                // Written past libtest's capture so that a passing run still shows it.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {PG_ENV} is not set, so this PostgreSQL test did not run"
                );
                return None;
            }
        };
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
        Some(TestDb {
            db,
            url: format!("{base}/{name}"),
            _dir: None,
            pg: Some((admin_url, name)),
        })
    }

    pub fn ctx(&self, tweak: impl FnOnce(&mut Config)) -> JobContext {
        let mut config = Config::default();
        tweak(&mut config);
        JobContext::new(self.db.clone(), config)
    }

    pub async fn cleanup(self) {
        self.db.close().await;
        if let Some((admin_url, name)) = self.pg {
            let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .unwrap();
            admin.close().await;
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

/// Writes `test_name` twice, once per backend; the PostgreSQL one says it was skipped when
/// the suite is not asked for.
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
            async fn postgres() {
                let Some(t) = $crate::it::helpers::TestDb::postgres().await else {
                    return;
                };
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
