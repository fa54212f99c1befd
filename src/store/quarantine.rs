//! Quarantine: every event a source sent that attune could not store (an unknown customer
//! or kind, a bad timestamp, a value out of range, a malformed row), kept with the reason
//! and the raw row until a retry stores it. Releasing is idempotent: the events table
//! never stores an event twice, so a retry interrupted half way can simply run again.

use sqlx::types::Json;

use super::{BATCH_ROWS, Db, Result, on_pool};
use crate::domain::{ActivityEvent, CustomerId, EventKinds, InvalidValue};

/// An event kept in quarantine (its customer was unknown), with its kind by name: codes
/// belong to a database's catalog, names to the business.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuarantinedEvent {
    pub customer: CustomerId,
    pub kind: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub value: Option<f64>,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    pub source: String,
    pub source_event_id: String,
}

impl QuarantinedEvent {
    pub fn new(e: &ActivityEvent, kinds: &EventKinds) -> Self {
        Self {
            customer: e.customer.clone(),
            kind: kinds.name(e.kind).into_owned(),
            occurred_at: e.occurred_at,
            value: e.value,
            attributes: e.attributes.clone(),
            source: e.source.clone(),
            source_event_id: e.source_event_id.clone(),
        }
    }

    /// The event again, its kind looked up in `kinds` (it may no longer be declared).
    pub fn event(self, kinds: &EventKinds) -> Result<ActivityEvent, InvalidValue> {
        let kind = kinds.accept(&self.kind)?.code;
        Ok(ActivityEvent {
            customer: self.customer,
            kind,
            occurred_at: self.occurred_at,
            value: self.value,
            attributes: self.attributes,
            source: self.source,
            source_event_id: self.source_event_id,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct QuarantineRow {
    pub id: i64,
    pub source: String,
    pub source_event_id: String,
    pub customer_external_id: Option<String>,
    pub reason_code: String,
    pub reason: String,
    pub location: Option<String>,
    pub received_at: i64,
    pub released_at: Option<i64>,
}

/// An open quarantine row with what a retry needs to map it again.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuarantineEntry {
    pub id: i64,
    pub source: String,
    pub source_event_id: String,
    pub raw: Json<serde_json::Value>,
    pub event: Option<Json<QuarantinedEvent>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryOutcome {
    /// Events stored now.
    pub released: u64,
    /// Released events that turned out to be stored already.
    pub duplicate: u64,
    /// Events that still cannot be stored; they stay in quarantine with their reason.
    pub still_quarantined: u64,
}

impl Db {
    /// Quarantined events, oldest first; released ones too if asked; of one reason if asked.
    pub async fn quarantined(
        &self,
        include_released: bool,
        reason_code: Option<&str>,
        limit: i64,
    ) -> Result<Vec<QuarantineRow>> {
        let sql = "SELECT id, source, source_event_id, customer_external_id, reason_code, reason, location, received_at, released_at
                   FROM quarantine WHERE ($1 OR released_at IS NULL) AND ($2 IS NULL OR reason_code = $2) ORDER BY id LIMIT $3";
        Ok(on_pool!(self, p => sqlx::query_as(sql)
            .bind(include_released)
            .bind(reason_code)
            .bind(limit)
            .fetch_all(p)
            .await?))
    }

    /// Open quarantine rows counted by reason.
    pub async fn quarantine_counts(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT reason_code, COUNT(*) FROM quarantine WHERE released_at IS NULL GROUP BY reason_code ORDER BY reason_code";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Open rows with ids above `after`, in id order, for a retry.
    pub async fn open_quarantine(&self, after: i64, limit: i64) -> Result<Vec<QuarantineEntry>> {
        let sql = "SELECT id, source, source_event_id, raw, event FROM quarantine
                   WHERE released_at IS NULL AND id > $1 ORDER BY id LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(after).bind(limit).fetch_all(p).await?))
    }

    /// Records why rows are still quarantined after a retry (the reason may have changed:
    /// a kind mapped since, with a customer still unknown).
    pub async fn requarantine(
        &self,
        rows: &[(i64, &'static str, String, Option<QuarantinedEvent>)],
    ) -> Result<()> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in rows.chunks(BATCH_ROWS) {
                for (id, code, reason, event) in chunk {
                    sqlx::query("UPDATE quarantine SET reason_code = $1, reason = $2, event = COALESCE($3, event) WHERE id = $4 AND released_at IS NULL")
                        .bind(*code)
                        .bind(reason.as_str())
                        .bind(event.as_ref().map(Json))
                        .bind(*id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
