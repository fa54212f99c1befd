//! Quarantine: events attune cannot store yet (their customer is unknown), kept with the
//! reason until they can be. Releasing is idempotent: the events table never stores an
//! event twice, so a retry interrupted half way can simply run again.

use sqlx::types::Json;

use super::{Db, Result, now_secs, on_pool};
use crate::domain::ActivityEvent;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct QuarantineRow {
    pub id: i64,
    pub source: String,
    pub source_event_id: String,
    pub customer_external_id: String,
    pub reason: String,
    pub received_at: i64,
    pub released_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryOutcome {
    /// Events stored now that their customer exists.
    pub released: u64,
    /// Released events that turned out to be stored already.
    pub duplicate: u64,
    /// Events whose customer is still unknown; they stay in quarantine.
    pub still_unknown: u64,
}

impl Db {
    /// Quarantined events, oldest first; released ones too if asked.
    pub async fn quarantined(
        &self,
        include_released: bool,
        limit: i64,
    ) -> Result<Vec<QuarantineRow>> {
        let sql = "SELECT id, source, source_event_id, customer_external_id, reason, received_at, released_at
                   FROM quarantine WHERE ($1 OR released_at IS NULL) ORDER BY id LIMIT $2";
        Ok(
            on_pool!(self, p => sqlx::query_as(sql).bind(include_released).bind(limit).fetch_all(p).await?),
        )
    }

    /// Stores every quarantined event whose customer now exists and marks it released.
    pub async fn retry_quarantine(&self) -> Result<RetryOutcome> {
        let sql = "SELECT id, event FROM quarantine WHERE released_at IS NULL ORDER BY id";
        let open: Vec<(i64, Json<ActivityEvent>)> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        let ids = self.customer_id_map().await?;
        let (ready, waiting): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|(_, e)| ids.contains_key(e.customer.as_str()));
        let mut out = RetryOutcome {
            still_unknown: waiting.len() as u64,
            ..Default::default()
        };
        if ready.is_empty() {
            return Ok(out);
        }
        let events: Vec<ActivityEvent> = ready.iter().map(|(_, e)| e.0.clone()).collect();
        let counts = self.insert_events_known(&ids, &events).await?;
        out.released = counts.inserted;
        out.duplicate = counts.duplicate;
        let now = now_secs();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in ready.chunks(super::BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("UPDATE quarantine SET released_at = ");
                q.push_bind(now).push(" WHERE id IN (");
                let mut sep = q.separated(", ");
                for (id, _) in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(out)
    }
}
