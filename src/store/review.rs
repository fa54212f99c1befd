//! The review desk's reads and writes: the queue of nudges paged by value at risk, one
//! nudge with its customer's recent history, and people's decisions.
//!
//! The playbook plans nudges; this module only reads them and records decisions. A
//! decision is a conditional update (`WHERE status = 'proposed'`) committed together with
//! its audit entry, so a decision is never overwritten and never goes unrecorded.
//!
//! The queue pages by keyset on the `nudges_queue (status, expected_value DESC, id)` index:
//! nudges with a value at risk first, largest first, then those without one by id. Each
//! page is one index range scan, however deep the page, so paging stays fast at millions.

use chrono::NaiveDate;
use sqlx::types::Json;

use super::users::audit_in_tx;
use super::{BATCH_ROWS, Db, Result, day_start, now_secs, on_pool};
use crate::domain::Meaning;
pub use crate::domain::complaint::Complaint;
use crate::domain::complaint::{ComplaintEvent, Step, lifecycle, oldest_open};

/// Writes one audit entry per decided id inside the open transaction `$tx`, in batched
/// multi-row inserts.
macro_rules! audit_rows {
    ($tx:expr, $now:expr, $actor:expr, $decision:expr, $ids:expr, $extra:expr) => {{
        let decision: &Decision = $decision;
        let mut detail = serde_json::json!({
            "before": {"status": "proposed"},
            "after": decision.after($actor),
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), $extra) {
            d.extend(extra);
        }
        let action = format!("nudge.{}", decision.status());
        let ids: &[i64] = $ids;
        for chunk in ids.chunks(BATCH_ROWS) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO audit_log (at, actor, action, subject, detail) ",
            );
            q.push_values(chunk, |mut b, id| {
                b.push_bind($now)
                    .push_bind($actor.to_owned())
                    .push_bind(action.clone())
                    .push_bind(format!("nudge:{id}"))
                    .push_bind(Json(detail.clone()));
            });
            q.build().execute(&mut *$tx).await?;
        }
    }};
}

/// The statuses of the nudge lifecycle agreed with the playbook.
pub const STATUSES: &[&str] = &[
    "proposed",
    "deferred",
    "approved",
    "rejected",
    "snoozed",
    "withdrawn",
    "expired",
    "holdout",
];

/// At most this many nudges are decided by one bulk action.
pub const BULK_MAX: i64 = 10_000;

/// Which nudges to show: one status, and any of the other fields equal to a value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueFilter {
    pub status: String,
    /// The playbook rule (the `kind` column).
    pub rule: Option<String>,
    pub stage: Option<String>,
    pub channel: Option<String>,
    pub risk_band: Option<String>,
    pub segment: Option<String>,
    /// Queued on or after this day (UTC).
    pub from: Option<NaiveDate>,
    /// Queued on or before this day (UTC).
    pub to: Option<NaiveDate>,
}

impl Default for QueueFilter {
    fn default() -> Self {
        Self {
            status: "proposed".into(),
            rule: None,
            stage: None,
            channel: None,
            risk_band: None,
            segment: None,
            from: None,
            to: None,
        }
    }
}

/// Where a queue page ends: the last row's value at risk (None once past the rows that
/// have one) and id. Encoded as `VALUE~ID` (the value in exponent form) or `n~ID` in URLs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueCursor {
    pub expected_value: Option<f64>,
    pub id: i64,
}

impl QueueCursor {
    pub fn encode(&self) -> String {
        match self.expected_value {
            // Shortest exponent form that reads back to the same number: `1.2345e3`.
            Some(v) => format!("{v:e}~{}", self.id),
            None => format!("n~{}", self.id),
        }
    }

    pub fn decode(raw: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "{raw:?} is not a cursor this server gave out; use the next_cursor of the previous page"
            )
        };
        let (v, id) = raw.split_once('~').ok_or_else(bad)?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let expected_value = match v {
            "n" => None,
            v => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(bad)?,
            ),
        };
        Ok(Self { expected_value, id })
    }
}

/// A nudge as the review desk shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct ReviewNudge {
    pub id: i64,
    pub customer_id: i64,
    pub external_id: String,
    /// The playbook rule that queued it.
    pub kind: String,
    pub occasion: String,
    pub channel: String,
    pub status: String,
    pub stage: String,
    pub priority: i64,
    pub holdout: bool,
    /// Value at risk: churn probability x monthly revenue x the value horizon.
    pub expected_value: Option<f64>,
    pub segment: Option<String>,
    pub risk_band: Option<String>,
    /// The message as planned.
    pub message: Option<String>,
    /// A reviewer's edit, kept beside the planned message.
    pub edited_message: Option<String>,
    pub edited_by: Option<String>,
    pub edited_at: Option<i64>,
    pub contact_role: Option<String>,
    pub contact_name: Option<String>,
    pub send_after: Option<i64>,
    pub expires_at: Option<i64>,
    pub snoozed_until: Option<i64>,
    /// Why it was queued: `rule`, `why`, `probability`, `drivers`.
    pub reason: Json<serde_json::Value>,
    pub probability: Option<f64>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
}

impl ReviewNudge {
    /// The text the customer would get: the reviewer's edit if there is one.
    pub fn effective_message(&self) -> Option<&str> {
        self.edited_message.as_deref().or(self.message.as_deref())
    }
}

const COLUMNS: &str = "n.id, n.customer_id, c.external_id, n.kind, n.occasion, n.channel, n.status,
    n.stage, CAST(n.priority AS BIGINT) AS priority, n.holdout, n.expected_value, n.segment,
    n.risk_band, n.message, n.edited_message, n.edited_by, n.edited_at, n.contact_role,
    n.contact_name, n.send_after, n.expires_at, n.snoozed_until, n.reason, n.probability,
    n.created_at, n.updated_at, n.decided_by, n.decided_at, n.decision_reason";

/// The customer behind a nudge.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct CustomerFacts {
    pub id: i64,
    pub external_id: String,
    pub signup_date: NaiveDate,
    pub plan: String,
    pub monthly_charge: f64,
    pub contract_type: String,
    pub contract_end: Option<NaiveDate>,
    pub preferred_channel: String,
    pub churned_on: Option<NaiveDate>,
    pub consent_email: bool,
    pub consent_sms: bool,
    pub consent_phone: bool,
    pub consent_post: bool,
}

impl CustomerFacts {
    /// The channels the customer agreed to be contacted on, in words.
    pub fn consented(&self) -> Vec<&'static str> {
        [
            (self.consent_email, "email"),
            (self.consent_sms, "text message"),
            (self.consent_phone, "phone"),
            (self.consent_post, "post"),
        ]
        .into_iter()
        .filter_map(|(yes, channel)| yes.then_some(channel))
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct TimelineEvent {
    pub id: i64,
    pub kind: String,
    pub occurred_at: i64,
    pub value: Option<f64>,
    pub source: String,
}

/// A customer's score in one run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScorePoint {
    pub run_id: i64,
    /// When the run started.
    pub scored_at: i64,
    pub probability: f64,
    pub model_version: String,
    pub drivers: Vec<crate::model::Driver>,
}

/// The complaints in a customer's complaint events (`kind` the meaning's name), by the one
/// definition of a complaint's lifecycle (`domain::complaint`).
pub fn complaints_from_events(events: &[TimelineEvent]) -> Vec<Complaint> {
    lifecycle(events.iter().filter_map(|e| {
        let meaning: Meaning = e.kind.parse().ok()?;
        Some(ComplaintEvent {
            id: e.id,
            at: e.occurred_at,
            step: Step::of(meaning)?,
            satisfaction: e.value,
        })
    }))
}

/// A reviewer's decision on a proposed nudge.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject {
        reason: String,
    },
    /// Back in the queue at `until` (unix seconds).
    Snooze {
        until: i64,
    },
}

impl Decision {
    pub fn status(&self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject { .. } => "rejected",
            Decision::Snooze { .. } => "snoozed",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Decision::Reject { reason } => Some(reason),
            _ => None,
        }
    }

    fn until(&self) -> Option<i64> {
        match self {
            Decision::Snooze { until } => Some(*until),
            _ => None,
        }
    }

    fn after(&self, actor: &str) -> serde_json::Value {
        serde_json::json!({
            "status": self.status(),
            "decided_by": actor,
            "decision_reason": self.reason(),
            "snoozed_until": self.until(),
        })
    }
}

/// Why a decision was not made; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Refused {
    /// No nudge has these ids.
    NotFound(Vec<i64>),
    /// These are no longer proposed: (id, current status). A decision is never overwritten.
    NotProposed(Vec<(i64, String)>),
}

/// Counts for the overview page.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Overview {
    pub active_customers: i64,
    /// The latest finished full scoring run, if any: the figures are every customer's
    /// current score, from it or from a re-score after it (as planning reads them).
    pub run_id: Option<i64>,
    pub run_as_of: Option<NaiveDate>,
    /// Customers with a current score, and those at risk.
    pub scored: i64,
    pub at_risk: i64,
    /// Monthly revenue of every scored customer, and of those at risk.
    pub monthly_revenue: f64,
    pub monthly_revenue_at_risk: f64,
    /// Finished re-scores after the full run, and the customers whose current score one
    /// of them gave.
    pub rescores_since: i64,
    pub rescored_customers: i64,
    /// The latest of those re-scores: when it finished and how many customers it scored
    /// (0 when nobody's activity had changed).
    pub latest_rescore: Option<(i64, i64)>,
    /// Shares of the full run's scores in ten equal-width bins.
    pub score_shares: Vec<f64>,
    pub customers_with_open_complaints: i64,
    /// The most valuable of them, at most [`OVERVIEW_PROBLEMS`].
    pub open_problems: Vec<OpenProblem>,
    /// (stage, status, count) of nudges queued since `week_start`.
    pub week: Vec<(String, String, i64)>,
    pub week_start: i64,
    /// (status, count) of every nudge.
    pub by_status: Vec<(String, i64)>,
    /// Sum of value at risk over proposed nudges.
    pub proposed_value: f64,
}

/// Customers with an unresolved complaint the overview lists.
pub const OVERVIEW_PROBLEMS: usize = 10;

/// One customer with an unresolved complaint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct OpenProblem {
    pub customer_id: i64,
    pub external_id: String,
    /// When the oldest unresolved complaint was opened.
    pub opened_at: i64,
    /// How many of the customer's complaints are unresolved.
    pub complaints_open: i64,
    pub monthly_charge: f64,
}

/// A score of a run, for the API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunScore {
    /// The customer's number in attune: the cursor of [`Db::run_scores_page`].
    #[serde(skip)]
    pub customer_id: i64,
    pub run_id: i64,
    pub customer: String,
    pub probability: f64,
    /// When the run started.
    pub scored_at: i64,
    pub model_version: String,
    /// The day the run scored as of.
    pub as_of: chrono::NaiveDate,
    pub drivers: Vec<crate::model::Driver>,
}

#[derive(sqlx::FromRow)]
struct RunScoreRow {
    customer_id: i64,
    run_id: i64,
    customer: String,
    probability: f64,
    scored_at: i64,
    model_version: String,
    as_of: chrono::NaiveDate,
    drivers: Vec<u8>,
}

/// A nudge as written by [`Db::insert_review_nudges`] (benchmarks and fixtures): every
/// column the playbook fills. Only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq)]
pub struct SeedNudge {
    pub customer_id: i64,
    pub kind: String,
    pub occasion: String,
    pub channel: String,
    pub status: String,
    pub stage: String,
    pub priority: i32,
    pub expected_value: Option<f64>,
    pub segment: Option<String>,
    pub risk_band: Option<String>,
    pub message: Option<String>,
    pub contact_name: Option<String>,
    pub reason: serde_json::Value,
    pub probability: Option<f64>,
    pub created_at: i64,
}

/// Adds the filter's conditions (on alias `n`) to a query being built.
macro_rules! push_filter {
    ($q:expr, $f:expr) => {{
        let f: &QueueFilter = $f;
        $q.push(" AND n.status = ").push_bind(f.status.clone());
        for (col, v) in [
            ("kind", &f.rule),
            ("stage", &f.stage),
            ("channel", &f.channel),
            ("risk_band", &f.risk_band),
            ("segment", &f.segment),
        ] {
            if let Some(v) = v {
                $q.push(format!(" AND n.{col} = ")).push_bind(v.clone());
            }
        }
        if let Some(from) = f.from {
            $q.push(" AND n.created_at >= ").push_bind(day_start(from));
        }
        if let Some(to) = f.to {
            $q.push(" AND n.created_at < ")
                .push_bind(day_start(to) + 86_400);
        }
    }};
}

impl Db {
    /// Whether the database answers, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Refreshes the query planner's statistics after a large load.
    pub async fn analyze(&self) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query("ANALYZE").execute(p).await?;
        });
        Ok(())
    }

    /// One page of the queue after `after`, and the cursor of the next page if there is one.
    pub async fn queue_page(
        &self,
        filter: &QueueFilter,
        after: Option<QueueCursor>,
        limit: i64,
    ) -> Result<(Vec<ReviewNudge>, Option<QueueCursor>)> {
        let limit = limit.max(1);
        let mut rows: Vec<ReviewNudge> = Vec::new();
        // Rows with a value at risk, largest first.
        if after.is_none_or(|c| c.expected_value.is_some()) {
            let got = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(format!(
                    "SELECT {COLUMNS} FROM (SELECT * FROM nudges n WHERE n.expected_value IS NOT NULL"
                ));
                push_filter!(q, filter);
                if let Some(QueueCursor { expected_value: Some(v), id }) = after {
                    q.push(" AND n.expected_value <= ").push_bind(v);
                    q.push(" AND (n.expected_value < ").push_bind(v);
                    q.push(" OR n.id > ").push_bind(id).push(")");
                }
                q.push(" ORDER BY n.expected_value DESC, n.id LIMIT ").push_bind(limit + 1);
                q.push(") n JOIN customers c ON c.id = n.customer_id ORDER BY n.expected_value DESC, n.id");
                q.build_query_as::<ReviewNudge>().fetch_all(p).await?
            });
            rows = got;
        }
        // Then rows without one, by id.
        if (rows.len() as i64) <= limit {
            let want = limit + 1 - rows.len() as i64;
            let got = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(format!(
                    "SELECT {COLUMNS} FROM (SELECT * FROM nudges n WHERE n.expected_value IS NULL"
                ));
                push_filter!(q, filter);
                if let Some(QueueCursor { expected_value: None, id }) = after {
                    q.push(" AND n.id > ").push_bind(id);
                }
                q.push(" ORDER BY n.id LIMIT ").push_bind(want);
                q.push(") n JOIN customers c ON c.id = n.customer_id ORDER BY n.id");
                q.build_query_as::<ReviewNudge>().fetch_all(p).await?
            });
            rows.extend(got);
        }
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| QueueCursor {
                expected_value: r.expected_value,
                id: r.id,
            })
        } else {
            None
        };
        Ok((rows, next))
    }

    /// How many nudges of `status` each rule has, by rule name.
    pub async fn rule_counts(&self, status: &str) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT kind, COUNT(*) FROM nudges WHERE status = $1 GROUP BY kind ORDER BY kind";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(status).fetch_all(p).await?))
    }

    /// The distinct values of a filterable column among nudges of `status`, for the
    /// queue's filter menus. `column` is one of stage, channel, risk_band, segment.
    pub async fn filter_values(&self, column: &str) -> Result<Vec<String>> {
        let col = match column {
            "stage" => "stage",
            "channel" => "channel",
            "risk_band" => "risk_band",
            "segment" => "segment",
            _ => return Ok(Vec::new()),
        };
        // At most a few hundred distinct labels are expected; the limit keeps a bad
        // dataset from bloating the page.
        let sql = format!(
            "SELECT DISTINCT {col} FROM nudges WHERE {col} IS NOT NULL ORDER BY {col} LIMIT 200"
        );
        let rows: Vec<(String,)> = on_pool!(self, p =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    /// How many nudges the filter selects (still proposed and with id <= `max_id` when
    /// given), and the largest id among them.
    pub async fn count_selection(
        &self,
        filter: &QueueFilter,
        max_id: Option<i64>,
    ) -> Result<(i64, Option<i64>)> {
        let row: (i64, Option<i64>) = on_pool!(self, p => {
            let mut q = sqlx::QueryBuilder::new("SELECT COUNT(*), MAX(n.id) FROM nudges n WHERE 1 = 1");
            push_filter!(q, filter);
            if let Some(m) = max_id {
                q.push(" AND n.id <= ").push_bind(m);
            }
            q.build_query_as().fetch_one(p).await?
        });
        Ok(row)
    }

    pub async fn review_nudge(&self, id: i64) -> Result<Option<ReviewNudge>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM nudges n JOIN customers c ON c.id = n.customer_id WHERE n.id = $1"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(id).fetch_optional(p).await?),
        )
    }

    /// Every nudge of a list of ids that exists, in no particular order.
    pub async fn review_nudges(&self, ids: &[i64]) -> Result<Vec<ReviewNudge>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(BATCH_ROWS) {
            let got = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(format!(
                    "SELECT {COLUMNS} FROM nudges n JOIN customers c ON c.id = n.customer_id WHERE n.id IN ("
                ));
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build_query_as::<ReviewNudge>().fetch_all(p).await?
            });
            out.extend(got);
        }
        Ok(out)
    }

    pub async fn customer_facts(&self, customer_id: i64) -> Result<Option<CustomerFacts>> {
        let sql = "SELECT id, external_id, signup_date, plan, monthly_charge, contract_type, contract_end,
                   preferred_channel, churned_on, consent_email, consent_sms, consent_phone, consent_post
                   FROM customers WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(customer_id).fetch_optional(p).await?))
    }

    pub async fn customer_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<CustomerFacts>> {
        let sql = "SELECT id, external_id, signup_date, plan, monthly_charge, contract_type, contract_end,
                   preferred_channel, churned_on, consent_email, consent_sms, consent_phone, consent_post
                   FROM customers WHERE external_id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(external_id).fetch_optional(p).await?))
    }

    /// The customer's latest events, newest first.
    pub async fn customer_events(
        &self,
        customer_id: i64,
        limit: i64,
    ) -> Result<Vec<TimelineEvent>> {
        let Some((first, last)) = self.event_days().await? else {
            return Ok(Vec::new());
        };
        // Events are keyed by day first: one seek per day for this customer.
        let sql = format!(
            "SELECT id, {} AS kind, occurred_at, value, source FROM events
             WHERE {} AND customer_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
            self.kind_name("kind"),
            super::days_in("day", first, last)
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(customer_id).bind(limit).fetch_all(p).await?),
        )
    }

    /// The customer's complaints, oldest first, with where each stands.
    pub async fn customer_complaints(&self, customer_id: i64) -> Result<Vec<Complaint>> {
        let Some((first, last)) = self.event_days().await? else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT id, {} AS kind, occurred_at, value, source FROM events
             WHERE {} AND customer_id = $1 AND {}
             ORDER BY occurred_at, id",
            self.kind_meaning("kind"),
            super::days_in("day", first, last),
            self.kinds_meaning("kind", &Meaning::COMPLAINTS),
        );
        let events: Vec<TimelineEvent> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(customer_id).fetch_all(p).await?);
        Ok(complaints_from_events(&events))
    }

    /// The customer's nudges, newest first.
    pub async fn customer_nudges(&self, customer_id: i64, limit: i64) -> Result<Vec<ReviewNudge>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM nudges n JOIN customers c ON c.id = n.customer_id
             WHERE n.customer_id = $1 ORDER BY n.created_at DESC, n.id DESC LIMIT $2"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(customer_id).bind(limit).fetch_all(p).await?),
        )
    }

    /// The customer's latest scores, newest run first. Scores are indexed by run, then
    /// customer: the runs drive the join, newest first, one index seek each, and the
    /// walk stops once `limit` are found (`+r.id` keeps SQLite's planner from scanning
    /// the scores index instead).
    pub async fn customer_scores(&self, customer_id: i64, limit: i64) -> Result<Vec<ScorePoint>> {
        let sql = "SELECT s.run_id, r.started_at, s.probability, r.model_version, s.drivers
                   FROM scoring_runs r JOIN scores s ON s.run_id = +r.id AND s.customer_id = $1
                   ORDER BY r.id DESC LIMIT $2";
        let rows: Vec<(i64, i64, f64, String, Vec<u8>)> = on_pool!(self, p => sqlx::query_as(sql).bind(customer_id).bind(limit).fetch_all(p).await?);
        let keys = self.driver_keys(rows.iter().map(|r| r.0)).await?;
        rows.into_iter()
            .map(|(run_id, scored_at, probability, model_version, drivers)| {
                Ok(ScorePoint {
                    run_id,
                    scored_at,
                    probability,
                    model_version,
                    drivers: keys.drivers(run_id, &drivers)?,
                })
            })
            .collect()
    }

    /// Audit entries about one subject (`nudge:12`), newest first.
    pub async fn audit_for(&self, subject: &str, limit: i64) -> Result<Vec<super::AuditEntry>> {
        let sql = "SELECT id, at, actor, action, subject, detail FROM audit_log WHERE subject = $1 ORDER BY id DESC LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(subject).bind(limit).fetch_all(p).await?))
    }

    /// A page of the audit log, newest first, before entry `before` (exclusive), optionally
    /// only one actor's, one action prefix (`nudge.`) or one subject.
    pub async fn audit_page(
        &self,
        before: Option<i64>,
        limit: i64,
        actor: Option<&str>,
        action_prefix: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Vec<super::AuditEntry>> {
        Ok(on_pool!(self, p => {
            let mut q = sqlx::QueryBuilder::new("SELECT id, at, actor, action, subject, detail FROM audit_log WHERE 1 = 1");
            if let Some(b) = before {
                q.push(" AND id < ").push_bind(b);
            }
            if let Some(a) = actor {
                q.push(" AND actor = ").push_bind(a.to_owned());
            }
            if let Some(a) = action_prefix {
                q.push(" AND action LIKE ").push_bind(format!("{}%", a.replace(['%', '_'], "")));
            }
            if let Some(s) = subject {
                q.push(" AND subject = ").push_bind(s.to_owned());
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            q.build_query_as::<super::AuditEntry>().fetch_all(p).await?
        }))
    }

    /// Saves a reviewer's edit of a proposed nudge's message beside the planned one.
    pub async fn edit_nudge_message(
        &self,
        id: i64,
        text: &str,
        actor: &str,
        via: &str,
    ) -> Result<std::result::Result<(), Refused>> {
        self.decide_one(id, None, Some(text), actor, via).await
    }

    /// Decides on one proposed nudge, after saving an edit of its message if given. The
    /// edit, the decision and their audit entries commit together, or nothing changes.
    pub async fn decide_one(
        &self,
        id: i64,
        decision: Option<&Decision>,
        edit: Option<&str>,
        actor: &str,
        via: &str,
    ) -> Result<std::result::Result<(), Refused>> {
        let now = now_secs();
        let out = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let before: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT status, message, edited_message FROM nudges WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((status, message, edited)) = before else {
                return Ok(Err(Refused::NotFound(vec![id])));
            };
            if status != "proposed" {
                return Ok(Err(Refused::NotProposed(vec![(id, status)])));
            }
            let subject = format!("nudge:{id}");
            if let Some(text) = edit {
                let n = sqlx::query(
                    "UPDATE nudges SET edited_message = $1, edited_by = $2, edited_at = $3, updated_at = $3
                     WHERE id = $4 AND status = 'proposed'",
                )
                .bind(text)
                .bind(actor)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    return Ok(Err(Refused::NotProposed(vec![(id, "decided meanwhile".into())])));
                }
                audit_in_tx!(tx, now, actor, "nudge.edited", subject.clone(), serde_json::json!({
                    "before": {"message": edited.as_deref().or(message.as_deref()), "planned_message": message},
                    "after": {"message": text, "planned_message": message},
                    "via": via,
                }));
            }
            if let Some(d) = decision {
                let n = sqlx::query(
                    "UPDATE nudges SET status = $1, decided_by = $2, decided_at = $3, decision_reason = $4,
                     snoozed_until = $5, updated_at = $3 WHERE id = $6 AND status = 'proposed'",
                )
                .bind(d.status())
                .bind(actor)
                .bind(now)
                .bind(d.reason())
                .bind(d.until())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    return Ok(Err(Refused::NotProposed(vec![(id, "decided meanwhile".into())])));
                }
                audit_in_tx!(tx, now, actor, format!("nudge.{}", d.status()), subject, serde_json::json!({
                    "before": {"status": "proposed"},
                    "after": d.after(actor),
                    "via": via,
                }));
            }
            tx.commit().await?;
            Ok(())
        });
        Ok(out)
    }

    /// Decides on every one of `ids` or on none: if any is unknown or no longer proposed,
    /// nothing changes and the refusal names them. Returns the ids decided.
    pub async fn decide_all(
        &self,
        ids: &[i64],
        decision: &Decision,
        actor: &str,
        via: &str,
    ) -> Result<std::result::Result<Vec<i64>, Refused>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let now = now_secs();
        let decided = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let mut decided: Vec<i64> = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("UPDATE nudges SET status = ");
                q.push_bind(decision.status())
                    .push(", decided_by = ").push_bind(actor.to_owned())
                    .push(", decided_at = ").push_bind(now)
                    .push(", decision_reason = ").push_bind(decision.reason().map(str::to_owned))
                    .push(", snoozed_until = ").push_bind(decision.until())
                    .push(", updated_at = ").push_bind(now)
                    .push(" WHERE status = 'proposed' AND id IN ");
                super::push_ids(&mut q, chunk);
                q.push(" RETURNING id");
                let got: Vec<(i64,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                decided.extend(got.into_iter().map(|(id,)| id));
            }
            if decided.len() == ids.len() {
                audit_rows!(tx, now, actor, decision, &decided, serde_json::json!({"via": via}));
                tx.commit().await?;
                Some(decided)
            } else {
                tx.rollback().await?;
                None
            }
        });
        match decided {
            Some(mut d) => {
                d.sort_unstable();
                Ok(Ok(d))
            }
            None => {
                // Say which ones stood in the way; nothing was changed.
                let found = self.review_nudges(&ids).await?;
                let mut not_found: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|id| !found.iter().any(|n| n.id == *id))
                    .collect();
                not_found.sort_unstable();
                if !not_found.is_empty() {
                    return Ok(Err(Refused::NotFound(not_found)));
                }
                let mut taken: Vec<(i64, String)> = found
                    .into_iter()
                    .filter(|n| n.status != "proposed")
                    .map(|n| (n.id, n.status))
                    .collect();
                taken.sort();
                Ok(Err(Refused::NotProposed(taken)))
            }
        }
    }

    /// Decides on every proposed nudge the filter selects with id <= `max_id` (the largest
    /// id the person confirmed), at most `BULK_MAX`. Nudges decided by someone else since
    /// the confirmation are left alone. Returns the ids decided.
    pub async fn decide_selection(
        &self,
        filter: &QueueFilter,
        max_id: i64,
        decision: &Decision,
        actor: &str,
        via: &str,
    ) -> Result<Vec<i64>> {
        let mut filter = filter.clone();
        filter.status = "proposed".into();
        let now = now_secs();
        let selection = serde_json::to_value(&filter).unwrap_or_default();
        let mut decided = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let mut q = sqlx::QueryBuilder::new("UPDATE nudges SET status = ");
            q.push_bind(decision.status())
                .push(", decided_by = ").push_bind(actor.to_owned())
                .push(", decided_at = ").push_bind(now)
                .push(", decision_reason = ").push_bind(decision.reason().map(str::to_owned))
                .push(", snoozed_until = ").push_bind(decision.until())
                .push(", updated_at = ").push_bind(now)
                .push(" WHERE status = 'proposed' AND id IN (SELECT n.id FROM nudges n WHERE n.id <= ")
                .push_bind(max_id);
            push_filter!(q, &filter);
            q.push(" ORDER BY n.id LIMIT ").push_bind(BULK_MAX).push(") RETURNING id");
            let got: Vec<(i64,)> = q.build_query_as().fetch_all(&mut *tx).await?;
            let decided: Vec<i64> = got.into_iter().map(|(id,)| id).collect();
            audit_rows!(tx, now, actor, decision, &decided,
                serde_json::json!({"via": via, "bulk": {"selection": selection, "max_id": max_id}}));
            tx.commit().await?;
            decided
        });
        decided.sort_unstable();
        Ok(decided)
    }

    /// Counts for the overview page. `threshold` is the churn probability at which a
    /// customer counts as at risk; `week_start` (unix seconds) begins "this week".
    pub async fn overview(&self, threshold: f64, week_start: i64) -> Result<Overview> {
        let mut o = Overview {
            week_start,
            ..Default::default()
        };
        let run = self.latest_full_scoring_run().await?;
        let base = run.as_ref().map_or(0, |r| r.id);
        on_pool!(self, p => {
            let (active,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM customers WHERE churned_on IS NULL")
                .fetch_one(p).await?;
            o.active_customers = active;
            if let Some(run) = &run {
                let (scored, at_risk, revenue, revenue_at_risk): (i64, Option<i64>, Option<f64>, Option<f64>) = sqlx::query_as(
                    "SELECT COUNT(*),
                            SUM(CASE WHEN s.probability >= $2 THEN 1 ELSE 0 END),
                            SUM(c.monthly_charge),
                            SUM(CASE WHEN s.probability >= $2 THEN c.monthly_charge ELSE 0.0 END)
                     FROM scores s JOIN customers c ON c.id = s.customer_id WHERE s.run_id = $1",
                )
                .bind(run.id)
                .bind(threshold)
                .fetch_one(p)
                .await?;
                o.run_id = Some(run.id);
                o.run_as_of = Some(run.as_of);
                o.scored = scored;
                o.at_risk = at_risk.unwrap_or(0);
                o.monthly_revenue = revenue.unwrap_or(0.0);
                o.monthly_revenue_at_risk = revenue_at_risk.unwrap_or(0.0);
            }
            // Re-scores after the full run replace their customers' scores: newest first
            // per customer, beside the full run's score it replaces.
            let later: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT finished_at, customers FROM scoring_runs
                 WHERE id > $1 AND finished_at IS NOT NULL ORDER BY id",
            )
            .bind(base)
            .fetch_all(p)
            .await?;
            o.rescores_since = later.len() as i64;
            o.latest_rescore = later.last().copied();
            let rows: Vec<(i64, f64, f64, Option<f64>)> = sqlx::query_as(
                "SELECT s.customer_id, s.probability, c.monthly_charge,
                        (SELECT f.probability FROM scores f WHERE f.run_id = $1 AND f.customer_id = s.customer_id)
                 FROM scores s JOIN customers c ON c.id = s.customer_id
                 WHERE s.run_id > $1 AND s.run_id IN (SELECT id FROM scoring_runs WHERE finished_at IS NOT NULL)
                 ORDER BY s.customer_id, s.run_id DESC",
            )
            .bind(base)
            .fetch_all(p)
            .await?;
            let mut last = None;
            for (customer, probability, charge, replaced) in rows {
                if last == Some(customer) {
                    continue; // an older re-score of the same customer
                }
                last = Some(customer);
                o.rescored_customers += 1;
                let risky = |p: f64| p >= threshold;
                match replaced {
                    Some(old) if risky(old) => {
                        o.at_risk -= 1;
                        o.monthly_revenue_at_risk -= charge;
                    }
                    Some(_) => {}
                    None => {
                        o.scored += 1;
                        o.monthly_revenue += charge;
                    }
                }
                if risky(probability) {
                    o.at_risk += 1;
                    o.monthly_revenue_at_risk += charge;
                }
            }
            o.week = sqlx::query_as(
                "SELECT stage, status, COUNT(*) FROM nudges WHERE created_at >= $1
                 GROUP BY stage, status ORDER BY stage, status",
            )
            .bind(week_start)
            .fetch_all(p)
            .await?;
            o.by_status = sqlx::query_as("SELECT status, COUNT(*) FROM nudges GROUP BY status ORDER BY status")
                .fetch_all(p).await?;
            let (value,): (Option<f64>,) = sqlx::query_as(
                "SELECT SUM(expected_value) FROM nudges WHERE status = 'proposed'",
            )
            .fetch_one(p)
            .await?;
            o.proposed_value = value.unwrap_or(0.0);
        });
        if let Some(run) = &run {
            o.score_shares = self.score_distribution(run.id).await?.unwrap_or_default();
        }
        let mut problems = self.open_problems(i64::MAX).await?;
        o.customers_with_open_complaints = problems.len() as i64;
        problems.truncate(OVERVIEW_PROBLEMS);
        o.open_problems = problems;
        Ok(o)
    }

    /// Active customers with an unresolved complaint, most valuable first, at most
    /// `limit`: every complaint event of active customers, paired by the one definition of
    /// a complaint's lifecycle (`domain::complaint::lifecycle`), never by a rule of SQL's own.
    pub async fn open_problems(&self, limit: i64) -> Result<Vec<OpenProblem>> {
        let sql = format!(
            "SELECT e.customer_id, c.external_id, c.monthly_charge, e.id, {} AS kind, e.occurred_at, e.value
             FROM events e JOIN customers c ON c.id = e.customer_id AND c.churned_on IS NULL
             WHERE {}",
            self.kind_meaning("e.kind"),
            self.kinds_meaning("e.kind", &Meaning::COMPLAINTS),
        );
        type Row = (i64, String, f64, i64, String, i64, Option<f64>);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(p).await?);
        let mut by_customer: std::collections::BTreeMap<i64, (String, f64, Vec<ComplaintEvent>)> =
            Default::default();
        for (customer_id, external_id, charge, id, kind, at, value) in rows {
            let Some(step) = kind.parse::<Meaning>().ok().and_then(Step::of) else {
                continue;
            };
            by_customer
                .entry(customer_id)
                .or_insert_with(|| (external_id, charge, Vec::new()))
                .2
                .push(ComplaintEvent {
                    id,
                    at,
                    step,
                    satisfaction: value,
                });
        }
        let mut open: Vec<OpenProblem> = by_customer
            .into_iter()
            .filter_map(|(customer_id, (external_id, monthly_charge, events))| {
                let complaints = lifecycle(events);
                let oldest = oldest_open(&complaints)?;
                Some(OpenProblem {
                    customer_id,
                    external_id,
                    opened_at: oldest.opened_at,
                    complaints_open: complaints.iter().filter(|c| c.open).count() as i64,
                    monthly_charge,
                })
            })
            .collect();
        open.sort_by(|a, b| {
            b.monthly_charge
                .total_cmp(&a.monthly_charge)
                .then(a.customer_id.cmp(&b.customer_id))
        });
        open.truncate(limit.max(0).try_into().unwrap_or(usize::MAX));
        Ok(open)
    }

    /// A page of one run's scores in customer order, after customer `after` (the
    /// customer's number in attune, the page's cursor).
    pub async fn run_scores_page(
        &self,
        run_id: i64,
        after: Option<i64>,
        min_probability: Option<f64>,
        limit: i64,
    ) -> Result<Vec<RunScore>> {
        let rows: Vec<RunScoreRow> = on_pool!(self, p => {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT s.customer_id, s.run_id, c.external_id AS customer, s.probability, r.started_at AS scored_at, r.model_version, r.as_of, s.drivers
                 FROM scores s JOIN customers c ON c.id = s.customer_id JOIN scoring_runs r ON r.id = s.run_id WHERE s.run_id = ",
            );
            q.push_bind(run_id);
            if let Some(a) = after {
                q.push(" AND s.customer_id > ").push_bind(a);
            }
            if let Some(m) = min_probability {
                q.push(" AND s.probability >= ").push_bind(m);
            }
            q.push(" ORDER BY s.customer_id LIMIT ").push_bind(limit);
            q.build_query_as().fetch_all(p).await?
        });
        let keys = self.driver_keys([run_id]).await?;
        rows.into_iter()
            .map(|r| {
                Ok(RunScore {
                    customer_id: r.customer_id,
                    run_id: r.run_id,
                    customer: r.customer,
                    probability: r.probability,
                    scored_at: r.scored_at,
                    model_version: r.model_version,
                    as_of: r.as_of,
                    drivers: keys.drivers(r.run_id, &r.drivers)?,
                })
            })
            .collect()
    }

    pub async fn scoring_runs(&self, limit: i64) -> Result<Vec<super::ScoringRun>> {
        let sql = format!(
            "SELECT {} FROM scoring_runs ORDER BY id DESC LIMIT $1",
            super::scores::RUN_COLUMNS
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(limit).fetch_all(p).await?),
        )
    }

    /// Writes nudges with every review column filled, in batched multi-row inserts, for
    /// benchmarks and test fixtures. Existing (customer, kind, occasion) are skipped.
    #[cfg(any(test, feature = "testing"))]
    pub async fn insert_review_nudges(&self, nudges: &[SeedNudge]) -> Result<u64> {
        let mut inserted = 0;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in nudges.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO nudges (customer_id, kind, occasion, channel, status, stage, priority,
                     expected_value, segment, risk_band, message, contact_name, reason, probability,
                     created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, n| {
                    b.push_bind(n.customer_id)
                        .push_bind(n.kind.as_str())
                        .push_bind(n.occasion.as_str())
                        .push_bind(n.channel.as_str())
                        .push_bind(n.status.as_str())
                        .push_bind(n.stage.as_str())
                        .push_bind(n.priority)
                        .push_bind(n.expected_value)
                        .push_bind(n.segment.as_deref())
                        .push_bind(n.risk_band.as_deref())
                        .push_bind(n.message.as_deref())
                        .push_bind(n.contact_name.as_deref())
                        .push_bind(Json(&n.reason))
                        .push_bind(n.probability)
                        .push_bind(n.created_at)
                        .push_bind(n.created_at);
                });
                q.push(" ON CONFLICT (customer_id, kind, occasion) DO NOTHING");
                inserted += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for c in [
            QueueCursor {
                expected_value: Some(1234.5678),
                id: 42,
            },
            QueueCursor {
                expected_value: Some(-0.1),
                id: 1,
            },
            QueueCursor {
                expected_value: Some(1e-300),
                id: 7,
            },
            QueueCursor {
                expected_value: None,
                id: 9,
            },
        ] {
            assert_eq!(QueueCursor::decode(&c.encode()), Ok(c));
        }
        for bad in ["", "12", "x~1", "1~x", "NaN~1", "inf~2", "1~2~3"] {
            let e = QueueCursor::decode(bad).unwrap_err();
            assert!(e.contains("is not a cursor"), "{bad}: {e}");
        }
    }

    fn ev(kind: &str, at: i64, value: Option<f64>) -> TimelineEvent {
        TimelineEvent {
            id: at,
            kind: kind.into(),
            occurred_at: at,
            value,
            source: "crm".into(),
        }
    }

    #[test]
    fn complaints_pair_openings_with_resolutions() {
        let c = complaints_from_events(&[
            ev("complaint_opened", 1, None),
            ev("usage", 2, Some(3.0)),
            ev("complaint_resolved", 3, Some(4.0)),
            ev("complaint_opened", 4, None),
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].open, c[0].resolved_at, c[0].satisfaction),
            (false, Some(3), Some(4.0))
        );
        assert_eq!((c[1].open, c[1].resolved_at), (true, None));
        // A reopening applies to the latest closed complaint.
        let c = complaints_from_events(&[
            ev("complaint_opened", 1, None),
            ev("complaint_resolved", 2, Some(2.0)),
            ev("complaint_reopened", 3, None),
        ]);
        assert_eq!((c.len(), c[0].open, c[0].reopened), (1, true, 1));
    }
}
