//! Scheduled ticks. A tick's id (`schedule@fire-time`) is the primary key, so however many
//! daemons see the same cron tick, exactly one claims it.

use super::{Db, Result, now_secs, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TickClaim {
    pub id: String,
    pub schedule: String,
    pub fire_at: i64,
    pub claimed_by: String,
}

impl Db {
    /// True if this worker claimed the tick; false if someone already had.
    pub async fn claim_tick(
        &self,
        id: &str,
        schedule: &str,
        fire_at: i64,
        worker: &str,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let sql = "INSERT INTO ticks (id, schedule, fire_at, claimed_by, claimed_at) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (id) DO NOTHING";
        let n = on_pool!(self, p => sqlx::query(sql)
            .bind(id).bind(schedule).bind(fire_at).bind(worker).bind(now_secs())
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn mark_tick_enqueued(&self, id: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => { sqlx::query("UPDATE ticks SET enqueued_at = $1 WHERE id = $2")
            .bind(now_secs()).bind(id).execute(p).await?; });
        Ok(())
    }

    /// Ticks claimed more than `grace_secs` ago whose job was never enqueued: the claimer
    /// died in between. Enqueueing is idempotent, so any daemon may finish the job.
    pub async fn stranded_ticks(&self, grace_secs: i64) -> Result<Vec<TickClaim>> {
        let sql = "SELECT id, schedule, fire_at, claimed_by FROM ticks WHERE enqueued_at IS NULL AND claimed_at <= $1 ORDER BY fire_at";
        Ok(
            on_pool!(self, p => sqlx::query_as(sql).bind(now_secs() - grace_secs).fetch_all(p).await?),
        )
    }

    pub async fn tick_count(&self, schedule: &str) -> Result<i64> {
        let (n,): (i64,) = on_pool!(self, p => sqlx::query_as("SELECT COUNT(*) FROM ticks WHERE schedule = $1")
            .bind(schedule).fetch_one(p).await?);
        Ok(n)
    }
}
