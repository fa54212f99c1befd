//! Nudges: queued once per customer, kind and occasion; decided by people, with an audit
//! entry written in the same transaction as the decision.

use sqlx::types::Json;

use super::{BATCH_ROWS, Db, Result, now_secs, on_pool};
use crate::domain::{NudgeStatus, RuleName};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewNudge {
    pub customer_id: i64,
    /// The playbook rule that queued it.
    pub kind: RuleName,
    /// What the nudge is about (`signup:2026-11-20`, `complaint:812`): with the customer
    /// and kind it is the nudge's identity, so planning twice never queues it twice.
    pub occasion: String,
    /// A channel, or `task` for a task for a team.
    pub channel: String,
    pub status: NudgeStatus,
    /// Why it was queued, as JSON text (an object: rule, stage, why, drivers, ...).
    pub reason: String,
    pub probability: Option<f64>,
    pub run_id: Option<i64>,
    pub stage: String,
    pub priority: i32,
    pub holdout: bool,
    pub expected_value: Option<f64>,
    pub segment: Option<String>,
    pub risk_band: Option<String>,
    pub message: Option<String>,
    pub contact_role: Option<String>,
    pub contact_name: Option<String>,
    pub send_after: Option<i64>,
    pub expires_at: Option<i64>,
    pub planned_at: i64,
    /// Set for a nudge approved with its rule.
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NudgeFilter {
    pub status: Option<NudgeStatus>,
    pub kind: Option<RuleName>,
    pub limit: i64,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct NudgeRow {
    pub id: i64,
    pub customer_id: i64,
    pub external_id: String,
    pub kind: String,
    pub occasion: String,
    pub channel: String,
    pub status: String,
    pub reason: Json<serde_json::Value>,
    pub probability: Option<f64>,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
}

/// What happened to each id given to [`Db::decide_nudges`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecideOutcome {
    pub decided: Vec<i64>,
    pub not_found: Vec<i64>,
    /// Already decided, with their current status: a decision is never overwritten.
    pub already_decided: Vec<(i64, String)>,
}

const SELECT: &str =
    "SELECT n.id, n.customer_id, c.external_id, n.kind, n.occasion, n.channel, n.status, n.reason,
    n.probability, n.created_at, n.decided_by, n.decided_at, n.decision_reason
    FROM nudges n JOIN customers c ON c.id = n.customer_id";

/// The columns [`Db::insert_nudges`] writes, in the order both backends bind them: the one
/// list for SQLite's prepared statement and PostgreSQL's multi-row insert.
const INSERT_NUDGE_COLUMNS: &str = "customer_id, kind, occasion, channel, status, reason, \
    probability, created_at, run_id, stage, priority, holdout, expected_value, segment, risk_band, \
    message, contact_role, contact_name, send_after, expires_at, planned_at, updated_at, \
    decided_by, decided_at, decision_reason";

/// The identity of a nudge: planning twice never queues it twice.
const ON_NUDGE_CONFLICT: &str = " ON CONFLICT (customer_id, kind, occasion) DO NOTHING";

/// [`Db::insert_nudges`]'s row on SQLite: `?1` ... `?N`, one per column.
fn sqlite_insert_nudge() -> String {
    let n = INSERT_NUDGE_COLUMNS.split(',').count();
    let params: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO nudges ({INSERT_NUDGE_COLUMNS}) VALUES ({}){ON_NUDGE_CONFLICT}",
        params.join(", ")
    )
}

impl Db {
    /// Nudges counted by status.
    pub async fn nudge_status_counts(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT status, COUNT(*) FROM nudges GROUP BY status ORDER BY status";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Queues nudges, skipping any already queued for the same customer, kind and
    /// occasion, in one transaction. Returns how many were new.
    pub async fn insert_nudges(&self, nudges: Vec<NewNudge>) -> Result<u64> {
        let _turn = self.bulk_turn().await;
        let now = now_secs();
        if let Db::Sqlite(p, ..) = self {
            // One prepared statement stepped per row through SQLite's own API (`raw`).
            return super::raw::with_connection(p, move |raw| {
                raw.execute("BEGIN IMMEDIATE")?;
                let mut inserted = 0;
                let mut stmt = raw.prepare(&sqlite_insert_nudge())?;
                stmt.bind_i64(8, now)?;
                stmt.bind_i64(22, now)?;
                for n in &nudges {
                    stmt.bind_i64(1, n.customer_id)?;
                    stmt.bind_text(2, n.kind.as_str())?;
                    stmt.bind_text(3, &n.occasion)?;
                    stmt.bind_text(4, &n.channel)?;
                    stmt.bind_text(5, n.status.as_str())?;
                    stmt.bind_text(6, &n.reason)?;
                    stmt.bind_opt_f64(7, n.probability)?;
                    stmt.bind_opt_i64(9, n.run_id)?;
                    stmt.bind_text(10, &n.stage)?;
                    stmt.bind_i64(11, n.priority as i64)?;
                    stmt.bind_i64(12, n.holdout as i64)?;
                    stmt.bind_opt_f64(13, n.expected_value)?;
                    stmt.bind_opt_text(14, n.segment.as_deref())?;
                    stmt.bind_opt_text(15, n.risk_band.as_deref())?;
                    stmt.bind_opt_text(16, n.message.as_deref())?;
                    stmt.bind_opt_text(17, n.contact_role.as_deref())?;
                    stmt.bind_opt_text(18, n.contact_name.as_deref())?;
                    stmt.bind_opt_i64(19, n.send_after)?;
                    stmt.bind_opt_i64(20, n.expires_at)?;
                    stmt.bind_i64(21, n.planned_at)?;
                    stmt.bind_opt_text(23, n.decided_by.as_deref())?;
                    stmt.bind_opt_i64(24, n.decided_by.as_ref().map(|_| now))?;
                    stmt.bind_opt_text(25, n.decision_reason.as_deref())?;
                    stmt.run()?;
                    inserted += raw.changes();
                }
                drop(stmt);
                raw.execute("COMMIT")?;
                Ok(inserted)
            })
            .await;
        }
        let mut inserted = 0;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // 25 values a row: 1,000 rows stay under SQLite's 32,766 bound values.
            for chunk in nudges.chunks(BATCH_ROWS) {
                let mut q =
                    sqlx::QueryBuilder::new(format!("INSERT INTO nudges ({INSERT_NUDGE_COLUMNS}) "));
                q.push_values(chunk, |mut b, n| {
                    b.push_bind(n.customer_id)
                        .push_bind(n.kind.as_str())
                        .push_bind(n.occasion.as_str())
                        .push_bind(n.channel.as_str())
                        .push_bind(n.status.as_str())
                        .push_bind(n.reason.as_str())
                        .push_unseparated("::jsonb")
                        .push_bind(n.probability)
                        .push_bind(now)
                        .push_bind(n.run_id)
                        .push_bind(n.stage.as_str())
                        .push_bind(n.priority)
                        .push_bind(n.holdout)
                        .push_bind(n.expected_value)
                        .push_bind(n.segment.as_deref())
                        .push_bind(n.risk_band.as_deref())
                        .push_bind(n.message.as_deref())
                        .push_bind(n.contact_role.as_deref())
                        .push_bind(n.contact_name.as_deref())
                        .push_bind(n.send_after)
                        .push_bind(n.expires_at)
                        .push_bind(n.planned_at)
                        .push_bind(now)
                        .push_bind(n.decided_by.as_deref())
                        .push_bind(n.decided_by.as_ref().map(|_| now))
                        .push_bind(n.decision_reason.as_deref());
                });
                q.push(ON_NUDGE_CONFLICT);
                inserted += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(inserted)
    }

    /// Every (customer, kind, occasion) already queued, so planning can say what it skipped.
    pub async fn nudge_keys(&self) -> Result<Vec<(i64, String, String)>> {
        Ok(
            on_pool!(self, p => sqlx::query_as("SELECT customer_id, kind, occasion FROM nudges").fetch_all(p).await?),
        )
    }

    pub async fn list_nudges(&self, filter: &NudgeFilter) -> Result<Vec<NudgeRow>> {
        let status = filter.status.map(|s| s.as_str());
        let kind = filter.kind.as_ref().map(RuleName::as_str);
        let limit = if filter.limit > 0 {
            filter.limit
        } else {
            i64::MAX
        };
        let rows = on_pool!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT);
            q.push(" WHERE 1 = 1");
            if let Some(s) = status {
                q.push(" AND n.status = ").push_bind(s);
            }
            if let Some(k) = kind {
                q.push(" AND n.kind = ").push_bind(k);
            }
            q.push(" ORDER BY n.probability DESC NULLS LAST, n.id LIMIT ").push_bind(limit);
            q.build_query_as::<NudgeRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    pub async fn nudge_counts_by_kind(&self) -> Result<Vec<(String, String, i64)>> {
        let sql =
            "SELECT kind, status, COUNT(*) FROM nudges GROUP BY kind, status ORDER BY kind, status";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Approves or rejects proposed nudges. Each decision and its audit entry commit
    /// together; ids that do not exist or were already decided are reported, not changed.
    pub async fn decide_nudges(
        &self,
        ids: &[i64],
        status: NudgeStatus,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<DecideOutcome> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        let mut out = DecideOutcome::default();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for &id in ids {
                let updated = sqlx::query(
                    "UPDATE nudges SET status = $1, decided_by = $2, decided_at = $3, decision_reason = $4
                     WHERE id = $5 AND status = 'proposed'",
                )
                .bind(status.as_str())
                .bind(actor)
                .bind(now)
                .bind(reason)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 1 {
                    let detail = serde_json::json!({ "from": "proposed", "to": status.as_str(), "reason": reason });
                    sqlx::query("INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
                        .bind(now)
                        .bind(actor)
                        .bind(format!("nudge.{}", status.as_str()))
                        .bind(format!("nudge:{id}"))
                        .bind(Json(&detail))
                        .execute(&mut *tx)
                        .await?;
                    out.decided.push(id);
                } else {
                    let current: Option<(String,)> = sqlx::query_as("SELECT status FROM nudges WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    match current {
                        Some((s,)) => out.already_decided.push((id, s)),
                        None => out.not_found.push(id),
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(out)
    }
}
