//! The daemon: cron ticks become jobs in apalis's persistent queue in the same database,
//! and workers in this process run them.
//!
//! Invariants:
//! - a tick runs once however many daemons share the database: its id
//!   (`schedule@fire-time`) is a primary key in `ticks`, and only the daemon whose insert
//!   wins enqueues it, with the tick id as the apalis idempotency key;
//! - a tick claimed by a daemon that died before enqueueing is enqueued by the next sweep;
//! - a tick missed while this daemon was behind is fired late ([`tick_times`]);
//! - every process has a unique worker name (prefix, host, pid, random suffix), so a
//!   restart never inherits a dead process's name and its `Running` jobs;
//! - Ctrl-C and SIGTERM stop new work, let running jobs finish (up to the grace period)
//!   and exit cleanly.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use apalis::prelude::*;
use apalis_cron::CronScheduler;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures::StreamExt;
use serde::Serialize;
use tracing::Instrument as _;

use super::JobContext;
use super::plan::{self, PlanJob};
use super::pull::{self, PullJob};
use super::retrain::{self, RetrainJob};
use super::score::{self, ScoreJob};
use crate::store::Db;

/// A name no other process will have: prefix, host, pid and a random suffix.
pub fn unique_worker_name(prefix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix: u32 = rand::random();
    format!("{prefix}-{host}-{}-{suffix:08x}", std::process::id())
}

/// The three job queues in the database's apalis tables.
#[derive(Clone)]
pub enum Queues {
    Sqlite {
        pull: SqliteStorage<PullJob>,
        score: SqliteStorage<ScoreJob>,
        plan: SqliteStorage<PlanJob>,
        retrain: SqliteStorage<RetrainJob>,
    },
    Postgres {
        pull: PostgresStorage<PullJob>,
        score: PostgresStorage<ScoreJob>,
        plan: PostgresStorage<PlanJob>,
        retrain: PostgresStorage<RetrainJob>,
    },
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queues::Sqlite { .. } => "Queues::Sqlite",
            Queues::Postgres { .. } => "Queues::Postgres",
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
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Pull => "pull",
            JobKind::Score => "score",
            JobKind::Rescore => "rescore",
            JobKind::Plan => "plan",
            JobKind::Retrain => "retrain",
        }
    }
}

/// Pushes `$job` with idempotency key `$key` onto `$storage`. A key already queued is
/// success: SQLite's insert skips it; PostgreSQL's unique index refuses it.
macro_rules! push_once {
    ($storage:expr, $job:expr, $key:expr) => {{
        let mut s = $storage.clone();
        let task = TaskBuilder::new($job)
            .idempotency_key($key)
            .max_attempts(3)
            .build();
        match s.push_task(task).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("idx_jobs_idempotency_key") || msg.contains("duplicate key") {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("enqueueing {}: {msg}", $key))
                }
            }
        }
    }};
}

impl Queues {
    pub fn new(db: &Db) -> Self {
        match db {
            Db::Sqlite(pool) => Queues::Sqlite {
                pull: SqliteStorage::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(pull::QUEUE)),
                score: SqliteStorage::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(score::QUEUE)),
                plan: SqliteStorage::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(plan::QUEUE)),
                retrain: SqliteStorage::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(retrain::QUEUE)),
            },
            Db::Postgres(pool) => Queues::Postgres {
                pull: PostgresStorage::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(pull::QUEUE)),
                score: PostgresStorage::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(score::QUEUE)),
                plan: PostgresStorage::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(plan::QUEUE)),
                retrain: PostgresStorage::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(retrain::QUEUE)),
            },
        }
    }

    /// Enqueues a job once per `key`, however often it is asked.
    pub async fn enqueue(&self, kind: JobKind, key: &str) -> anyhow::Result<()> {
        let tick = Some(key.to_owned());
        match (self, kind) {
            (Queues::Sqlite { pull, .. }, JobKind::Pull) => push_once!(pull, PullJob { tick }, key),
            (Queues::Sqlite { score, .. }, JobKind::Rescore) => {
                let job = ScoreJob {
                    tick,
                    as_of: None,
                    changed_only: true,
                };
                push_once!(score, job, key)
            }
            (Queues::Postgres { score, .. }, JobKind::Rescore) => {
                let job = ScoreJob {
                    tick,
                    as_of: None,
                    changed_only: true,
                };
                push_once!(score, job, key)
            }
            (Queues::Sqlite { score, .. }, JobKind::Score) => {
                push_once!(
                    score,
                    ScoreJob {
                        tick,
                        as_of: None,
                        changed_only: false
                    },
                    key
                )
            }
            (Queues::Sqlite { plan, .. }, JobKind::Plan) => {
                push_once!(plan, PlanJob::default(), key)
            }
            (Queues::Postgres { pull, .. }, JobKind::Pull) => {
                push_once!(pull, PullJob { tick }, key)
            }
            (Queues::Postgres { score, .. }, JobKind::Score) => {
                push_once!(
                    score,
                    ScoreJob {
                        tick,
                        as_of: None,
                        changed_only: false
                    },
                    key
                )
            }
            (Queues::Postgres { plan, .. }, JobKind::Plan) => {
                push_once!(plan, PlanJob::default(), key)
            }
            (Queues::Sqlite { retrain, .. }, JobKind::Retrain) => {
                push_once!(retrain, RetrainJob { tick }, key)
            }
            (Queues::Postgres { retrain, .. }, JobKind::Retrain) => {
                push_once!(retrain, RetrainJob { tick }, key)
            }
        }
    }

    async fn enqueue_plan_after(&self, run_id: i64) -> anyhow::Result<()> {
        let key = format!("plan@run-{run_id}");
        let job = PlanJob {
            run_id: Some(run_id),
            as_of: None,
        };
        match self {
            Queues::Sqlite { plan, .. } => push_once!(plan, job, key.as_str()),
            Queues::Postgres { plan, .. } => push_once!(plan, job, key.as_str()),
        }
    }
}

/// The identity of a tick: the schedule's name and its fire time.
pub fn tick_id(kind: JobKind, fire_at: i64) -> String {
    let t = chrono::DateTime::from_timestamp(fire_at, 0).unwrap_or_default();
    format!("{}@{}", kind.as_str(), t.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// Handles one cron tick: claims it and, if this process won, enqueues its job. Returns
/// whether this process claimed it.
pub async fn fire_tick(
    db: &Db,
    queues: &Queues,
    kind: JobKind,
    fire_at: i64,
    worker: &str,
) -> anyhow::Result<bool> {
    let id = tick_id(kind, fire_at);
    if !db.claim_tick(&id, kind.as_str(), fire_at, worker).await? {
        tracing::debug!(tick = %id, "tick already claimed by another daemon");
        return Ok(false);
    }
    queues.enqueue(kind, &id).await?;
    db.mark_tick_enqueued(&id).await?;
    tracing::info!(tick = %id, "tick enqueued");
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
        let kind = match t.schedule.as_str() {
            "pull" => JobKind::Pull,
            "score" => JobKind::Score,
            "rescore" => JobKind::Rescore,
            "retrain" => JobKind::Retrain,
            _ => JobKind::Plan,
        };
        queues.enqueue(kind, &t.id).await?;
        db.mark_tick_enqueued(&t.id).await?;
        tracing::warn!(tick = %t.id, claimed_by = %t.claimed_by, "enqueued a tick stranded by a dead daemon");
    }
    Ok(stranded.len())
}

fn job_error(e: anyhow::Error) -> BoxDynError {
    tracing::error!(error = %format!("{e:#}"), "job failed");
    format!("{e:#}").into()
}

async fn handle_pull(job: PullJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = pull::QUEUE, tick = job.tick.as_deref());
    pull::run(&ctx, &job)
        .instrument(span)
        .await
        .map(|_| ())
        .map_err(job_error)
}

async fn handle_score(
    job: ScoreJob,
    ctx: Data<JobContext>,
    queues: Data<Queues>,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = score::QUEUE, tick = job.tick.as_deref());
    async {
        let report = score::run(&ctx, &job).await?;
        // A run that scored nobody (nothing changed) has nothing new to plan from.
        if report.customers > 0 {
            queues.enqueue_plan_after(report.run_id).await?;
        }
        Ok(())
    }
    .instrument(span)
    .await
    .map_err(job_error)
}

async fn handle_plan(job: PlanJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = plan::QUEUE, run_id = job.run_id);
    plan::run(&ctx, &job)
        .instrument(span)
        .await
        .map(|_| ())
        .map_err(job_error)
}

async fn handle_retrain(job: RetrainJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = retrain::QUEUE, tick = job.tick.as_deref());
    retrain::run(&ctx, &job)
        .instrument(span)
        .await
        .map(|_| ())
        .map_err(job_error)
}

/// Runs the schedules for `kind` until the task is aborted.
async fn run_schedule(db: Db, queues: Queues, kind: JobKind, expr: String, worker: String) {
    let schedule = match cron::Schedule::from_str(&expr) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(schedule = kind.as_str(), %expr, error = %e, "invalid cron expression; schedule disabled");
            return;
        }
    };
    let mut ticks = std::pin::pin!(tick_times(schedule));
    while let Some(at) = ticks.next().await {
        if let Err(e) = fire_tick(&db, &queues, kind, at, &worker).await {
            tracing::error!(schedule = kind.as_str(), error = %format!("{e:#}"), "tick failed");
        }
        if let Err(e) = sweep_stranded_ticks(&db, &queues, 60).await {
            tracing::warn!(error = %format!("{e:#}"), "sweeping stranded ticks failed");
        }
    }
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

/// Runs the daemon until `shutdown` completes.
pub async fn run<F>(ctx: JobContext, shutdown: F) -> anyhow::Result<()>
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let worker = unique_worker_name(&ctx.config.worker.name);
    let queues = Queues::new(&ctx.db);
    tracing::info!(%worker, backend = ctx.db.backend(), "daemon starting");
    sweep_stranded_ticks(&ctx.db, &queues, 60).await?;
    let schedules = vec![
        tokio::spawn(run_schedule(
            ctx.db.clone(),
            queues.clone(),
            JobKind::Pull,
            ctx.config.schedule.pull.clone(),
            worker.clone(),
        )),
        tokio::spawn(run_schedule(
            ctx.db.clone(),
            queues.clone(),
            JobKind::Score,
            ctx.config.schedule.score.clone(),
            worker.clone(),
        )),
        tokio::spawn(run_schedule(
            ctx.db.clone(),
            queues.clone(),
            JobKind::Rescore,
            ctx.config.schedule.rescore.clone(),
            worker.clone(),
        )),
        tokio::spawn(run_schedule(
            ctx.db.clone(),
            queues.clone(),
            JobKind::Retrain,
            ctx.config.retrain.schedule.clone(),
            worker.clone(),
        )),
    ];
    let grace = Duration::from_secs(ctx.config.worker.shutdown_grace_secs);
    // apalis parks an idle worker until its heartbeat (30 s) unless told to poll.
    let poll = Duration::from_millis(ctx.config.worker.poll_interval_ms.max(10));
    macro_rules! monitor {
        ($pull:expr, $score:expr, $plan:expr, $retrain:expr) => {{
            let (c1, c2, c3, c4) = (ctx.clone(), ctx.clone(), ctx.clone(), ctx.clone());
            let w4 = format!("{worker}-retrain");
            let s4 = $retrain.clone();
            let q = queues.clone();
            let (w1, w2, w3) = (
                format!("{worker}-pull"),
                format!("{worker}-score"),
                format!("{worker}-plan"),
            );
            let (s1, s2, s3) = ($pull.clone(), $score.clone(), $plan.clone());
            Monitor::new()
                .shutdown_timeout(grace)
                .register(move |_| {
                    WorkerBuilder::new(w1.as_str())
                        .backend(s1.clone().poll_with_interval(poll))
                        .data(c1.clone())
                        .build(handle_pull)
                })
                .register(move |_| {
                    WorkerBuilder::new(w2.as_str())
                        .backend(s2.clone().poll_with_interval(poll))
                        .data(c2.clone())
                        .data(q.clone())
                        .build(handle_score)
                })
                .register(move |_| {
                    WorkerBuilder::new(w3.as_str())
                        .backend(s3.clone().poll_with_interval(poll))
                        .data(c3.clone())
                        .build(handle_plan)
                })
                .register(move |_| {
                    WorkerBuilder::new(w4.as_str())
                        .backend(s4.clone().poll_with_interval(poll))
                        .data(c4.clone())
                        .build(handle_retrain)
                })
                .run_with_signal(shutdown)
                .await
        }};
    }
    let result = match &queues {
        Queues::Sqlite {
            pull,
            score,
            plan,
            retrain,
        } => monitor!(pull, score, plan, retrain),
        Queues::Postgres {
            pull,
            score,
            plan,
            retrain,
        } => monitor!(pull, score, plan, retrain),
    };
    for s in schedules {
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
    let grace = Duration::from_secs(ctx.config.worker.shutdown_grace_secs);
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

    /// A consumer that falls behind gets the missed ticks late, in order, once each, and
    /// the stream goes on (apalis-cron's own stream repeats its error forever here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_missed_while_behind_are_fired_late_and_the_stream_goes_on() {
        let schedule = cron::Schedule::from_str("* * * * * *").unwrap();
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
