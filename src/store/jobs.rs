//! Job executions and leases: what the daemon ran, when, for how long and how it ended
//! (`job_runs`), and which process holds the right to run what (`run_leases`).
//!
//! A lease is a row per name (`score`, `plan`, `retrain`, `pull:SOURCE`) with a holder and
//! an expiry; taking it is one conditional upsert that wins only when the row is free,
//! expired or already the taker's, so two processes never both hold it, and a holder that
//! died stops blocking once its lease expires.

use serde::Serialize;

use super::{Db, Result, now_secs, on_pool};

/// Who holds a lease, when it was taken and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub acquired_at: i64,
    pub expires_at: i64,
}

/// One execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct JobRunRow {
    pub id: i64,
    pub kind: String,
    pub job_key: String,
    pub attempt: i32,
    pub status: String,
    pub worker: Option<String>,
    /// When it was due (its tick's fire time, or its retry time), unix milliseconds.
    pub due_ms: i64,
    pub queued_at: i64,
    pub started_ms: Option<i64>,
    pub heartbeat_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub retry_at: Option<i64>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

impl JobRunRow {
    /// Milliseconds from due to start.
    pub fn lag_ms(&self) -> Option<i64> {
        self.started_ms.map(|s| s - self.due_ms)
    }
}

/// Every status an execution can have, in the order they are shown.
pub const JOB_STATUSES: &[&str] = &[
    "queued",
    "running",
    "succeeded",
    "skipped",
    "failed",
    "aborted",
    "dead",
    "interrupted",
    "lost",
];

const JOB_RUN_COLUMNS: &str = "id, kind, job_key, attempt, status, worker, due_ms, queued_at, started_ms, heartbeat_at, finished_at, retry_at, error, detail";

impl Db {
    /// Takes the lease `name` for `holder` until `ttl_secs` from now: when nobody holds
    /// it, its holder's lease expired, or `holder` holds it already. `Err(current)` when
    /// someone else holds it.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_secs: i64,
    ) -> Result<std::result::Result<(), LeaseRow>> {
        let now = now_secs();
        let sql = "INSERT INTO run_leases (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                       acquired_at = CASE WHEN run_leases.holder = excluded.holder THEN run_leases.acquired_at ELSE excluded.acquired_at END,
                       expires_at = excluded.expires_at
                   WHERE run_leases.expires_at < $3 OR run_leases.holder = excluded.holder";
        let n = {
            let _turn = self.write_turn().await;
            on_pool!(self, p => sqlx::query(sql)
                .bind(name).bind(holder).bind(now).bind(now + ttl_secs)
                .execute(p).await?.rows_affected())
        };
        if n == 1 {
            return Ok(Ok(()));
        }
        match self.lease(name).await? {
            Some(current) => Ok(Err(current)),
            // Released between the two statements: try once more.
            None => Box::pin(self.take_lease(name, holder, ttl_secs)).await,
        }
    }

    /// Extends `holder`'s lease; false when it no longer holds it.
    pub async fn renew_lease(&self, name: &str, holder: &str, ttl_secs: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        let sql = "UPDATE run_leases SET expires_at = $1 WHERE name = $2 AND holder = $3";
        let n = on_pool!(self, p => sqlx::query(sql)
            .bind(now_secs() + ttl_secs).bind(name).bind(holder)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        let sql = "DELETE FROM run_leases WHERE name = $1 AND holder = $2";
        on_pool!(self, p => { sqlx::query(sql).bind(name).bind(holder).execute(p).await?; });
        Ok(())
    }

    pub async fn lease(&self, name: &str) -> Result<Option<LeaseRow>> {
        let sql = "SELECT name, holder, acquired_at, expires_at FROM run_leases WHERE name = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await?))
    }

    /// Leases held now (not expired).
    pub async fn live_leases(&self) -> Result<Vec<LeaseRow>> {
        let sql = "SELECT name, holder, acquired_at, expires_at FROM run_leases WHERE expires_at >= $1 ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(now_secs()).fetch_all(p).await?))
    }

    /// Records a job as queued; returns its row id.
    pub async fn queue_job_run(
        &self,
        kind: &str,
        key: &str,
        attempt: i32,
        due_ms: i64,
    ) -> Result<i64> {
        let _turn = self.write_turn().await;
        let sql = "INSERT INTO job_runs (kind, job_key, attempt, status, due_ms, queued_at) VALUES ($1, $2, $3, 'queued', $4, $5) RETURNING id";
        let (id,): (i64,) = on_pool!(self, p => sqlx::query_as(sql)
            .bind(kind).bind(key).bind(attempt).bind(due_ms).bind(now_secs())
            .fetch_one(p).await?);
        Ok(id)
    }

    /// The queued run of `key`, if one is (a tick claimed but never enqueued).
    pub async fn queued_job_run(&self, key: &str) -> Result<Option<JobRunRow>> {
        let sql = format!(
            "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE job_key = $1 AND status = 'queued' ORDER BY id DESC LIMIT 1"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(p).await?),
        )
    }

    pub async fn job_run(&self, id: i64) -> Result<Option<JobRunRow>> {
        let sql = format!("SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE id = $1");
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?),
        )
    }

    /// Marks a queued run as started by `worker`; false when it is not queued (another
    /// execution took it, or it ended).
    pub async fn start_job_run(&self, id: i64, worker: &str, started_ms: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        let sql = "UPDATE job_runs SET status = 'running', worker = $1, started_ms = $2, heartbeat_at = $3
                   WHERE id = $4 AND status = 'queued'";
        let n = on_pool!(self, p => sqlx::query(sql)
            .bind(worker).bind(started_ms).bind(now_secs()).bind(id)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Records an execution that starts without a queued row (a job queued before job runs
    /// were recorded, or one re-run after its worker died): a new running row.
    pub async fn insert_running_job_run(
        &self,
        kind: &str,
        key: &str,
        attempt: i32,
        due_ms: i64,
        worker: &str,
        started_ms: i64,
    ) -> Result<i64> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        let sql = "INSERT INTO job_runs (kind, job_key, attempt, status, worker, due_ms, queued_at, started_ms, heartbeat_at)
                   VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $6) RETURNING id";
        let (id,): (i64,) = on_pool!(self, p => sqlx::query_as(sql)
            .bind(kind).bind(key).bind(attempt).bind(worker).bind(due_ms).bind(now).bind(started_ms)
            .fetch_one(p).await?);
        Ok(id)
    }

    /// A tick's run that will not run: recorded as skipped with the reason.
    pub async fn skip_job_run(
        &self,
        kind: &str,
        key: &str,
        due_ms: i64,
        worker: &str,
        reason: &str,
    ) -> Result<i64> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        let sql = "INSERT INTO job_runs (kind, job_key, attempt, status, worker, due_ms, queued_at, finished_at, error)
                   VALUES ($1, $2, 1, 'skipped', $3, $4, $5, $5, $6) RETURNING id";
        let (id,): (i64,) = on_pool!(self, p => sqlx::query_as(sql)
            .bind(kind).bind(key).bind(worker).bind(due_ms).bind(now).bind(reason)
            .fetch_one(p).await?);
        Ok(id)
    }

    /// Heartbeats of running executions.
    pub async fn beat_job_runs(&self, ids: &[i64]) -> Result<()> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        for id in ids {
            let sql = "UPDATE job_runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running'";
            on_pool!(self, p => { sqlx::query(sql).bind(now).bind(*id).execute(p).await?; });
        }
        Ok(())
    }

    /// Ends an execution: `succeeded`, `skipped`, `failed` (with `retry_at`), `aborted`
    /// or `dead`.
    pub async fn finish_job_run(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
        detail: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let sql = "UPDATE job_runs SET status = $1, error = $2, detail = $3, retry_at = $4, finished_at = $5,
                       finished_ms = $6 WHERE id = $7";
        let now_ms = chrono::Utc::now().timestamp_millis();
        on_pool!(self, p => { sqlx::query(sql)
            .bind(status).bind(error).bind(detail).bind(retry_at).bind(now_ms / 1000).bind(now_ms).bind(id)
            .execute(p).await?; });
        Ok(())
    }

    /// The longest of the last `n` successful executions of `kind`, in milliseconds.
    pub async fn recent_job_ms(&self, kind: &str, n: i64) -> Result<Option<i64>> {
        let sql = "SELECT MAX(finished_ms - started_ms) FROM (SELECT finished_ms, started_ms FROM job_runs
                   WHERE status = 'succeeded' AND kind = $1 ORDER BY id DESC LIMIT $2) recent";
        let (ms,): (Option<i64>,) =
            on_pool!(self, p => sqlx::query_as(sql).bind(kind).bind(n).fetch_one(p).await?);
        Ok(ms)
    }

    /// Whether a run of `kind` is queued and due (a tick of it would only queue behind it).
    /// `kinds` are job kinds (`pull`, `score`, ...): lowercase words, written inline.
    pub async fn job_due(&self, kinds: &[&str], due_by_ms: i64) -> Result<Option<JobRunRow>> {
        let list: Vec<String> = kinds
            .iter()
            .filter(|k| k.chars().all(|c| c.is_ascii_lowercase()))
            .map(|k| format!("'{k}'"))
            .collect();
        if list.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE status = 'queued' AND due_ms <= $1 AND kind IN ({}) ORDER BY id LIMIT 1",
            list.join(", ")
        );
        Ok(on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(due_by_ms).fetch_optional(p).await?))
    }

    /// Executions whose worker stopped beating for `stale_secs`: marked interrupted. A
    /// scoring run left unfinished, before it was split into shards, by a holder that no
    /// longer holds the scoring lease: marked failed (a run split into shards goes on
    /// without the process that split it: any daemon works its shards and the last one
    /// finishes it). Queued runs due more than `lost_secs` ago that never started: lost
    /// (a retry waiting for its backoff is not due yet). A lost run's job, should it still
    /// come, runs as an execution of its own. Returns (interrupted executions, failed
    /// scoring runs).
    pub async fn sweep_jobs(&self, stale_secs: i64, lost_secs: i64) -> Result<(u64, u64)> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        let why = format!(
            "its worker stopped (no heartbeat for {stale_secs} s); the job is taken back and run again"
        );
        let interrupted = on_pool!(self, p => sqlx::query(
            "UPDATE job_runs SET status = 'interrupted', finished_at = $1, error = $2
             WHERE status = 'running' AND heartbeat_at < $3")
            .bind(now).bind(why.as_str()).bind(now - stale_secs)
            .execute(p).await?.rows_affected());
        on_pool!(self, p => { sqlx::query(
            "UPDATE job_runs SET status = 'lost', finished_at = $1,
                 error = 'queued but never started: its job is gone from the queue'
             WHERE status = 'queued' AND queued_at < $2 AND due_ms < $3")
            .bind(now).bind(now - lost_secs).bind((now - lost_secs) * 1000)
            .execute(p).await?; });
        let failed = on_pool!(self, p => sqlx::query(
            "UPDATE scoring_runs SET failed_at = $1,
                 error = 'interrupted: ' || COALESCE(holder, 'its process') || ' stopped before the run finished'
             WHERE finished_at IS NULL AND failed_at IS NULL AND shards IS NULL AND NOT EXISTS (
                 SELECT 1 FROM run_leases l WHERE l.name = 'score' AND l.holder = scoring_runs.holder AND l.expires_at >= $1)")
            .bind(now)
            .execute(p).await?.rows_affected());
        Ok((interrupted, failed))
    }

    /// Every execution recorded as queued, marked lost with `why` (its queue is gone).
    pub async fn mark_queued_lost(&self, why: &str) -> Result<u64> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => sqlx::query(
            "UPDATE job_runs SET status = 'lost', finished_at = $1, error = $2 WHERE status = 'queued'")
            .bind(now_secs()).bind(why)
            .execute(p).await?.rows_affected()))
    }

    /// The latest executions, newest first; of one status if asked.
    pub async fn job_runs(&self, status: Option<&str>, limit: i64) -> Result<Vec<JobRunRow>> {
        let sql = format!(
            "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"
        );
        Ok(on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(status).bind(limit).fetch_all(p).await?))
    }

    /// Executions counted by kind and status.
    pub async fn job_run_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let sql = "SELECT kind, status, COUNT(*) FROM job_runs GROUP BY kind, status ORDER BY kind, status";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }
}
