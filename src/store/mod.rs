//! Storage: the one place that talks SQL.
//!
//! attune runs on an embedded SQLite file by default and on PostgreSQL when several
//! daemons share one database. Both backends share the same pools with apalis, whose job
//! tables live beside ours. Every query is a named function here, written once in SQL that
//! both backends accept (`$1` placeholders, `ON CONFLICT`, window functions) and run
//! through [`on_pool!`] against whichever pool is open. Writes are batched.
//!
//! Times are unix seconds; days are ISO dates. This module never decides anything: the
//! rules live in `playbook`, `model` and `features`.

mod customers;
mod deliveries;
mod drift;
mod events;
mod jobs;
mod kinds;
mod models;
mod nudges;
mod playbook;
mod quarantine;
mod raw;
pub use raw::configure_process;
mod review;
mod scores;
mod shards;
mod ticks;
mod users;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use customers::{CustomerRow, UpsertCounts};
pub use deliveries::{ChannelState, DeliveryCounts, DeliveryFacts, DeliveryRow, Settle};
pub use events::sqlite::WalKept;
pub use events::{
    CustomerIds, FailPoint, IngestBatch, IngestCounts, Progress, RefusedRow, SourceFile,
};
pub use jobs::{JOB_STATUSES, JobRunRow, LeaseRow};
pub use kinds::KindCount;
pub use models::PromotionRow;
pub use models::StoredModel;
pub use nudges::{DecideOutcome, NewNudge, NudgeFilter, NudgeRow};
pub use playbook::{
    ContactCounts, OPEN_STATUSES, PlanningCustomer, ReviewBudget, RuleWeek, UpliftCohortRow,
};
pub use quarantine::{QuarantineEntry, QuarantineRow, QuarantinedEvent, RetryOutcome};
#[cfg(any(test, feature = "testing"))]
pub use review::SeedNudge;
pub use review::{
    BULK_MAX, Complaint, CustomerFacts, Decision, OpenProblem, Overview, QueueCursor, QueueFilter,
    Refused, ReviewNudge, RunScore, STATUSES, ScorePoint, TimelineEvent, complaints_from_events,
};
pub use scores::{DriverKeys, NewScore, ScoreRow, ScoringRun, StoredDrivers};
pub use shards::{SHARD_STATUSES, ShardClaim, ShardRange, ShardRow, SplitRun, ranges_of_ids};
pub use ticks::TickClaim;
pub use users::{Principal, Role, SessionRow, TokenInfo, TokenRow, UserRow, validate_user_name};

/// Runs `$body` with `$pool` bound to the open pool, whichever backend it is. The body is
/// compiled once per backend, so the same SQL text serves both.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool, ..) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Appends `(id, id, ...)` to `q`, each id a bound parameter: the list of an `id IN`.
pub(crate) fn push_ids<DB>(q: &mut sqlx::QueryBuilder<DB>, ids: &[i64])
where
    DB: sqlx::Database,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadUrl(String),
    #[error("opening the database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("running migrations ({which})")]
    Migrate {
        which: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Data(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the database is, as the user wrote it. Its password never prints: `Debug` shows
/// [`DatabaseUrl::redacted`].
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub const DEFAULT: &'static str = "./attune.db";

    /// Whether this is [`DatabaseUrl::DEFAULT`], the database nobody chose.
    pub fn is_default(&self) -> bool {
        matches!(self, Self::Sqlite(p) if p.as_os_str() == Self::DEFAULT)
    }

    /// Accepts `sqlite://PATH`, `sqlite:PATH`, a plain file path, or `postgres://...`.
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(StoreError::BadUrl(
                "database URL is empty; use a file path, sqlite://PATH or postgres://...".into(),
            ));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::BadUrl(format!(
                    "{raw:?} names no file; write sqlite://PATH"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            return Err(StoreError::BadUrl(format!(
                "unsupported database scheme {scheme:?} in {raw:?}; use sqlite://PATH, a file path, or postgres://..."
            )));
        }
        Ok(Self::Sqlite(PathBuf::from(raw)))
    }

    /// The URL with any password hidden, for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
                    let user = &url[s + 3..at].split(':').next().unwrap_or_default();
                    format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
                }
                _ => url.clone(),
            },
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The file the job queue of the SQLite database at `db` lives in: `attune.db` →
/// `attune.db.queue` (see [`Db::queue_pool`]).
pub fn queue_path(db: &std::path::Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".queue");
    PathBuf::from(name)
}

/// An open database (attune's tables; on PostgreSQL apalis's job tables too, in their own
/// schema; on SQLite those are in the queue's file, [`Db::queue_pool`]). A SQLite database
/// carries what its connections in this process share ([`Shared`]).
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool, Arc<Shared>),
    Postgres(PgPool),
}

/// What every pool of one SQLite file in this process shares (the main pool and the
/// queue's): whose turn it is to write, and the WAL checkpoint's state. It lives in the
/// [`Db`] value, not in statics, so two databases in one process never wait for each other.
#[derive(Debug, Default)]
pub struct Shared {
    /// One write transaction at a time, first come first served (SQLite's busy handler
    /// would have the others sleep and retry, each holding a pooled connection).
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Bulk writers (a page of scores, an ingest, an import) queue here before they queue
    /// for `turn`, so at most one of them is ever ahead of a short write: a tick's
    /// bookkeeping waits for the bulk transaction under way, not for every one behind it.
    bulk: Arc<tokio::sync::Mutex<()>>,
    /// One checkpoint at a time; an ingest that finds one running skips its own.
    pub(crate) checkpointing: Arc<tokio::sync::Mutex<()>>,
    /// Frames the WAL held at the last checkpoint an ingest ran.
    pub(crate) wal_frames: std::sync::atomic::AtomicI64,
}

/// A writer's turn (SQLite): held for the length of one write transaction.
#[derive(Debug)]
pub struct WriteTurn {
    _turn: tokio::sync::OwnedMutexGuard<()>,
    _bulk: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Db {
    /// The job queue's own small pool: bulk work holding the main pool's connections never
    /// makes a worker wait for a connection to poll, heartbeat or acknowledge.
    ///
    /// On SQLite the queue (apalis's tables) lives in a file of its own beside the
    /// database ([`queue_path`]), with its own migrations: SQLite has one writer per file,
    /// and a worker taking its next job must not wait in SQLite's busy handler behind a
    /// scoring run's pages or an ingest (the cause of jobs starting seconds after their
    /// tick). The file holds only jobs waiting or running; attune's record of every
    /// execution (`job_runs`) stays in the database. On PostgreSQL the queue is apalis's
    /// schema in the same database.
    pub async fn queue_pool(&self) -> Result<Db> {
        match self {
            Db::Sqlite(p, _) => {
                let path = queue_path(p.connect_options().get_filename());
                let opts = (*p.connect_options()).clone().filename(&path);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: format!("sqlite://{}", path.display()),
                        source,
                    })?;
                let mut theirs = apalis_sqlite::SqliteStorage::<()>::migrations();
                theirs.set_ignore_missing(true);
                theirs
                    .run(&pool)
                    .await
                    .map_err(|source| StoreError::Migrate {
                        which: "apalis",
                        source,
                    })?;
                Ok(Db::Sqlite(pool, Arc::default()))
            }
            Db::Postgres(p) => {
                let opts = (*p.connect_options()).clone();
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// Opens the database, creating a SQLite file if it is missing. SQLite settings are
    /// per connection, so they are set on the connect options and hold for every
    /// connection the pool opens: WAL, `synchronous = NORMAL`, a busy timeout, foreign keys.
    pub async fn connect(url: &DatabaseUrl) -> Result<Db> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    .pragma("temp_store", "MEMORY")
                    .pragma("cache_size", "-65536") // NORMAL_CACHE
                    // Rows cross from SQLite's worker thread in batches rather than one
                    // wake-up each: a third less CPU reading a million customers.
                    .row_buffer_size(1024)
                    // Reading a million rows takes seconds by design; not a warning.
                    .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1));
                // WAL readers never block each other: enough connections that a scoring
                // scan, planning's reads, an ingest's customer lookups and the desk all
                // get one while the single writer ([`Db::write_turn`]) holds its own.
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(opts)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: url.redacted(),
                        source,
                    })?;
                Ok(Db::Sqlite(pool, Arc::default()))
            }
            DatabaseUrl::Postgres(u) => {
                let opts = PgConnectOptions::from_str(u)
                    .map_err(|source| StoreError::Connect {
                        url: url.redacted(),
                        source,
                    })?
                    .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1));
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: url.redacted(),
                        source,
                    })?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// SQLite: this process's turn to write a short transaction (a tick claimed, a job
    /// started, a nudge decided), taken before the write takes a connection.
    ///
    /// SQLite has one writer at a time. Without a turn, a write waits for SQLite's lock
    /// inside its busy handler while holding a pooled connection; a few of those waiting
    /// behind an ingest whose reader side needs a connection to resolve customers left the
    /// pool empty, and every job stood still until the busy timeout (30 s) failed them.
    /// With it, writers queue here in the order they came, holding nothing, and at most
    /// one connection of the pool is ever writing. PostgreSQL: no turn (`None`).
    pub(crate) async fn write_turn(&self) -> Option<WriteTurn> {
        match self {
            Db::Sqlite(_, shared) => Some(WriteTurn {
                _turn: shared.turn.clone().lock_owned().await,
                _bulk: None,
            }),
            Db::Postgres(_) => None,
        }
    }

    /// [`Db::write_turn`] for a long transaction (a page of scores, an ingest, an import):
    /// bulk writers wait for each other first, so a short write waits behind at most one.
    pub(crate) async fn bulk_turn(&self) -> Option<WriteTurn> {
        match self {
            Db::Sqlite(_, shared) => {
                let bulk = shared.bulk.clone().lock_owned().await;
                Some(WriteTurn {
                    _turn: shared.turn.clone().lock_owned().await,
                    _bulk: Some(bulk),
                })
            }
            Db::Postgres(_) => None,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(..) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Brings both schemas up to date: attune's (history in `attune_migrations`) and
    /// apalis's (history in its own `_sqlx_migrations`). Keeping the histories in separate
    /// tables means neither migrator ever sees the other's versions as missing.
    pub async fn migrate(&self) -> Result<()> {
        // The two arms differ only in types, so one body serves both.
        macro_rules! run {
            ($pool:expr, $ours:expr, $theirs:expr) => {{
                let mut ours = $ours;
                ours.dangerous_set_table_name("attune_migrations");
                ours.run($pool)
                    .await
                    .map_err(|source| StoreError::Migrate {
                        which: "attune",
                        source,
                    })?;
                let mut theirs = $theirs;
                theirs.set_ignore_missing(true);
                theirs
                    .run($pool)
                    .await
                    .map_err(|source| StoreError::Migrate {
                        which: "apalis",
                        source,
                    })?;
            }};
        }
        match self {
            Db::Sqlite(pool, ..) => {
                // apalis's tables are in the queue's own file ([`Db::queue_pool`]).
                let mut ours = sqlx::migrate!("./migrations/sqlite");
                ours.dangerous_set_table_name("attune_migrations");
                ours.run(pool).await.map_err(|source| StoreError::Migrate {
                    which: "attune",
                    source,
                })?;
            }
            Db::Postgres(pool) => {
                run!(
                    pool,
                    sqlx::migrate!("./migrations/postgres"),
                    apalis_postgres::PostgresStorage::migrations()
                )
            }
        }
        Ok(())
    }

    /// SQLite: writes a consistent copy of the database to `path` (`VACUUM INTO`, which
    /// reads one snapshot while writers go on) and returns its size. Refuses a path that
    /// exists. PostgreSQL: an error pointing at `pg_dump`.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<u64> {
        let Db::Sqlite(p, _) = self else {
            return Err(StoreError::Data(
                "attune backup copies a SQLite database; back up PostgreSQL with its own tools (pg_dump -Fc DATABASE > FILE, or continuous archiving)".into(),
            ));
        };
        if path.exists() {
            return Err(StoreError::Data(format!(
                "{} exists already; give a new file name (nothing was overwritten)",
                path.display()
            )));
        }
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Data(format!("{} is not a UTF-8 path", path.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(p)
            .await?;
        Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// SQLite: copies everything the WAL holds into the database file and empties the WAL
    /// (ingest leaves its last transaction there for the next checkpoint). PostgreSQL:
    /// nothing to do.
    pub async fn checkpoint(&self) -> Result<()> {
        match self {
            Db::Sqlite(p, shared) => events::sqlite::empty_wal(p, shared).await,
            Db::Postgres(_) => Ok(()),
        }
    }

    /// SQLite: empties the WAL once it has grown past `limit` bytes, in a bulk writer's
    /// turn, waiting at most `wait_ms` for readers of older snapshots (see
    /// [`events::sqlite::keep_wal_short`]). PostgreSQL: nothing to do.
    pub async fn keep_wal_short(&self, limit: u64, wait_ms: u32) -> Result<WalKept> {
        let Db::Sqlite(p, shared) = self else {
            return Ok(WalKept::Short);
        };
        let path = p.connect_options().get_filename().to_owned();
        // Looked at before queueing for a turn: most of the time there is nothing to do.
        if events::sqlite::wal_bytes(&path) <= limit {
            return Ok(WalKept::Short);
        }
        let _turn = self.bulk_turn().await;
        events::sqlite::keep_wal_short(p, shared, &path, limit, wait_ms).await
    }

    /// Records who did what; every decision a person makes goes through here.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        on_pool!(self, p => {
            sqlx::query("INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
                .bind(now)
                .bind(actor)
                .bind(action)
                .bind(subject)
                .bind(sqlx::types::Json(detail))
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The audit log, newest first.
    pub async fn audit_entries(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let sql = "SELECT id, at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1";
        let rows = on_pool!(self, p => sqlx::query_as::<_, AuditEntry>(sql).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    /// After a bulk load of `rows` rows into `tables` (names attune owns), refreshes
    /// PostgreSQL's planner statistics of each table the load grew by a tenth or more, or
    /// that was never analysed: without them the planner guessed a page of 25,000
    /// customers by id was a few rows, sorted the whole table on disk for each page, and
    /// scoring a million customers read them in 11.9 s instead of 4.7 s. Autovacuum would
    /// do it later, when it is on. SQLite keeps no statistics it is not asked for: nothing.
    pub async fn refresh_statistics(&self, tables: &[&'static str], rows: u64) -> Result<()> {
        let Db::Postgres(p) = self else { return Ok(()) };
        for table in tables {
            let (known,): (f64,) = sqlx::query_as(
                "SELECT COALESCE(MAX(reltuples), -1)::FLOAT8 FROM pg_class WHERE oid = to_regclass($1)",
            )
            .bind(*table)
            .fetch_one(p)
            .await?;
            if known < 0.0 || rows as f64 >= known / 10.0 {
                let sql = format!("ANALYZE {table}");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(p).await?;
            }
        }
        Ok(())
    }

    /// Row counts of the main tables, for summaries and health checks.
    pub async fn counts(&self) -> Result<TableCounts> {
        let sql = "SELECT
            (SELECT COUNT(*) FROM customers) AS customers,
            (SELECT COUNT(*) FROM customers WHERE churned_on IS NULL) AS active_customers,
            (SELECT COUNT(*) FROM events) AS events,
            (SELECT COUNT(*) FROM scores) AS scores,
            (SELECT COUNT(*) FROM nudges) AS nudges";
        Ok(on_pool!(self, p => sqlx::query_as::<_, TableCounts>(sql).fetch_one(p).await?))
    }
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: sqlx::types::Json<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, sqlx::FromRow)]
pub struct TableCounts {
    pub customers: i64,
    pub active_customers: i64,
    pub events: i64,
    pub scores: i64,
    pub nudges: i64,
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Midnight UTC at the start of `day`, in unix seconds.
pub fn day_start(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp()
}

/// `column IN (first, ..., last)`: every day from `first` to `last`, for keys that start
/// with the day (events, rollups). Both SQLite and PostgreSQL seek an IN list on an
/// index's leading column once per value, so a range of customers over a window reads
/// each day's slice of the range, and nothing else. Days are integers, written inline.
/// No day: a condition no row meets; a span of more than a century: a plain range.
pub(crate) fn days_in(column: &str, first: i64, last: i64) -> String {
    use std::fmt::Write as _;
    if last < first {
        return "1 = 0".into();
    }
    if last - first > 36_600 {
        return format!("{column} BETWEEN {first} AND {last}");
    }
    let mut out = format!("{column} IN (");
    for day in first..=last {
        if day > first {
            out.push_str(", ");
        }
        let _ = write!(out, "{day}");
    }
    out.push(')');
    out
}

/// The business's customer ids to attune's row ids, hashed with foldhash: ingest looks one
/// up per event, where SipHash cost a tenth of the thread.
pub type IdMap = std::collections::HashMap<String, i64, foldhash::fast::RandomState>;

/// The page cache every SQLite connection starts with (64 MiB); ingest raises its own for
/// the length of a batch.
pub(crate) const NORMAL_CACHE: &str = "PRAGMA cache_size = -65536";

/// Rows per multi-row INSERT: under SQLite's limit of 32,766 bound values for the widest
/// table, large enough that a batch costs one round trip.
pub(crate) const BATCH_ROWS: usize = 1000;

#[cfg(test)]
mod tests {
    #[test]
    fn days_in_lists_every_day_or_none() {
        assert_eq!(super::days_in("day", 3, 5), "day IN (3, 4, 5)");
        assert_eq!(super::days_in("e.day", -1, -1), "e.day IN (-1)");
        assert_eq!(super::days_in("day", 5, 4), "1 = 0");
        assert_eq!(super::days_in("day", 0, 40_000), "day BETWEEN 0 AND 40000");
    }

    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("./a.db").unwrap(),
            DatabaseUrl::Sqlite("./a.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://x/y.db").unwrap(),
            DatabaseUrl::Sqlite("x/y.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:y.db?mode=rwc").unwrap(),
            DatabaseUrl::Sqlite("y.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        let err = DatabaseUrl::parse("mysql://h/db").unwrap_err().to_string();
        assert!(
            err.contains("unsupported database scheme \"mysql\""),
            "{err}"
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://bob:secret@h/db")
                .unwrap()
                .redacted(),
            "postgres://bob:***@h/db"
        );
    }
}
