//! Deliveries of approved nudges (issue 20): made by the nudges' triggers in the
//! transaction that approves (see the migration), claimed in batches by a channel's
//! worker, checked, sent, and settled in one transaction per batch. A claim moves
//! `next_at` to the end of the lease, so nudges a killed worker held come due again by
//! themselves; `sent` is written only after the receiver accepted.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use sqlx::types::Json;

use super::{Db, Result, now_secs, on_pool, push_ids};
use crate::domain::{Consent, DeliveryStatus};

/// A claimed delivery with what the send-time check and the message need, read in the
/// moment after the claim.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryFacts {
    pub nudge_id: i64,
    pub channel: String,
    pub attempts: i32,
    pub customer_id: i64,
    pub external_id: String,
    pub kind: String,
    pub occasion: String,
    pub status: String,
    pub stage: String,
    pub message: String,
    pub contact_role: Option<String>,
    pub contact_name: Option<String>,
    pub send_after: Option<i64>,
    pub expires_at: Option<i64>,
    pub snoozed_until: Option<i64>,
    pub decided_by: Option<String>,
    pub consent_email: bool,
    pub consent_sms: bool,
    pub consent_phone: bool,
    pub consent_post: bool,
    pub churned_on: Option<NaiveDate>,
    pub attributes: Json<BTreeMap<String, String>>,
}

impl DeliveryFacts {
    pub fn consent(&self) -> Consent {
        Consent {
            email: self.consent_email,
            sms: self.consent_sms,
            phone: self.consent_phone,
            post: self.consent_post,
        }
    }
}

/// How one claimed delivery ends its turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// The receiver accepted it.
    Sent { id: i64 },
    /// The attempt failed; tried again at `at`. `answer` is what the receiver said.
    Retry { id: i64, at: i64, answer: String },
    /// The last attempt failed.
    Dead { id: i64, answer: String },
    /// It may no longer go.
    Blocked { id: i64, reason: String },
    /// Not yet (quiet hours, the contact cap, a complaint, a snooze): due again at `until`.
    Wait { id: i64, until: i64, why: String },
    /// Not tried (its check grew old, the channel paused): due again now.
    Release { id: i64 },
}

/// A delivery as the lists show it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub nudge_id: i64,
    pub customer: String,
    pub rule: String,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub next_at: i64,
    pub route: Option<String>,
    pub reason: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub outcome: Option<String>,
}

/// A configured channel's breaker as stored.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ChannelState {
    pub name: String,
    pub failures: i32,
    pub paused_until: Option<i64>,
    pub reason: Option<String>,
    pub updated_at: i64,
}

/// Deliveries counted by status, with the pending ones that failed at least once apart.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: i64,
    /// Pending after a failed attempt: waiting for a retry.
    pub retrying: i64,
    pub sent: i64,
    pub dead: i64,
    pub blocked: i64,
    pub cancelled: i64,
}

const ROW: &str =
    "SELECT d.nudge_id, c.external_id AS customer, n.kind AS rule, d.channel, d.status,
    d.attempts, d.next_at, d.route, d.reason, d.last_error, d.created_at, d.updated_at, d.sent_at,
    d.outcome
    FROM deliveries d JOIN nudges n ON n.id = d.nudge_id JOIN customers c ON c.id = n.customer_id";

impl Db {
    /// Claims up to `limit` due pending deliveries of `channels` for `worker`, holding them
    /// until `now + lease_secs`. On PostgreSQL claims skip rows another daemon is claiming.
    pub async fn claim_deliveries(
        &self,
        channels: &[String],
        worker: &str,
        now: i64,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let _turn = self.write_turn().await;
        let list = channels
            .iter()
            .map(|c| format!("'{}'", c.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let lock = match self {
            Db::Sqlite(..) => "",
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE deliveries SET next_at = $1 + $2, claimed_by = $3, updated_at = $1
             WHERE nudge_id IN (SELECT nudge_id FROM deliveries
                 WHERE status = 'pending' AND next_at <= $1 AND channel IN ({list})
                 ORDER BY next_at, nudge_id LIMIT $4{lock})
             RETURNING nudge_id"
        );
        let rows: Vec<(i64,)> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(now).bind(lease_secs).bind(worker).bind(limit).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// What the send-time check and the message need of each claimed delivery.
    pub async fn delivery_facts(&self, ids: &[i64]) -> Result<Vec<DeliveryFacts>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let got: Vec<DeliveryFacts> = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT d.nudge_id, d.channel, d.attempts, n.customer_id, c.external_id, n.kind,
                     n.occasion, n.status, n.stage, COALESCE(n.edited_message, n.message, '') AS message,
                     n.contact_role, n.contact_name, n.send_after, n.expires_at, n.snoozed_until,
                     n.decided_by, c.consent_email, c.consent_sms, c.consent_phone, c.consent_post,
                     c.churned_on, c.attributes
                     FROM deliveries d JOIN nudges n ON n.id = d.nudge_id
                     JOIN customers c ON c.id = n.customer_id WHERE d.nudge_id IN ",
                );
                push_ids(&mut q, chunk);
                q.build_query_as::<DeliveryFacts>().fetch_all(p).await?
            });
            out.extend(got);
        }
        Ok(out)
    }

    /// When each of these customers' nudges were sent since `since`, with the nudge's rule
    /// (the caller leaves out what the contact cap does not count).
    pub async fn sent_since(
        &self,
        customers: &[i64],
        since: i64,
    ) -> Result<HashMap<i64, Vec<(String, i64)>>> {
        let mut out: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
        for chunk in customers.chunks(500) {
            let rows: Vec<(i64, String, i64)> = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(
                    // From the customers' nudges (`nudges_by_customer_time`) to their
                    // deliveries by key, never by walking every sent delivery by status
                    // (a claim's cost grew with all ever sent): CROSS JOIN keeps SQLite
                    // in that order, and `status || ''` keeps PostgreSQL off the status
                    // index, which statistics taken before a bulk run show as nearly
                    // empty of sent rows (389 ms a batch at 96,000 sent, growing).
                    "SELECT n.customer_id, n.kind, d.sent_at FROM nudges n
                     CROSS JOIN deliveries d
                     WHERE d.nudge_id = n.id AND (d.status || '') = 'sent' AND d.sent_at > ",
                );
                q.push_bind(since);
                q.push(" AND n.customer_id IN ");
                push_ids(&mut q, chunk);
                q.build_query_as().fetch_all(p).await?
            });
            for (c, kind, at) in rows {
                out.entry(c).or_default().push((kind, at));
            }
        }
        Ok(out)
    }

    /// Ends the turn of claimed deliveries, in one transaction. `route` is the configured
    /// channel that took them; all but `Sent` apply only while `worker` still holds the
    /// claim (a `Sent` is a fact whoever holds it now). Returns how many rows changed.
    pub async fn settle_deliveries(
        &self,
        route: &str,
        worker: &str,
        outcomes: &[Settle],
    ) -> Result<u64> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let now = now_secs();
        const HELD: &str = " WHERE nudge_id = $1 AND status = 'pending' AND claimed_by = $2";
        let retry = format!(
            "UPDATE deliveries SET attempts = attempts + 1, next_at = $3, last_error = $4,
             updated_at = $5, route = $6{HELD}"
        );
        let dead = format!(
            "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_error = $3,
             updated_at = $4, route = $5{HELD}"
        );
        let blocked =
            format!("UPDATE deliveries SET status = 'blocked', reason = $3, updated_at = $4{HELD}");
        let wait =
            format!("UPDATE deliveries SET next_at = $3, reason = $4, updated_at = $5{HELD}");
        let release = format!("UPDATE deliveries SET next_at = $3, updated_at = $3{HELD}");
        let mut changed = 0;
        // Most of a batch is sent: one statement per 500 of them, the rest one by one.
        let sent_ids: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                Settle::Sent { id } => Some(*id),
                _ => None,
            })
            .collect();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in sent_ids.chunks(500) {
                let mut q = sqlx::QueryBuilder::new("UPDATE deliveries SET status = 'sent', sent_at = ");
                q.push_bind(now)
                    .push(", attempts = attempts + 1, last_error = NULL, reason = NULL, updated_at = ")
                    .push_bind(now)
                    .push(", route = ")
                    .push_bind(route)
                    .push(" WHERE status = 'pending' AND nudge_id IN ");
                push_ids(&mut q, chunk);
                changed += q.build().execute(&mut *tx).await?.rows_affected();
            }
            for o in outcomes {
                let r = match o {
                    Settle::Sent { .. } => continue,
                    Settle::Retry { id, at, answer } => sqlx::query(sqlx::AssertSqlSafe(retry.as_str()))
                        .bind(id).bind(worker).bind(at).bind(answer).bind(now).bind(route).execute(&mut *tx).await?,
                    Settle::Dead { id, answer } => sqlx::query(sqlx::AssertSqlSafe(dead.as_str()))
                        .bind(id).bind(worker).bind(answer).bind(now).bind(route).execute(&mut *tx).await?,
                    Settle::Blocked { id, reason } => sqlx::query(sqlx::AssertSqlSafe(blocked.as_str()))
                        .bind(id).bind(worker).bind(reason).bind(now).execute(&mut *tx).await?,
                    Settle::Wait { id, until, why } => sqlx::query(sqlx::AssertSqlSafe(wait.as_str()))
                        .bind(id).bind(worker).bind(until).bind(why).bind(now).execute(&mut *tx).await?,
                    Settle::Release { id } => sqlx::query(sqlx::AssertSqlSafe(release.as_str()))
                        .bind(id).bind(worker).bind(now).execute(&mut *tx).await?,
                };
                changed += r.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(changed)
    }

    /// Deliveries, newest change first; `status` and `channel` filter, `limit` bounds.
    pub async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>> {
        let rows: Vec<DeliveryRow> = on_pool!(self, p => {
            let mut q = sqlx::QueryBuilder::new(ROW);
            q.push(" WHERE 1 = 1");
            if let Some(s) = status {
                q.push(" AND d.status = ").push_bind(s.as_str());
            }
            if let Some(c) = channel {
                q.push(" AND d.channel = ").push_bind(c.to_owned());
            }
            q.push(" ORDER BY d.updated_at DESC, d.nudge_id DESC LIMIT ").push_bind(limit);
            q.build_query_as().fetch_all(p).await?
        });
        Ok(rows)
    }

    /// One nudge's delivery, if it has one.
    pub async fn delivery(&self, nudge_id: i64) -> Result<Option<DeliveryRow>> {
        let sql = format!("{ROW} WHERE d.nudge_id = $1");
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(nudge_id).fetch_optional(p).await?),
        )
    }

    pub async fn delivery_counts(&self) -> Result<DeliveryCounts> {
        let sql = "SELECT status, attempts > 0 AND status = 'pending', COUNT(*) FROM deliveries
                   GROUP BY 1, 2";
        let rows: Vec<(String, bool, i64)> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        let mut c = DeliveryCounts::default();
        for (status, failed_before, n) in rows {
            match status.as_str() {
                "pending" if failed_before => c.retrying += n,
                "pending" => c.pending += n,
                "sent" => c.sent += n,
                "dead" => c.dead += n,
                "blocked" => c.blocked += n,
                "cancelled" => c.cancelled += n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// A person sends a dead (or cancelled) delivery again: pending, attempts from zero,
    /// due now; audited. False if there is no such delivery in either state.
    pub async fn retry_delivery(&self, nudge_id: i64, actor: &str) -> Result<bool> {
        self.person_changes_delivery(
            nudge_id,
            actor,
            "delivery.retry",
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = $2, updated_at = $2,
             reason = NULL, claimed_by = NULL WHERE nudge_id = $1 AND status IN ('dead', 'cancelled')",
        )
        .await
    }

    /// A person stops a pending delivery: cancelled, never sent; audited.
    pub async fn cancel_delivery(&self, nudge_id: i64, actor: &str) -> Result<bool> {
        self.person_changes_delivery(
            nudge_id,
            actor,
            "delivery.cancel",
            "UPDATE deliveries SET status = 'cancelled', updated_at = $2, reason = 'cancelled by a person'
             WHERE nudge_id = $1 AND status = 'pending'",
        )
        .await
    }

    async fn person_changes_delivery(
        &self,
        nudge_id: i64,
        actor: &str,
        action: &str,
        sql: &'static str,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        let changed = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(sql).bind(nudge_id).bind(now).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query("INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
                    .bind(now).bind(actor).bind(action).bind(format!("nudge:{nudge_id}"))
                    .bind(Json(serde_json::json!({}))).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n
        });
        Ok(changed == 1)
    }

    /// What a receiver reported after accepting (`bounced`, `delivered`, ...), through
    /// the signed callback. False if the nudge was never sent.
    pub async fn record_delivery_outcome(&self, nudge_id: i64, outcome: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let sql = "UPDATE deliveries SET outcome = $2, outcome_at = $3 WHERE nudge_id = $1 AND status = 'sent'";
        let n = on_pool!(self, p => sqlx::query(sql).bind(nudge_id).bind(outcome).bind(now_secs()).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Every configured channel's breaker as last stored.
    pub async fn channel_states(&self) -> Result<Vec<ChannelState>> {
        let sql = "SELECT name, failures, paused_until, reason, updated_at FROM delivery_channels ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Stores a channel's breaker: failures in a row, paused until when and why.
    pub async fn set_channel_state(
        &self,
        name: &str,
        failures: u32,
        paused_until: Option<i64>,
        reason: Option<&str>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let sql = "INSERT INTO delivery_channels (name, failures, paused_until, reason, updated_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (name) DO UPDATE SET failures = excluded.failures,
                   paused_until = excluded.paused_until, reason = excluded.reason,
                   updated_at = excluded.updated_at";
        on_pool!(self, p => sqlx::query(sql).bind(name).bind(failures as i32).bind(paused_until)
            .bind(reason).bind(now_secs()).execute(p).await?.rows_affected());
        Ok(())
    }
}
