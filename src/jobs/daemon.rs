//! The daemon: cron ticks become jobs in apalis's persistent queue in the same database,
//! and workers in this process run them.
//!
//! Invariants:
//! - a tick runs once however many daemons share the database: its id
//!   (`schedule@fire-time`) is a primary key in `ticks`, and only the daemon whose insert
//!   wins enqueues it, with the tick id as the apalis idempotency key;
//! - a tick whose work is already queued or running is not queued behind it: it is
//!   recorded as skipped with the reason (`job_runs`), so no job starts long after its tick;
//! - one job at a time per queue in a process, and one scoring run, planning run,
//!   retraining and pull of a source at a time across every process (`jobs::lease`);
//! - a scoring run's shards are offered on `attune.shard`, where every process's shard
//!   worker takes them (one at a time per process), so daemons sharing PostgreSQL share
//!   the run; the sweeper offers again a shard whose claim ran out and the queued shards
//!   of a run nobody works ([`offer_waiting_shards`]);
//! - the queue has a connection pool of its own, so long bulk work never starves the
//!   workers' polls and heartbeats;
//! - a job whose worker died is taken back (apalis's heartbeats, every third of
//!   `[worker] lease_secs`) and run again; its execution is marked interrupted, and a
//!   scoring run it left unfinished is marked failed ([`Db::sweep_jobs`]);
//! - a failed job is tried again after an exponential backoff with jitter, up to
//!   `[worker] max_attempts`; an error no retry can fix ([`super::Permanent`]) ends it at
//!   once; every execution and its outcome is in `job_runs` (`attune jobs`);
//! - a tick claimed by a daemon that died before enqueueing is enqueued by the next sweep;
//! - a tick missed while this daemon was behind is fired late ([`tick_times`]);
//! - every process has a unique worker name (prefix, host, pid, random suffix), so a
//!   restart never inherits a dead process's name and its `Running` jobs;
//! - Ctrl-C and SIGTERM stop new work, let running jobs finish (up to the grace period)
//!   and exit cleanly.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use apalis::prelude::*;
use apalis_cron::CronScheduler;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::JobContext;
use super::plan::{self, PlanJob};
use super::pull::{self, PullJob};
use super::retrain::{self, RetrainJob};
use super::score::{self, ScoreJob, ShardJob};
use crate::store::Db;

pub use super::unique_worker_name;

/// A job as queued: its payload and the key of its execution (the tick, a follow-up, or
/// a retry: `KEY#2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued<T> {
    #[serde(flatten)]
    pub job: T,
    #[serde(default)]
    pub key: Option<String>,
}

/// What a backend brings to the queues: apalis's storage of jobs of each type, on a
/// pool of its own. The one seam between the daemon and the two storage crates.
pub trait QueueBackend {
    /// The storage of jobs of type `T`.
    type Storage<T>: Clone;
    type Pool;
    /// The storage of queue `queue`, polled and kept alive every `heartbeat`.
    fn storage<T>(pool: &Self::Pool, queue: &str, heartbeat: Duration) -> Self::Storage<T>;
}

/// apalis-sqlite's storage (the queue's own file, [`Db::queue_pool`]).
pub struct OnSqlite;

impl QueueBackend for OnSqlite {
    type Storage<T> = SqliteStorage<T>;
    type Pool = sqlx::SqlitePool;
    fn storage<T>(pool: &Self::Pool, queue: &str, heartbeat: Duration) -> SqliteStorage<T> {
        SqliteStorage::new(pool).with_config(
            apalis_sqlite::Config::default()
                .queue(queue)
                .batch_size(1)
                .heartbeat_interval(heartbeat),
        )
    }
}

/// apalis-postgres's storage (its own schema of attune's database).
pub struct OnPostgres;

impl QueueBackend for OnPostgres {
    type Storage<T> = PostgresStorage<T>;
    type Pool = sqlx::PgPool;
    fn storage<T>(pool: &Self::Pool, queue: &str, heartbeat: Duration) -> PostgresStorage<T> {
        PostgresStorage::new(pool).with_config(
            apalis_postgres::Config::default()
                .queue(queue)
                .batch_size(1)
                .heartbeat_interval(heartbeat),
        )
    }
}

/// One queue per job type, on backend `B`.
pub struct QueueSet<B: QueueBackend> {
    pull: B::Storage<Queued<PullJob>>,
    score: B::Storage<Queued<ScoreJob>>,
    plan: B::Storage<Queued<PlanJob>>,
    retrain: B::Storage<Queued<RetrainJob>>,
    shard: B::Storage<Queued<ShardJob>>,
}

impl<B: QueueBackend> QueueSet<B> {
    fn new(pool: &B::Pool, heartbeat: Duration) -> Self {
        Self {
            pull: B::storage(pool, pull::QUEUE, heartbeat),
            score: B::storage(pool, score::QUEUE, heartbeat),
            plan: B::storage(pool, plan::QUEUE, heartbeat),
            retrain: B::storage(pool, retrain::QUEUE, heartbeat),
            shard: B::storage(pool, score::SHARD_QUEUE, heartbeat),
        }
    }
}

impl<B: QueueBackend> Clone for QueueSet<B> {
    fn clone(&self) -> Self {
        Self {
            pull: self.pull.clone(),
            score: self.score.clone(),
            plan: self.plan.clone(),
            retrain: self.retrain.clone(),
            shard: self.shard.clone(),
        }
    }
}

/// The job queues in the database's apalis tables, on whichever backend it is.
#[derive(Clone)]
pub enum Queues {
    Sqlite(QueueSet<OnSqlite>),
    Postgres(QueueSet<OnPostgres>),
}

/// `$body` with `$set` bound to the backend's [`QueueSet`]: how the daemon's work with the
/// queues (pushing, the workers) reaches them, once for both backends; only `Queues::on`,
/// which picks the backend, names them. The storages' traits differ in their error and id
/// types, so the body is written once and compiled for each.
macro_rules! on_backend {
    ($queues:expr, $set:ident => $body:expr) => {
        match $queues {
            Queues::Sqlite($set) => $body,
            Queues::Postgres($set) => $body,
        }
    };
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queues::Sqlite(_) => "Queues::Sqlite",
            Queues::Postgres(_) => "Queues::Postgres",
        })
    }
}

/// Which job a schedule or a follow-up asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JobKind {
    Pull,
    Score,
    /// Re-score the customers whose activity changed since their last score.
    Rescore,
    Plan,
    Retrain,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::Pull,
        JobKind::Score,
        JobKind::Rescore,
        JobKind::Plan,
        JobKind::Retrain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Pull => "pull",
            JobKind::Score => "score",
            JobKind::Rescore => "rescore",
            JobKind::Plan => "plan",
            JobKind::Retrain => "retrain",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kinds whose queued or running execution makes a new tick of this kind
    /// pointless: it would only wait behind them (a changed-customers re-score behind
    /// any scoring run; a full score behind a full score).
    fn covered_by(self) -> &'static [&'static str] {
        match self {
            JobKind::Pull => &["pull"],
            JobKind::Score => &["score"],
            JobKind::Rescore => &["score", "rescore"],
            JobKind::Plan => &["plan"],
            JobKind::Retrain => &["retrain"],
        }
    }
}

/// The key of a retry: `KEY#N` for attempt N.
pub fn retry_key(key: &str, attempt: u32) -> String {
    let base = key.split_once('#').map_or(key, |(b, _)| b);
    format!("{base}#{attempt}")
}

/// The attempt a key stands for (`KEY#N` is N, a plain key 1).
pub fn attempt_of(key: &str) -> u32 {
    key.rsplit_once('#')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// The database error under a queue's push error, on either backend.
trait StorageError {
    fn database(&self) -> Option<&sqlx::Error>;
}

impl StorageError for apalis_sqlite::Error {
    fn database(&self) -> Option<&sqlx::Error> {
        match self {
            apalis_sqlite::Error::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl StorageError for apalis_postgres::Error {
    fn database(&self) -> Option<&sqlx::Error> {
        match self {
            apalis_postgres::Error::Database(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether a push was refused because a task with its idempotency key is queued already
/// (the database's unique index on the key said so, by its error code, not its text).
fn already_queued<E: StorageError>(e: &TaskSinkError<E>) -> bool {
    matches!(e, TaskSinkError::PushError(e) if e
        .database()
        .and_then(|d| d.as_database_error())
        .is_some_and(|d| d.is_unique_violation()))
}

/// Pushes a task with idempotency key `$key` onto `$storage`, after `$delay` if given. A
/// key already queued is success: SQLite's insert skips it; PostgreSQL's unique index
/// refuses it ([`already_queued`]).
macro_rules! push_once {
    ($storage:expr, $job:expr, $key:expr, $delay:expr) => {{
        let mut s = $storage.clone();
        let mut b = TaskBuilder::new(Queued {
            job: $job,
            key: Some($key.to_owned()),
        })
        .idempotency_key($key)
        // Attempts are attune's (`job_runs`); apalis only retries a bookkeeping failure.
        .max_attempts(3);
        if let Some(d) = $delay {
            b = b.run_after(d);
        }
        match s.push_task(b.build()).await {
            Ok(()) => Ok(()),
            Err(e) if already_queued(&e) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("enqueueing {}: {e}", $key)),
        }
    }};
}

/// A job of any kind, as the queues carry them.
#[derive(Debug, Clone)]
pub enum AnyJob {
    Pull(PullJob),
    Score(ScoreJob),
    Plan(PlanJob),
    Retrain(RetrainJob),
}

impl AnyJob {
    /// The job a kind's tick (or follow-up) runs.
    pub fn of(kind: JobKind, key: &str) -> AnyJob {
        let tick = Some(key.to_owned());
        match kind {
            JobKind::Pull => AnyJob::Pull(PullJob { tick }),
            JobKind::Score | JobKind::Rescore => AnyJob::Score(ScoreJob {
                tick,
                as_of: None,
                changed_only: kind == JobKind::Rescore,
            }),
            // Planning uses the latest finished run when it starts.
            JobKind::Plan => AnyJob::Plan(PlanJob::default()),
            JobKind::Retrain => AnyJob::Retrain(RetrainJob { tick }),
        }
    }

    pub fn kind(&self) -> JobKind {
        match self {
            AnyJob::Pull(_) => JobKind::Pull,
            AnyJob::Score(j) if j.changed_only => JobKind::Rescore,
            AnyJob::Score(_) => JobKind::Score,
            AnyJob::Plan(_) => JobKind::Plan,
            AnyJob::Retrain(_) => JobKind::Retrain,
        }
    }
}

impl Queues {
    /// The queues on their own connection pool to `db`: bulk work on the data pool never
    /// makes a worker wait for a connection to poll, heartbeat or acknowledge.
    pub async fn open(db: &Db, heartbeat: Duration) -> anyhow::Result<Self> {
        let queue_db = db.queue_pool().await?;
        Ok(Self::on(&queue_db, heartbeat))
    }

    /// [`Queues::open`] with a 5-second heartbeat (tests).
    pub async fn new(db: &Db) -> anyhow::Result<Self> {
        Self::open(db, Duration::from_secs(5)).await
    }

    fn on(db: &Db, heartbeat: Duration) -> Self {
        match db {
            Db::Sqlite(pool, ..) => Queues::Sqlite(QueueSet::new(pool, heartbeat)),
            Db::Postgres(pool) => Queues::Postgres(QueueSet::new(pool, heartbeat)),
        }
    }

    /// Pushes `job` under `key` (once per key, however often asked), after `delay`.
    async fn push(&self, job: AnyJob, key: &str, delay: Option<Duration>) -> anyhow::Result<()> {
        on_backend!(self, q => match job {
            AnyJob::Pull(j) => push_once!(q.pull, j, key, delay),
            AnyJob::Score(j) => push_once!(q.score, j, key, delay),
            AnyJob::Plan(j) => push_once!(q.plan, j, key, delay),
            AnyJob::Retrain(j) => push_once!(q.retrain, j, key, delay),
        })
    }

    /// Enqueues a job once per `key`, however often it is asked.
    pub async fn enqueue(&self, kind: JobKind, key: &str) -> anyhow::Result<()> {
        self.push(AnyJob::of(kind, key), key, None).await
    }
}

/// Shards go on the shard queue, where every daemon's shard worker takes them.
impl score::OfferShards for Queues {
    fn offer(
        &self,
        run_id: i64,
        shard: i32,
        key: String,
    ) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let job = ShardJob { run_id, shard };
            on_backend!(self, q => push_once!(q.shard, job, key.as_str(), None::<Duration>))
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Queues `job` under `key` as an execution due at `due_ms`: records it (`job_runs`,
/// unless a queued record of the key exists: a tick claimed but not enqueued before),
/// then pushes it. The record comes first, so a tick that follows finds it.
pub async fn queue_job(
    db: &Db,
    queues: &Queues,
    job: AnyJob,
    key: &str,
    due_ms: i64,
    delay: Option<Duration>,
) -> anyhow::Result<()> {
    if db.queued_job_run(key).await?.is_none() {
        db.queue_job_run(job.kind().as_str(), key, attempt_of(key) as i32, due_ms)
            .await?;
    }
    queues.push(job, key, delay).await
}

/// The identity of a tick: the schedule's name and its fire time.
pub fn tick_id(kind: JobKind, fire_at: i64) -> String {
    let t = chrono::DateTime::from_timestamp(fire_at, 0).unwrap_or_default();
    format!("{}@{}", kind.as_str(), t.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// Why a tick of `kind` would only wait behind work already queued or running, if it would.
async fn busy_reason(db: &Db, kind: JobKind, now: i64) -> anyhow::Result<Option<String>> {
    if let Some(q) = db.job_due(kind.covered_by(), now).await? {
        return Ok(Some(format!(
            "a {} job ({}) is already queued",
            q.kind, q.job_key
        )));
    }
    // A run whose splitter died goes on with the daemons working its shards: a new run
    // would supersede it and throw their work away.
    if matches!(kind, JobKind::Score | JobKind::Rescore)
        && let Some(run) = db.run_being_worked().await?
    {
        return Ok(Some(format!(
            "scoring run {run} is still being worked (its shards are claimed)"
        )));
    }
    let running = db
        .job_runs(Some("running"), 20)
        .await?
        .into_iter()
        .find(|r| kind.covered_by().contains(&r.kind.as_str()));
    Ok(running.map(|r| {
        format!(
            "a {} job ({}) is still running on {}",
            r.kind,
            r.job_key,
            r.worker.unwrap_or_default()
        )
    }))
}

/// Why a tick of `kind` at `fire_at` (unix seconds) is covered by the full scoring
/// schedule's next tick, if it is: a re-score whose full run is due before the re-score
/// would finish (`takes_ms`, how long recent re-scores took) would make the full run
/// start late, and the full run re-scores everyone anyway, a few seconds later.
///
/// Decided from the schedules, not from what happens to be queued yet: ticks of the two
/// schedules are handled concurrently, so a check of the queue could see either order.
pub fn covered_by_full_run(
    kind: JobKind,
    fire_at: i64,
    takes_ms: i64,
    full_score: &cron::Schedule,
) -> Option<String> {
    if kind != JobKind::Rescore {
        return None;
    }
    let at = chrono::DateTime::from_timestamp(fire_at, 0)?;
    let full = if full_score.includes(at) {
        at
    } else {
        full_score.after(&at).next()?
    };
    let wait_ms = (full - at).num_milliseconds();
    if wait_ms > takes_ms.max(0) {
        return None;
    }
    let tick = tick_id(JobKind::Score, full.timestamp());
    Some(if wait_ms == 0 {
        format!("a full scoring run ({tick}) is due at the same second and re-scores everyone")
    } else {
        format!(
            "a full scoring run ({tick}) is due in {} s, before this re-score would finish (recent re-scores took up to {:.1} s), and re-scores everyone",
            wait_ms / 1000,
            takes_ms as f64 / 1000.0
        )
    })
}

/// Handles one cron tick: claims it and, if this process won, enqueues its job, or
/// records it as skipped when the same work is already queued or running, or when
/// `covered` says why another tick's work covers it ([`covered_by_full_run`]). Returns
/// whether this process claimed it.
pub async fn fire_tick(
    db: &Db,
    queues: &Queues,
    kind: JobKind,
    fire_at: i64,
    worker: &str,
    covered: Option<String>,
) -> anyhow::Result<bool> {
    let id = tick_id(kind, fire_at);
    if !db.claim_tick(&id, kind.as_str(), fire_at, worker).await? {
        tracing::debug!(tick = %id, "tick already claimed by another daemon");
        return Ok(false);
    }
    let due_ms = fire_at * 1000;
    let reason = match covered {
        Some(reason) => Some(reason),
        None => busy_reason(db, kind, now_ms()).await?,
    };
    if let Some(reason) = reason {
        db.skip_job_run(kind.as_str(), &id, due_ms, worker, &reason)
            .await?;
        db.mark_tick_enqueued(&id).await?;
        crate::metrics::get().job_finished(kind.as_str(), "skipped", 0.0);
        tracing::info!(tick = %id, %reason, "tick skipped");
        return Ok(true);
    }
    queue_job(db, queues, AnyJob::of(kind, &id), &id, due_ms, None).await?;
    // How long the tick took to reach the queue (its part of the job's lag).
    let enqueue_ms = now_ms() - due_ms;
    db.mark_tick_enqueued(&id).await?;
    tracing::info!(tick = %id, enqueue_ms, "tick enqueued");
    Ok(true)
}

/// Enqueues ticks whose claimer died between claiming and enqueueing.
pub async fn sweep_stranded_ticks(
    db: &Db,
    queues: &Queues,
    grace_secs: i64,
) -> anyhow::Result<usize> {
    let stranded = db.stranded_ticks(grace_secs).await?;
    for t in &stranded {
        let kind = JobKind::parse(&t.schedule).unwrap_or(JobKind::Plan);
        queue_job(
            db,
            queues,
            AnyJob::of(kind, &t.id),
            &t.id,
            t.fire_at * 1000,
            None,
        )
        .await?;
        db.mark_tick_enqueued(&t.id).await?;
        tracing::warn!(tick = %t.id, claimed_by = %t.claimed_by, "enqueued a tick stranded by a dead daemon");
    }
    Ok(stranded.len())
}

/// The delay before attempt `next` (2, 3, ...): 5 s, doubling, at most 10 minutes, with
/// a quarter of jitter either way.
pub fn backoff(next: u32) -> Duration {
    let base = 5.0 * 2f64.powi(next.saturating_sub(2).min(16) as i32);
    let capped = base.min(600.0);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64(capped * jitter)
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// The same work was already running (a lease was held).
    Skipped,
    /// Failed; another attempt is queued.
    Failed,
    /// Failed with an error no retry can fix.
    Aborted,
    /// Failed on its last attempt.
    Dead,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Dead => "dead",
        }
    }
}

/// When a tick key says its job was due (`kind@2026-12-05T12:00:00Z`, `#N` after it).
fn due_of_key(key: &str) -> Option<i64> {
    let (_, t) = key.split_once('@')?;
    let t = t.split('#').next().unwrap_or(t);
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Runs one queued job: records its start (and its lag behind its tick), beats while it
/// runs, and records how it ended; a failure that another attempt may fix queues that
/// attempt after a backoff.
pub async fn execute(
    ctx: &JobContext,
    queues: &Queues,
    job: AnyJob,
    key: Option<String>,
) -> anyhow::Result<Outcome> {
    let db = &ctx.db;
    let kind = job.kind();
    let key = key.unwrap_or_else(|| format!("{}@manual-{}", kind.as_str(), now_ms()));
    let attempt = attempt_of(&key);
    let started = now_ms();
    let queued = db.queued_job_run(&key).await?;
    let (run_id, due_ms) = match queued {
        Some(r) if db.start_job_run(r.id, &ctx.worker, started).await? => (r.id, r.due_ms),
        // Queued before runs were recorded, or run again after its worker died.
        _ => {
            let due = due_of_key(&key).unwrap_or(started);
            let id = db
                .insert_running_job_run(
                    kind.as_str(),
                    &key,
                    attempt as i32,
                    due,
                    &ctx.worker,
                    started,
                )
                .await?;
            (id, due)
        }
    };
    let lag = (started - due_ms).max(0);
    crate::metrics::get().job_started(kind.as_str(), lag);
    let span = tracing::info_span!("job", kind = kind.as_str(), key = %key, attempt, run = run_id);
    tracing::info!(parent: &span, lag_ms = lag, "job started");
    // Beats while it runs: a silent execution is one whose worker died.
    let beating = {
        let db = db.clone();
        let every = (ctx.config.worker.lease / 3).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = db.beat_job_runs(&[run_id]).await {
                    tracing::warn!(error = %e, "a job heartbeat failed");
                }
            }
        })
    };
    let clock = std::time::Instant::now();
    let result = run_job(ctx, queues, &job).instrument(span.clone()).await;
    beating.abort();
    let seconds = clock.elapsed().as_secs_f64();
    let (outcome, error, detail, retry) = match result {
        Ok(detail) => (Outcome::Succeeded, None, Some(detail), None),
        Err(e)
            if e.downcast_ref::<super::lease::Busy>().is_some()
                || e.downcast_ref::<Superseded>().is_some() =>
        {
            (Outcome::Skipped, Some(e.to_string()), None, None)
        }
        Err(e) if e.downcast_ref::<super::Permanent>().is_some() => {
            (Outcome::Aborted, Some(format!("{e:#}")), None, None)
        }
        Err(e) if attempt >= ctx.config.worker.max_attempts.max(1) => {
            (Outcome::Dead, Some(format!("{e:#}")), None, None)
        }
        Err(e) => {
            let delay = backoff(attempt + 1);
            (Outcome::Failed, Some(format!("{e:#}")), None, Some(delay))
        }
    };
    let retry_at = retry.map(|d| chrono::Utc::now().timestamp() + d.as_secs() as i64);
    db.finish_job_run(
        run_id,
        outcome.as_str(),
        error.as_deref(),
        detail.as_deref(),
        retry_at,
    )
    .await?;
    crate::metrics::get().job_finished(kind.as_str(), outcome.as_str(), seconds);
    match outcome {
        Outcome::Succeeded => tracing::info!(parent: &span, seconds, "job succeeded"),
        Outcome::Skipped => {
            tracing::info!(parent: &span, reason = error.as_deref().unwrap_or_default(), "job skipped")
        }
        _ => {
            tracing::error!(parent: &span, outcome = outcome.as_str(), error = error.as_deref().unwrap_or_default(), retry_in = ?retry, "job failed")
        }
    }
    if let Some(delay) = retry {
        let next = retry_key(&key, attempt + 1);
        let due = now_ms() + delay.as_millis() as i64;
        queue_job(db, queues, job, &next, due, Some(delay)).await?;
    }
    Ok(outcome)
}

/// Wakes an idle worker to poll its queue every `interval`.
///
/// apalis 1.0's `IntervalStrategy` makes a new timer when its timer fires but does not
/// poll it, so the worker's waker is not registered with it: unless the fetch that follows
/// happens to be polled again, the next wake-up is the worker's heartbeat (every third of
/// `[worker] lease_secs`, 5 s). Jobs sat in the queue for 2-4.6 s behind their ticks in a
/// 10-minute run, at whole seconds past the poll's phase. This one polls the new timer at
/// once, so a wake-up is always due within `interval`.
#[derive(Debug)]
pub struct Every {
    interval: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Every {
    pub fn new(interval: Duration) -> Self {
        Every {
            interval,
            timer: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl Clone for Every {
    fn clone(&self) -> Self {
        Every::new(self.interval)
    }
}

impl PollStrategy for Every {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _snapshot: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        match self.timer.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                let next = tokio::time::Instant::now() + self.interval;
                self.timer.as_mut().reset(next);
                // Registers the waker for the next wake-up (this is what apalis's misses).
                let _ = self.timer.as_mut().poll(cx);
                std::task::Poll::Ready(Some(()))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// Work another queued job covers: the execution ends as skipped, with the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Superseded(pub String);

/// Runs the job itself; a scoring run that scored someone queues the planning after it.
async fn run_job(ctx: &JobContext, queues: &Queues, job: &AnyJob) -> anyhow::Result<String> {
    match job {
        AnyJob::Pull(j) => {
            let r = pull::run(ctx, j).await?;
            Ok(serde_json::json!({
                "files": r.files().count(),
                "stored": r.sources.iter().map(|s| s.stored).sum::<u64>(),
                "skipped": r.skipped,
            })
            .to_string())
        }
        AnyJob::Score(j) => {
            // A full run queued behind this re-score scores everyone anyway: the re-score
            // gives way rather than make it wait (it would start late by a re-score).
            if j.changed_only
                && let Some(full) = ctx.db.job_due(&["score"], now_ms()).await?
            {
                return Err(Superseded(format!(
                    "a full scoring run ({}) is queued and re-scores everyone; this re-score gives way",
                    full.job_key
                ))
                .into());
            }
            let r = score::run_with(ctx, j, Some(queues)).await?;
            // A run that scored nobody (nothing changed) has nothing new to plan from.
            if r.customers > 0 {
                let key = format!("plan@run-{}", r.run_id);
                match busy_reason(&ctx.db, JobKind::Plan, now_ms()).await? {
                    // The plan queued will plan the latest run when it starts.
                    Some(reason) if reason.contains("queued") => {
                        ctx.db
                            .skip_job_run("plan", &key, now_ms(), &ctx.worker, &reason)
                            .await?;
                    }
                    _ => {
                        queue_job(
                            &ctx.db,
                            queues,
                            AnyJob::Plan(PlanJob::default()),
                            &key,
                            now_ms(),
                            None,
                        )
                        .await?;
                    }
                }
            }
            Ok(serde_json::json!({"run_id": r.run_id, "scope": r.scope, "customers": r.customers, "at_risk": r.at_risk}).to_string())
        }
        AnyJob::Plan(j) => {
            let r = plan::run(ctx, j).await?;
            Ok(serde_json::json!({"run_id": r.run_id, "queued": r.queued}).to_string())
        }
        AnyJob::Retrain(j) => {
            let d = retrain::run(ctx, j).await?;
            Ok(serde_json::json!({"promoted": d.promoted, "why": d.why}).to_string())
        }
    }
}

fn job_error(e: anyhow::Error) -> BoxDynError {
    tracing::error!(error = %format!("{e:#}"), "recording a job failed");
    format!("{e:#}").into()
}

async fn handle_pull(
    q: Queued<PullJob>,
    ctx: Data<JobContext>,
    queues: Data<Queues>,
) -> Result<(), BoxDynError> {
    let key = q.key.or_else(|| q.job.tick.clone());
    execute(&ctx, &queues, AnyJob::Pull(q.job), key)
        .await
        .map(|_| ())
        .map_err(job_error)
}

async fn handle_score(
    q: Queued<ScoreJob>,
    ctx: Data<JobContext>,
    queues: Data<Queues>,
) -> Result<(), BoxDynError> {
    let key = q.key.or_else(|| q.job.tick.clone());
    execute(&ctx, &queues, AnyJob::Score(q.job), key)
        .await
        .map(|_| ())
        .map_err(job_error)
}

/// A shard offered on the shard queue: taken if it still wants a worker. Shards are not
/// executions of their own in `job_runs`; their progress is in `run_shards`.
async fn handle_shard(q: Queued<ShardJob>, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    score::take_shard(&ctx, q.job.run_id, q.job.shard)
        .await
        .map_err(job_error)
}

async fn handle_plan(
    q: Queued<PlanJob>,
    ctx: Data<JobContext>,
    queues: Data<Queues>,
) -> Result<(), BoxDynError> {
    execute(&ctx, &queues, AnyJob::Plan(q.job), q.key)
        .await
        .map(|_| ())
        .map_err(job_error)
}

async fn handle_retrain(
    q: Queued<RetrainJob>,
    ctx: Data<JobContext>,
    queues: Data<Queues>,
) -> Result<(), BoxDynError> {
    let key = q.key.or_else(|| q.job.tick.clone());
    execute(&ctx, &queues, AnyJob::Retrain(q.job), key)
        .await
        .map(|_| ())
        .map_err(job_error)
}

/// Runs the schedules for `kind` until the task is aborted. `full_score` is the full
/// scoring run's schedule: a re-score tick on one of its seconds is skipped.
async fn run_schedule(
    db: Db,
    queues: Queues,
    kind: JobKind,
    expr: crate::config::Cron,
    full_score: Option<cron::Schedule>,
    worker: String,
) {
    let schedule = expr.schedule().clone();
    let mut ticks = std::pin::pin!(tick_times(schedule));
    // This schedule's ticks are handled one after another, in order (a fair lock), so a
    // tick sees what the one before it queued.
    let in_order = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    while let Some(at) = ticks.next().await {
        crate::metrics::get().tick(kind.as_str());
        // Fired beside the stream, so a tick waiting for its turn to write never makes
        // the scheduler miss the next one.
        let (db, queues, worker) = (db.clone(), queues.clone(), worker.clone());
        let full_score = full_score.clone();
        let in_order = in_order.clone().lock_owned();
        tokio::spawn(async move {
            let _turn = in_order.await;
            let covered = match (&full_score, kind) {
                (Some(full), JobKind::Rescore) => {
                    // The longest of the last few: a re-score's length follows the changes.
                    let takes_ms = db.recent_job_ms("rescore", 5).await.ok().flatten();
                    covered_by_full_run(kind, at, takes_ms.unwrap_or(0), full)
                }
                _ => None,
            };
            if let Err(e) = fire_tick(&db, &queues, kind, at, &worker, covered).await {
                tracing::error!(schedule = kind.as_str(), error = %format!("{e:#}"), "tick failed");
            }
        });
    }
}

/// WAL bytes past which the daemon empties SQLite's WAL (a full run over 100,000
/// customers writes ~50 MB of it).
const WAL_KEEP_BYTES: u64 = 64 << 20;

/// How long emptying the WAL waits for readers of older snapshots (every read is a page,
/// well under a second) before it leaves the WAL for the next look.
const WAL_KEEP_WAIT_MS: u32 = 1_000;

/// Every second (SQLite): empties the WAL once it has grown past [`WAL_KEEP_BYTES`]
/// ([`Db::keep_wal_short`]); readers that always overlap keep SQLite's own checkpoints
/// from ever starting it over.
async fn run_wal_keeper(db: Db) {
    let mut in_the_way = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = std::time::Instant::now();
        match db.keep_wal_short(WAL_KEEP_BYTES, WAL_KEEP_WAIT_MS).await {
            Ok(crate::store::WalKept::Emptied(bytes)) => {
                in_the_way = 0;
                tracing::debug!(
                    bytes,
                    seconds = t.elapsed().as_secs_f64(),
                    "emptied the WAL"
                );
            }
            Ok(crate::store::WalKept::ReadersInTheWay(bytes)) => {
                in_the_way += 1;
                // Once is normal (a read under way); many in a row are worth a look.
                if in_the_way.is_multiple_of(30) {
                    tracing::warn!(
                        bytes,
                        tries = in_the_way,
                        "readers keep the WAL from being emptied"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "emptying the WAL failed"),
        }
    }
}

/// Every few seconds: ticks stranded by a dead daemon are enqueued, executions whose
/// worker stopped beating are marked interrupted, scoring runs they left are marked failed.
/// Leases after which a queued execution that never started is taken as lost.
pub const QUEUED_LOST_LEASES: i64 = 20;

async fn run_sweeper(ctx: JobContext, queues: Queues) {
    let lease = ctx.config.worker.lease_ttl_secs();
    loop {
        if let Err(e) = sweep_stranded_ticks(&ctx.db, &queues, lease * 2).await {
            tracing::warn!(error = %format!("{e:#}"), "sweeping stranded ticks failed");
        }
        // A queued execution that has not started long after it was due blocks every
        // tick of its kind ("already queued"): after QUEUED_LOST_LEASES leases (at least
        // a minute) it is marked lost and the next tick queues afresh. Seen once in CI's
        // kill -9 test on PostgreSQL: a pull stayed queued for over two minutes after a
        // restart, and with the old one-hour bound no file was taken in that time.
        if let Err(e) = offer_waiting_shards(&ctx.db, &queues, lease).await {
            tracing::warn!(error = %format!("{e:#}"), "offering scoring shards that want a worker failed");
        }
        match ctx
            .db
            .sweep_jobs(lease, (lease * QUEUED_LOST_LEASES).max(60))
            .await
        {
            Ok((0, 0)) => {}
            Ok((jobs, runs)) => {
                tracing::warn!(
                    interrupted_jobs = jobs,
                    failed_scoring_runs = runs,
                    "marked work left by a stopped worker"
                )
            }
            Err(e) => tracing::warn!(error = %e, "sweeping interrupted jobs failed"),
        }
        tokio::time::sleep(Duration::from_secs(lease as u64 / 3 + 1)).await;
    }
}

/// Offers again, on the shard queue, the shards of open runs that want a worker
/// ([`Db::shards_wanting_workers`]): those whose claim ran out (their holder died or
/// stalled), and the queued shards of a run nobody is working (the daemon that split it
/// died, and so did those its offers went to). Keyed by the shard, its attempts and the
/// lease period, so daemons sweeping at once offer it once.
pub async fn offer_waiting_shards(db: &Db, queues: &Queues, lease: i64) -> anyhow::Result<usize> {
    use score::OfferShards as _;
    let waiting = db.shards_wanting_workers(lease).await?;
    let period = crate::store::now_secs() / lease.max(1);
    for (run_id, shard, attempts) in &waiting {
        let key = score::shard_key(*run_id, *shard, attempts + 1, period);
        queues.offer(*run_id, *shard, key).await?;
    }
    if !waiting.is_empty() {
        tracing::info!(
            shards = waiting.len(),
            "offered scoring shards that want a worker again"
        );
    }
    Ok(waiting.len())
}

/// The fire times (unix seconds) of `schedule`, from apalis-cron's scheduler.
///
/// When its consumer falls behind a tick (a slow tick, a suspended machine), apalis-cron
/// 1.0 reports that tick as out of range and then reports it again on every later poll
/// without moving on, so a loop over its stream spins forever. Here any error is taken as
/// "fell behind": the fire times missed since the last one (at most [`MAX_CATCH_UP`]) are
/// yielded late, which is safe because a claimed tick runs once, and a fresh scheduler
/// takes over from now.
pub fn tick_times(schedule: cron::Schedule) -> impl futures::Stream<Item = i64> + Send {
    type Ticks = std::pin::Pin<Box<dyn futures::Stream<Item = Result<i64, String>> + Send>>;
    let for_stream = schedule.clone();
    let fresh = move || -> Ticks {
        Box::pin(
            CronScheduler::new(for_stream.clone())
                .into_stream()
                .map(|r| {
                    r.map(|t| t.get_timestamp() as i64)
                        .map_err(|e| e.to_string())
                }),
        )
    };
    let state = (
        fresh(),
        None::<i64>,
        std::collections::VecDeque::<i64>::new(),
    );
    futures::stream::unfold(state, move |(mut ticks, mut last, mut backlog)| {
        let (fresh, schedule) = (fresh.clone(), schedule.clone());
        async move {
            loop {
                if let Some(at) = backlog.pop_front() {
                    return Some((at, (ticks, Some(at), backlog)));
                }
                match ticks.next().await? {
                    Ok(at) if last.is_some_and(|l| at <= l) => continue,
                    Ok(at) => {
                        last = Some(at);
                        return Some((at, (ticks, last, backlog)));
                    }
                    Err(e) => {
                        let now = chrono::Utc::now();
                        if let Some(from) =
                            last.and_then(|l| chrono::DateTime::from_timestamp(l, 0))
                        {
                            backlog.extend(
                                schedule
                                    .after(&from)
                                    .take_while(|t| *t <= now)
                                    .take(MAX_CATCH_UP)
                                    .map(|t| t.timestamp()),
                            );
                        }
                        tracing::warn!(error = %e, missed = backlog.len(), "the cron scheduler fell behind; firing missed ticks late");
                        ticks = fresh();
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    })
}

/// Missed ticks fired late after the daemon fell behind; older ones are skipped.
pub const MAX_CATCH_UP: usize = 100;

/// SQLite: an exclusive lock on `DATABASE.daemon.lock` (the operating system's file lock,
/// released when the process ends, kill -9 included), so a second daemon on the same file
/// refuses to start with the first one's process id instead of running beside it.
/// PostgreSQL: `None`; several daemons share one database by design (leases and ticks).
pub fn daemon_lock(db: &Db) -> anyhow::Result<Option<std::fs::File>> {
    let Db::Sqlite(pool, _) = db else {
        return Ok(None);
    };
    let mut path = pool.connect_options().get_filename().as_os_str().to_owned();
    path.push(".daemon.lock");
    let path = std::path::PathBuf::from(path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("opening the daemon lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::{Seek as _, Write as _};
            file.set_len(0)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another attune daemon (process {}) is running on this SQLite database ({} is locked); \
                 stop it first, or run several daemons on PostgreSQL, where they share the work",
                holder.trim(),
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::anyhow!("locking {}: {e}", path.display()))
        }
    }
}

/// Runs the daemon until `shutdown` completes.
pub async fn run<F>(ctx: JobContext, shutdown: F) -> anyhow::Result<()>
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let worker = ctx.worker.to_string();
    // One daemon per SQLite file: held until this process ends, however it ends.
    let _lock = daemon_lock(&ctx.db)?;
    // A SQLite queue file that is not there (removed, or a restore without it) holds
    // none of the jobs `job_runs` says are queued: left so, they would read as busy and
    // every tick of their kind would be skipped until the sweeper called them lost.
    let new_queue = match &ctx.db {
        Db::Sqlite(pool, _) => {
            !crate::store::queue_path(pool.connect_options().get_filename()).exists()
        }
        Db::Postgres(_) => false,
    };
    let heartbeat = (ctx.config.worker.lease / 3).max(Duration::from_secs(1));
    let queues = Queues::open(&ctx.db, heartbeat).await?;
    tracing::info!(%worker, backend = ctx.db.backend(), "daemon starting");
    if new_queue {
        let lost = ctx
            .db
            .mark_queued_lost(
                "queued but never started: the queue file was new when the daemon started",
            )
            .await?;
        if lost > 0 {
            tracing::warn!(
                lost,
                "the queue file was new: executions recorded as queued are marked lost"
            );
        }
    }
    // Approved nudges leave through the configured channels; a channel that cannot be
    // built (a secret missing, a rule's channel carried by none) stops the start here.
    let receivers = super::deliver::receivers(&ctx.config, &|k| std::env::var(k).ok())?;
    let (stop_delivery, delivery_stop) = tokio::sync::watch::channel(false);
    let delivery = (!receivers.is_empty())
        .then(|| tokio::spawn(super::deliver::run(ctx.clone(), receivers, delivery_stop)));
    let mut background = vec![tokio::spawn(run_sweeper(ctx.clone(), queues.clone()))];
    if ctx.db.backend() == "sqlite" {
        background.push(tokio::spawn(run_wal_keeper(ctx.db.clone())));
    }
    let full_score = Some(ctx.config.schedule.score.schedule().clone());
    for (kind, expr) in [
        (JobKind::Pull, &ctx.config.schedule.pull),
        (JobKind::Score, &ctx.config.schedule.score),
        (JobKind::Rescore, &ctx.config.schedule.rescore),
        (JobKind::Retrain, &ctx.config.retrain.schedule),
    ] {
        background.push(tokio::spawn(run_schedule(
            ctx.db.clone(),
            queues.clone(),
            kind,
            expr.clone(),
            full_score.clone(),
            worker.clone(),
        )));
    }
    let grace = ctx.config.worker.shutdown_grace;
    // apalis parks an idle worker until its heartbeat unless told to poll.
    let poll = ctx
        .config
        .worker
        .poll_interval
        .max(Duration::from_millis(10));
    macro_rules! monitor {
        ($pull:expr, $score:expr, $plan:expr, $retrain:expr, $shard:expr) => {{
            let (c5, s5, w5) = (ctx.clone(), $shard.clone(), format!("{worker}-shard"));
            let (c1, c2, c3, c4) = (ctx.clone(), ctx.clone(), ctx.clone(), ctx.clone());
            let (q1, q2, q3, q4) = (
                queues.clone(),
                queues.clone(),
                queues.clone(),
                queues.clone(),
            );
            let (w1, w2, w3, w4) = (
                format!("{worker}-pull"),
                format!("{worker}-score"),
                format!("{worker}-plan"),
                format!("{worker}-retrain"),
            );
            let (s1, s2, s3, s4) = (
                $pull.clone(),
                $score.clone(),
                $plan.clone(),
                $retrain.clone(),
            );
            // One job at a time per queue: a second scoring run must not start beside
            // the first in this process (leases hold it across processes).
            let one = || tower::limit::ConcurrencyLimitLayer::new(1);
            Monitor::new()
                .shutdown_timeout(grace)
                .register(move |_| {
                    WorkerBuilder::new(w1.as_str())
                        .backend(s1.clone().poll_with_strategy(Every::new(poll)))
                        .layer(one())
                        .data(c1.clone())
                        .data(q1.clone())
                        .build(handle_pull)
                })
                .register(move |_| {
                    WorkerBuilder::new(w2.as_str())
                        .backend(s2.clone().poll_with_strategy(Every::new(poll)))
                        .layer(one())
                        .data(c2.clone())
                        .data(q2.clone())
                        .build(handle_score)
                })
                .register(move |_| {
                    WorkerBuilder::new(w3.as_str())
                        .backend(s3.clone().poll_with_strategy(Every::new(poll)))
                        .layer(one())
                        .data(c3.clone())
                        .data(q3.clone())
                        .build(handle_plan)
                })
                .register(move |_| {
                    WorkerBuilder::new(w4.as_str())
                        .backend(s4.clone().poll_with_strategy(Every::new(poll)))
                        .layer(one())
                        .data(c4.clone())
                        .data(q4.clone())
                        .build(handle_retrain)
                })
                // Shards of a scoring run, whichever daemon split it: one at a time here
                // (a shard already uses every core).
                .register(move |_| {
                    WorkerBuilder::new(w5.as_str())
                        .backend(s5.clone().poll_with_strategy(Every::new(poll)))
                        .layer(one())
                        .data(c5.clone())
                        .build(handle_shard)
                })
                .run_with_signal(shutdown)
                .await
        }};
    }
    let result = on_backend!(&queues, q => monitor!(q.pull, q.score, q.plan, q.retrain, q.shard));
    let _ = stop_delivery.send(true);
    if let Some(d) = delivery
        && tokio::time::timeout(grace, d).await.is_err()
    {
        tracing::warn!(
            "deliveries did not stop within the grace period; their claims run out by themselves"
        );
    }
    for s in background {
        s.abort();
    }
    tracing::info!(%worker, "daemon stopped");
    result.map_err(|e| anyhow::anyhow!("running workers: {e}"))
}

/// Runs the daemon and, when given, the review desk beside it. One signal stops both: the
/// workers finish their jobs and the desk its requests (each within the grace period).
pub async fn run_serving<F>(
    ctx: JobContext,
    desk: Option<crate::http::Application>,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    // The catalog first: kinds declared for the first time get their codes before any
    // job or page reads events.
    ctx.kinds().await?;
    let Some(desk) = desk else {
        return run(ctx, shutdown).await;
    };
    let grace = ctx.config.worker.shutdown_grace;
    let stop = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
    let mut stopped = stop.subscribe();
    let server = tokio::spawn(desk.run_until(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let signal_stop = stop.clone();
    let signal = async move {
        let r = shutdown.await;
        signal_stop.send_replace(true);
        r
    };
    let result = run(ctx, signal).await;
    stop.send_replace(true);
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("review desk stopped"),
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "the review desk failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "the review desk's task failed"),
        Err(_) => {
            tracing::warn!("the review desk did not finish its requests within the grace period")
        }
    }
    result
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutdown requested: finishing running jobs");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Re-score every 3 s, full score every 7 s: they coincide every 21 s, where the
    /// re-score is always covered; a re-score that takes 2 s is also covered when a full
    /// run is due within 2 s of it. Other kinds never are.
    #[test]
    fn a_rescore_the_full_run_would_wait_for_is_covered() {
        let full = <cron::Schedule as std::str::FromStr>::from_str("*/7 * * * * *").unwrap();
        let minute = 1_795_000_020; // a whole minute (divisible by 60)
        assert_eq!(minute % 60, 0);
        let covered = |takes_ms: i64| -> Vec<i64> {
            (0..60)
                .map(|s| minute + s)
                .filter(|&at| at % 3 == 0)
                .filter(|&at| covered_by_full_run(JobKind::Rescore, at, takes_ms, &full).is_some())
                .map(|at| at - minute)
                .collect()
        };
        // Re-scores at 0, 3, 6, ...; full runs at 0, 7, 14, ..., 56, then 0.
        assert_eq!(covered(0), vec![0, 21, 42]);
        assert_eq!(covered(2_000), vec![0, 6, 12, 21, 27, 33, 42, 48, 54]);
        let reason = covered_by_full_run(JobKind::Rescore, minute + 21, 0, &full).unwrap();
        assert!(
            reason.contains("score@") && reason.contains("same second"),
            "{reason}"
        );
        let reason = covered_by_full_run(JobKind::Rescore, minute + 27, 2_000, &full).unwrap();
        assert!(
            reason.contains(&tick_id(JobKind::Score, minute + 28)) && reason.contains("due in 1 s"),
            "{reason}"
        );
        for kind in [
            JobKind::Pull,
            JobKind::Score,
            JobKind::Plan,
            JobKind::Retrain,
        ] {
            assert_eq!(
                covered_by_full_run(kind, minute, 60_000, &full),
                None,
                "{kind:?}"
            );
        }
    }

    /// A worker's waker, counting its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The poll strategy wakes an idle worker once every interval, each time, polled only
    /// when woken (as a worker whose fetch came back at once is). apalis's own interval
    /// strategy wakes it once and then leaves it to the heartbeat.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_worker_is_woken_every_interval() {
        let count = std::sync::Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut every = Every::new(Duration::from_millis(20));
        let snapshot = PollSnapshot::default();
        assert!(every.poll_drive(&mut cx, &snapshot).is_pending());
        for n in 1..=5 {
            // Ten intervals: woken at least once, whatever the machine's load.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let woken = count.0.load(std::sync::atomic::Ordering::SeqCst);
            assert!(woken >= n, "woken {woken} times by interval {n}");
            count.0.store(n, std::sync::atomic::Ordering::SeqCst);
            assert!(every.poll_drive(&mut cx, &snapshot).is_ready());
        }
    }

    /// A consumer that falls behind gets the missed ticks late, in order, once each, and
    /// the stream goes on (apalis-cron's own stream repeats its error forever here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_missed_while_behind_are_fired_late_and_the_stream_goes_on() {
        let schedule = <cron::Schedule as std::str::FromStr>::from_str("* * * * * *").unwrap();
        let mut ticks = std::pin::pin!(tick_times(schedule));
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            let mut got = vec![ticks.next().await.unwrap()];
            // Fall behind by more than two ticks.
            tokio::time::sleep(Duration::from_millis(2600)).await;
            for _ in 0..4 {
                got.push(ticks.next().await.unwrap());
            }
            got
        })
        .await
        .expect("the tick stream must not stall or spin");
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 1),
            "every second once, in order: {got:?}"
        );
    }
}
