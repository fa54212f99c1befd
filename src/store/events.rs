//! Activity events: idempotent batched inserts and the per-customer summaries features need.

use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone, Utc};
use sqlx::types::Json;

use super::{BATCH_ROWS, Db, Result, day_start, now_secs, on_pool};
use crate::domain::{ActivityEvent, EventKind};
use crate::features::ActivitySummary;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InsertCounts {
    pub inserted: u64,
    /// Already stored (same source and source event id): never stored twice.
    pub duplicate: u64,
    /// Positions in the input of events whose customer attune does not know. They are
    /// quarantined, not dropped: `Db::retry_quarantine` stores them once the customer exists.
    pub unknown_customer: Vec<usize>,
    /// Events newly put in quarantine (an event already there is not counted again).
    pub quarantined: u64,
}

const DAY: i64 = 86_400;

impl Db {
    /// Stores events whose customer is known, skipping any already stored. Runs in one
    /// transaction: either the whole batch is stored or none of it.
    pub async fn insert_events(&self, events: &[ActivityEvent]) -> Result<InsertCounts> {
        let ids = self.customer_id_map().await?;
        self.insert_events_known(&ids, events).await
    }

    /// [`Db::insert_events`] with the customer id map already loaded (for many batches).
    pub async fn insert_events_known(
        &self,
        ids: &HashMap<String, i64>,
        events: &[ActivityEvent],
    ) -> Result<InsertCounts> {
        let mut counts = InsertCounts::default();
        let mut known: Vec<(i64, &ActivityEvent)> = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            match ids.get(e.customer.as_str()) {
                Some(&id) => known.push((id, e)),
                None => counts.unknown_customer.push(i),
            }
        }
        let now = now_secs();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in known.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO events (customer_id, kind, occurred_at, value, attributes, source, source_event_id, ingested_at) ",
                );
                q.push_values(chunk, |mut b, (id, e)| {
                    b.push_bind(*id)
                        .push_bind(e.kind.as_str())
                        .push_bind(e.occurred_at.timestamp())
                        .push_bind(e.value)
                        .push_bind(Json(&e.attributes))
                        .push_bind(e.source.as_str())
                        .push_bind(e.source_event_id.as_str())
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (source, source_event_id) DO NOTHING");
                let done = q.build().execute(&mut *tx).await?.rows_affected();
                counts.inserted += done;
                counts.duplicate += chunk.len() as u64 - done;
            }
            for chunk in counts.unknown_customer.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO quarantine (source, source_event_id, customer_external_id, reason, event, received_at) ",
                );
                q.push_values(chunk, |mut b, &i| {
                    let e = &events[i];
                    b.push_bind(e.source.as_str())
                        .push_bind(e.source_event_id.as_str())
                        .push_bind(e.customer.as_str())
                        .push_bind(format!("unknown customer {:?}", e.customer.as_str()))
                        .push_bind(Json(e))
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (source, source_event_id) DO NOTHING");
                counts.quarantined += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(counts)
    }

    /// What each customer's activity looked like before the start of `as_of`. Events at or
    /// after `as_of` are invisible, so a summary for a past day is the same whatever has
    /// arrived since.
    pub async fn activity_summaries(
        &self,
        as_of: NaiveDate,
    ) -> Result<HashMap<i64, ActivitySummary>> {
        self.activity_summaries_between(as_of, i64::MIN, i64::MAX)
            .await
    }

    /// [`Db::activity_summaries`] for customers with ids in `first..=last` (a page).
    pub async fn activity_summaries_between(
        &self,
        as_of: NaiveDate,
        first: i64,
        last: i64,
    ) -> Result<HashMap<i64, ActivitySummary>> {
        let t = day_start(as_of);
        let contact_kinds = EventKind::ALL
            .iter()
            .filter(|k| k.is_contact())
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT customer_id,
                COUNT(*) AS events_total,
                MAX(CASE WHEN kind IN ({contact_kinds}) THEN occurred_at END) AS last_contact,
                SUM(CASE WHEN kind = 'complaint_opened' AND occurred_at >= $2 THEN 1 ELSE 0 END) AS complaints_90d,
                SUM(CASE WHEN kind IN ('complaint_opened', 'complaint_reopened') THEN 1
                         WHEN kind = 'complaint_resolved' THEN -1 ELSE 0 END) AS open_complaints,
                MAX(CASE WHEN kind IN ('complaint_opened', 'complaint_reopened') THEN occurred_at END) AS last_complaint,
                SUM(CASE WHEN kind = 'payment_failed' AND occurred_at >= $2 THEN 1 ELSE 0 END) AS payment_failures_90d,
                SUM(CASE WHEN kind = 'support_contact' AND occurred_at >= $2 THEN 1 ELSE 0 END) AS support_contacts_90d,
                SUM(CASE WHEN kind = 'login' AND occurred_at >= $3 THEN 1 ELSE 0 END) AS logins_30d,
                SUM(CASE WHEN kind = 'usage' AND occurred_at >= $3 THEN COALESCE(value, 0.0) ELSE 0.0 END) AS usage_30d,
                SUM(CASE WHEN kind = 'usage' AND occurred_at >= $4 AND occurred_at < $3 THEN COALESCE(value, 0.0) ELSE 0.0 END) AS usage_prior_90d,
                AVG(CASE WHEN kind = 'invoice_issued' THEN value END) AS mean_invoice
             FROM events WHERE customer_id BETWEEN $5 AND $6 AND occurred_at < $1 GROUP BY customer_id"
        );
        type Agg = (
            i64,
            i64,
            Option<i64>,
            i64,
            i64,
            Option<i64>,
            i64,
            i64,
            i64,
            f64,
            f64,
            Option<f64>,
        );
        let last_invoice_sql = "SELECT customer_id, value FROM (
                SELECT customer_id, value, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY occurred_at DESC, id DESC) AS rn
                FROM events WHERE customer_id BETWEEN $2 AND $3 AND kind = 'invoice_issued' AND occurred_at < $1) latest
             WHERE rn = 1";
        let (aggs, last_invoices): (Vec<Agg>, Vec<(i64, Option<f64>)>) = on_pool!(self, p => {
            let aggs = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(t)
                .bind(t - 90 * DAY)
                .bind(t - 30 * DAY)
                .bind(t - 120 * DAY)
                .bind(first)
                .bind(last)
                .fetch_all(p)
                .await?;
            let latest = sqlx::query_as(last_invoice_sql).bind(t).bind(first).bind(last).fetch_all(p).await?;
            (aggs, latest)
        });
        let day = |secs: Option<i64>| {
            secs.and_then(|s| Utc.timestamp_opt(s, 0).single())
                .map(|d| d.date_naive())
        };
        let count = |n: i64| n.clamp(0, u32::MAX as i64) as u32;
        let mut out: HashMap<i64, ActivitySummary> = aggs
            .into_iter()
            .map(
                |(
                    id,
                    total,
                    last_contact,
                    c90,
                    open,
                    last_complaint,
                    pf,
                    sc,
                    logins,
                    u30,
                    uprior,
                    mean_inv,
                )| {
                    let s = ActivitySummary {
                        events_total: count(total),
                        last_contact: day(last_contact),
                        complaints_90d: count(c90),
                        open_complaints: count(open),
                        last_complaint: day(last_complaint),
                        payment_failures_90d: count(pf),
                        support_contacts_90d: count(sc),
                        logins_30d: count(logins),
                        usage_30d: u30,
                        usage_prior_90d: uprior,
                        last_invoice_amount: None,
                        mean_invoice_amount: mean_inv,
                    };
                    (id, s)
                },
            )
            .collect();
        for (id, value) in last_invoices {
            if let Some(s) = out.get_mut(&id) {
                s.last_invoice_amount = value;
            }
        }
        Ok(out)
    }

    /// Complaints opened or reopened in `[from, to)` that no later resolution closed,
    /// as (event id, customer id, when).
    pub async fn unresolved_complaints(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(i64, i64, i64)>> {
        let sql = "SELECT e.id, e.customer_id, e.occurred_at FROM events e
             WHERE e.kind IN ('complaint_opened', 'complaint_reopened') AND e.occurred_at >= $1 AND e.occurred_at < $2
               AND NOT EXISTS (SELECT 1 FROM events r WHERE r.customer_id = e.customer_id
                   AND r.kind = 'complaint_resolved' AND r.occurred_at >= e.occurred_at AND r.occurred_at < $2)
             ORDER BY e.id";
        Ok(
            on_pool!(self, p => sqlx::query_as(sql).bind(day_start(from)).bind(day_start(to)).fetch_all(p).await?),
        )
    }
}
