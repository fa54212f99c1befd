//! What the playbook reads and writes: a page of customers with their score, the events
//! triggers look at, usage, contacts, the nudges already stored, batched changes to
//! them, and the cohorts behind `report uplift`. Pages are id ranges, so every query is
//! a range scan on an index that starts with the customer id.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::customers::CustomerRow;
use super::{BATCH_ROWS, Db, Result, StoreError, now_secs, on_pool};
use crate::domain::{Channel, Consent, Customer, Meaning, NudgeStatus};
use crate::playbook::contacts::ContactRecord;
use crate::playbook::{Change, Contact, EventFact, Existing, RULE_APPROVER};

#[derive(sqlx::FromRow)]
struct PlanningRow {
    #[sqlx(flatten)]
    customer: CustomerRow,
    probability: Option<f64>,
    run_id: Option<i64>,
    drivers: Option<Vec<u8>>,
}

/// A customer as planning reads them: with their score in the run, and the score's
/// drivers as stored (read only for customers who get a nudge).
#[derive(Debug, Clone)]
pub struct PlanningCustomer {
    pub id: i64,
    pub customer: Customer,
    pub probability: Option<f64>,
    pub drivers: Option<super::StoredDrivers>,
}

impl PlanningRow {
    fn into_planning(self) -> Result<PlanningCustomer> {
        let probability = self.probability;
        let drivers = self
            .run_id
            .zip(self.drivers)
            .map(|(run_id, bytes)| super::StoredDrivers { run_id, bytes });
        let (id, customer) = self.customer.into_customer()?;
        Ok(PlanningCustomer {
            id,
            customer,
            probability,
            drivers,
        })
    }
}

const CUSTOMER_COLUMNS: &str = "c.id, c.external_id, c.signup_date, c.plan, c.monthly_charge, \
    c.contract_type, c.contract_end, c.first_invoice_due, c.preferred_channel, c.consent_email, \
    c.consent_sms, c.consent_phone, c.consent_post, c.churned_on, c.attributes";

/// A stored nudge as planning sees it.
#[derive(sqlx::FromRow)]
struct ExistingRow {
    id: i64,
    customer_id: i64,
    kind: String,
    occasion: String,
    status: String,
    priority: i32,
    expected_value: Option<f64>,
    channel: String,
    send_after: Option<i64>,
    planned_at: Option<i64>,
    expires_at: Option<i64>,
    snoozed_until: Option<i64>,
    over_budget: bool,
}

impl ExistingRow {
    fn into_existing(self) -> Result<(i64, Existing)> {
        let status = self
            .status
            .parse::<NudgeStatus>()
            .map_err(|e| StoreError::Data(format!("nudge row {}: status: {e}", self.id)))?;
        Ok((
            self.customer_id,
            Existing {
                id: self.id,
                kind: self.kind,
                occasion: self.occasion,
                status,
                priority: self.priority as i64,
                expected_value: self.expected_value,
                channel: self.channel,
                send_after: self.send_after,
                planned_at: self.planned_at,
                expires_at: self.expires_at,
                snoozed_until: self.snoozed_until,
                over_budget: self.over_budget,
            },
        ))
    }
}

/// A rule's weekly review budget, as marketing set it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ReviewBudget {
    pub rule: String,
    pub weekly: i64,
    pub set_by: String,
    pub set_at: i64,
}

/// One rule's week: what it proposes and what its budget let through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleWeek {
    pub rule: String,
    /// Nudges proposed in the four weeks before this one.
    pub last_four_weeks: i64,
    /// Nudges proposed this week so far.
    pub this_week: i64,
    /// Places of this week's budget taken.
    pub used: i64,
    /// Nudges deferred by the budget, waiting for a place.
    pub waiting: i64,
}

const EXISTING_COLUMNS: &str = "id, customer_id, kind, occasion, status, priority, expected_value, \
    channel, send_after, planned_at, expires_at, snoozed_until, over_budget";

/// The statuses of a nudge that may still go out.
pub const OPEN_STATUSES: &str = "('proposed', 'deferred', 'approved', 'snoozed')";

/// One customer's first nudge of a rule, for `report uplift`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UpliftCohortRow {
    pub kind: String,
    pub customer_id: i64,
    /// The first planning instant of the rule's nudges for the customer.
    pub first_at: i64,
    pub min_holdout: i32,
    pub max_holdout: i32,
    pub churned_on: Option<NaiveDate>,
    /// 1 when a nudge of the rule was delivered to the customer and not reported bounced.
    pub delivered: i32,
}

/// A contact stored or refreshed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContactCounts {
    pub inserted: u64,
    pub updated: u64,
}

/// How planning joins a customer's score: the full run's directly, or the newest of the
/// runs in `from..=to` (a full run and the `changed` runs after it).
fn score_join(basis: Option<(i64, i64)>, from: &str, to: &str) -> String {
    match basis {
        Some((f, t)) if f != t => format!(
            // Scores are indexed by (run, customer): the runs in range drive the lookup,
            // newest first, one seek each. `+r2.id` keeps SQLite (3.51) from carrying the
            // range over to `s2.run_id` and scanning every score of the range for each
            // customer instead: 0.6 s for 200 customers where the seeks take 1 ms, and a
            // planning run's first page of 50,000 took 100-190 s in the daemon.
            "s.customer_id = c.id AND s.run_id = (SELECT r2.id FROM scoring_runs r2 JOIN scores s2 ON s2.run_id = +r2.id AND s2.customer_id = c.id
                     WHERE r2.id BETWEEN {from} AND {to} ORDER BY r2.id DESC LIMIT 1)"
        ),
        _ => format!("s.customer_id = c.id AND s.run_id = {to}"),
    }
}

/// [`Db::planning_page`]'s query: `$1` the day, `$2` the id after which, `$3` the limit,
/// `$4..=$5` the basis's runs.
fn planning_page_sql(basis: Option<(i64, i64)>) -> String {
    format!(
        "SELECT {CUSTOMER_COLUMNS}, s.probability, s.run_id, s.drivers FROM customers c
         LEFT JOIN scores s ON {}
         WHERE c.id > $2 AND c.signup_date <= $1 AND (c.churned_on IS NULL OR c.churned_on > $1)
         ORDER BY c.id LIMIT $3",
        score_join(basis, "$4", "$5")
    )
}

impl Db {
    /// The scores planning reads as of scoring run `run_id`: each customer's newest score
    /// from the latest full run up to it and any `changed` run after that, up to `run_id`.
    /// Returns the range of runs (equal ends for a full run).
    pub async fn score_basis(&self, run_id: Option<i64>) -> Result<Option<(i64, i64)>> {
        let Some(run) = run_id else { return Ok(None) };
        let sql = "SELECT COALESCE(MAX(id), $1) FROM scoring_runs WHERE id <= $1 AND scope = 'full' AND finished_at IS NOT NULL";
        let (full,): (i64,) =
            on_pool!(self, p => sqlx::query_as(sql).bind(run).fetch_one(p).await?);
        Ok(Some((full, run)))
    }

    /// Up to `limit` customers active on `as_of` with ids above `after`, with their
    /// score as of `basis` (see [`Db::score_basis`]; none without a run or a score).
    pub async fn planning_page(
        &self,
        as_of: NaiveDate,
        basis: Option<(i64, i64)>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PlanningCustomer>> {
        let sql = planning_page_sql(basis);
        let (from, to) = basis.unwrap_or((-1, -1));
        if let Db::Sqlite(p, ..) = self {
            // Stepped through SQLite's own API (`raw`): sqlx would hand each row across
            // threads with a wake-up. `?N` is parameter N, as `$N` is above.
            let sql = sql.replace('$', "?");
            let day = as_of.to_string();
            return super::raw::with_scan(p, move |raw| {
                let mut stmt = raw.prepare(&sql)?;
                stmt.bind_text(1, &day)?;
                stmt.bind_i64(2, after)?;
                stmt.bind_i64(3, limit)?;
                stmt.bind_i64(4, from)?;
                stmt.bind_i64(5, to)?;
                let mut out = Vec::with_capacity(limit.clamp(0, 100_000) as usize);
                while stmt.step()? {
                    let (id, customer) = super::customers::raw_customer(&stmt)?.into_customer()?;
                    out.push(PlanningCustomer {
                        id,
                        customer,
                        probability: stmt.opt_f64(15),
                        drivers: stmt.opt_i64(16).zip(stmt.blob(17)).map(|(run_id, b)| {
                            super::StoredDrivers {
                                run_id,
                                bytes: b.to_vec(),
                            }
                        }),
                    });
                }
                Ok(out)
            })
            .await;
        }
        let rows: Vec<PlanningRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(as_of).bind(after).bind(limit).bind(from).bind(to).fetch_all(p).await?);
        rows.into_iter().map(PlanningRow::into_planning).collect()
    }

    /// One customer, active or not, with their score as of `basis`.
    pub async fn planning_customer(
        &self,
        id: i64,
        basis: Option<(i64, i64)>,
    ) -> Result<Option<PlanningCustomer>> {
        let sql = format!(
            "SELECT {CUSTOMER_COLUMNS}, s.probability, s.run_id, s.drivers FROM customers c
             LEFT JOIN scores s ON {} WHERE c.id = $1",
            score_join(basis, "$2", "$3")
        );
        let (from, to) = basis.unwrap_or((-1, -1));
        let row: Option<PlanningRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id).bind(from).bind(to).fetch_optional(p).await?);
        row.map(PlanningRow::into_planning).transpose()
    }

    /// Events triggers look at for customers `first..=last` before `until`: complaint
    /// events since `complaints_from`, and events meaning one of `meanings` since
    /// `recent_from`, in time order per customer, each with its meaning. Events of a kind
    /// that means nothing to the playbook are never read.
    pub async fn planning_events(
        &self,
        first: i64,
        last: i64,
        until: i64,
        complaints_from: i64,
        recent_from: i64,
        meanings: &[Meaning],
    ) -> Result<HashMap<i64, Vec<EventFact>>> {
        let complaints = self.kinds_meaning("kind", &Meaning::COMPLAINTS);
        let recent = self.kinds_meaning("kind", meanings);
        let kind = self.kind_meaning("kind");
        // Events are keyed by day first: each day of the window is one seek for the page.
        let days = super::days_in(
            "day",
            super::events::day_of(complaints_from.min(recent_from)),
            super::events::day_of(until - 1),
        );
        let sql = format!(
            "SELECT id, customer_id, {kind}, occurred_at, value FROM events
             WHERE {days} AND customer_id BETWEEN $1 AND $2 AND occurred_at < $3 AND (
                 ({complaints} AND occurred_at >= $4)
                 OR ({recent} AND occurred_at >= $5))
             ORDER BY customer_id, occurred_at, id"
        );
        type Row = (i64, i64, Option<String>, i64, Option<f64>);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(first).bind(last).bind(until).bind(complaints_from).bind(recent_from).fetch_all(p).await?);
        let mut out: HashMap<i64, Vec<EventFact>> = HashMap::new();
        for (id, customer, kind, at, value) in rows {
            let kind = kind
                .as_deref()
                .unwrap_or_default()
                .parse::<Meaning>()
                .map_err(|e| StoreError::Data(format!("event row {id}: meaning: {e}")))?;
            out.entry(customer).or_default().push(EventFact {
                id,
                kind,
                at,
                value,
            });
        }
        Ok(out)
    }

    /// Usage per month of customers `first..=last` over `[from, until)` (`months` long).
    pub async fn usage_per_month(
        &self,
        first: i64,
        last: i64,
        from: i64,
        until: i64,
        months: f64,
    ) -> Result<HashMap<i64, f64>> {
        let days = super::days_in(
            "day",
            super::events::day_of(from),
            super::events::day_of(until - 1),
        );
        let usage = self.kinds_meaning("kind", &[Meaning::Usage]);
        let sql = format!(
            "SELECT customer_id, SUM(COALESCE(value, 0.0)) FROM events
             WHERE {days} AND customer_id BETWEEN $1 AND $2 AND {usage} AND occurred_at >= $3 AND occurred_at < $4
             GROUP BY customer_id"
        );
        let rows: Vec<(i64, f64)> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(first).bind(last).bind(from).bind(until).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(id, u)| (id, u / months)).collect())
    }

    /// Contacts of customers `first..=last`, by name, with the channels each may be
    /// reached on (consented and with an address).
    pub async fn contacts_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<HashMap<i64, Vec<Contact>>> {
        type Row = (i64, String, String, String, bool, bool, bool, bool);
        let sql = "SELECT customer_id, name, role, preferred_channel, consent_email, consent_sms, consent_phone, consent_post
                   FROM contacts WHERE customer_id BETWEEN $1 AND $2 ORDER BY customer_id, name, id";
        let rows: Vec<Row> =
            on_pool!(self, p => sqlx::query_as(sql).bind(first).bind(last).fetch_all(p).await?);
        let mut out: HashMap<i64, Vec<Contact>> = HashMap::new();
        for (customer, name, role, preferred, email, sms, phone, post) in rows {
            let preferred_channel = preferred.parse::<Channel>().map_err(|e| {
                StoreError::Data(format!(
                    "contact {name:?} of customer {customer}: preferred_channel: {e}"
                ))
            })?;
            out.entry(customer).or_default().push(Contact {
                name,
                role,
                preferred_channel,
                consent: Consent {
                    email,
                    sms,
                    phone,
                    post,
                },
            });
        }
        Ok(out)
    }

    /// Every nudge of customers `first..=last`.
    pub async fn nudges_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<HashMap<i64, Vec<Existing>>> {
        let sql = format!(
            "SELECT {EXISTING_COLUMNS} FROM nudges WHERE customer_id BETWEEN $1 AND $2 ORDER BY customer_id, id"
        );
        if let Db::Sqlite(p, ..) = self {
            // Stepped through SQLite's own API (`raw`), in the column order above.
            let sql = sql.replace('$', "?");
            return super::raw::with_scan(p, move |raw| {
                let mut stmt = raw.prepare(&sql)?;
                stmt.bind_i64(1, first)?;
                stmt.bind_i64(2, last)?;
                let mut out: HashMap<i64, Vec<Existing>> = HashMap::new();
                while stmt.step()? {
                    let id = stmt.i64(0);
                    let text = |i| {
                        stmt.string(i)
                            .map_err(|e| StoreError::Data(format!("nudge row {id}: {e}")))
                    };
                    let row = ExistingRow {
                        id,
                        customer_id: stmt.i64(1),
                        kind: text(2)?,
                        occasion: text(3)?,
                        status: text(4)?,
                        priority: stmt.i64(5) as i32,
                        expected_value: stmt.opt_f64(6),
                        channel: text(7)?,
                        send_after: stmt.opt_i64(8),
                        planned_at: stmt.opt_i64(9),
                        expires_at: stmt.opt_i64(10),
                        snoozed_until: stmt.opt_i64(11),
                        over_budget: stmt.i64(12) != 0,
                    };
                    let (customer, e) = row.into_existing()?;
                    out.entry(customer).or_default().push(e);
                }
                Ok(out)
            })
            .await;
        }
        let rows: Vec<ExistingRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(first).bind(last).fetch_all(p).await?);
        let mut out: HashMap<i64, Vec<Existing>> = HashMap::new();
        for r in rows {
            let (customer, e) = r.into_existing()?;
            out.entry(customer).or_default().push(e);
        }
        Ok(out)
    }

    /// One stored nudge, with its customer.
    pub async fn nudge_for_recheck(&self, id: i64) -> Result<Option<(i64, Existing)>> {
        let sql = format!("SELECT {EXISTING_COLUMNS} FROM nudges WHERE id = $1");
        let row: Option<ExistingRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id).fetch_optional(p).await?);
        row.map(ExistingRow::into_existing).transpose()
    }

    /// Applies planning's changes to stored nudges in one transaction, each only if the
    /// nudge is still in the state planning saw (a reviewer's decision is never
    /// overwritten). Returns how many rows changed.
    pub async fn apply_nudge_changes(&self, changes: &[Change]) -> Result<u64> {
        let _turn = self.bulk_turn().await;
        let now = now_secs();
        let mut done = 0;
        let releases: Vec<(i64, &str, i64)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Release {
                    id,
                    status,
                    send_after,
                } => Some((*id, status.as_str(), *send_after)),
                Change::Defer { id, send_after } => {
                    Some((*id, NudgeStatus::Deferred.as_str(), *send_after))
                }
                _ => None,
            })
            .collect();
        let withdrawals: Vec<(i64, &str, Option<&str>)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Withdraw { id, reason } => {
                    Some((*id, NudgeStatus::Withdrawn.as_str(), Some(reason.as_str())))
                }
                Change::Expire { id } => Some((*id, NudgeStatus::Expired.as_str(), None)),
                _ => None,
            })
            .collect();
        let holds: Vec<(i64, &str)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Hold { id, reason } => Some((*id, reason.as_str())),
                _ => None,
            })
            .collect();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in releases.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("WITH v (id, status, send_after) AS (");
                q.push_values(chunk, |mut b, (id, status, at)| {
                    b.push_bind(*id).push_bind(*status).push_bind(*at);
                });
                // A deferred nudge's only reason is a guardrail's hold, over once it moves.
                q.push(") UPDATE nudges SET status = v.status, send_after = v.send_after, decision_reason = NULL, updated_at = ")
                    .push_bind(now)
                    .push(", decided_by = CASE WHEN v.status = 'approved' THEN ")
                    .push_bind(RULE_APPROVER)
                    .push(" ELSE nudges.decided_by END, decided_at = CASE WHEN v.status = 'approved' THEN ")
                    .push_bind(now)
                    .push(" ELSE nudges.decided_at END FROM v WHERE nudges.id = v.id AND nudges.status = 'deferred'");
                done += q.build().execute(&mut *tx).await?.rows_affected();
            }
            for chunk in withdrawals.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("WITH v (id, status, reason) AS (");
                q.push_values(chunk, |mut b, (id, status, reason)| {
                    b.push_bind(*id).push_bind(*status).push_bind(*reason);
                });
                q.push(") UPDATE nudges SET status = v.status, decision_reason = COALESCE(v.reason, nudges.decision_reason), updated_at = ")
                    .push_bind(now)
                    .push(" FROM v WHERE nudges.id = v.id AND nudges.status IN ")
                    .push(OPEN_STATUSES);
                done += q.build().execute(&mut *tx).await?.rows_affected();
            }
            // Held: deferred with no time and the reason; an approval given before the
            // guardrail applied is taken back (the nudge is reviewed again once released).
            for chunk in holds.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("WITH v (id, reason) AS (");
                q.push_values(chunk, |mut b, (id, reason)| {
                    b.push_bind(*id).push_bind(*reason);
                });
                q.push(") UPDATE nudges SET status = 'deferred', send_after = NULL, decision_reason = v.reason, decided_by = NULL, decided_at = NULL, updated_at = ")
                    .push_bind(now)
                    .push(" FROM v WHERE nudges.id = v.id AND nudges.status IN ")
                    .push(OPEN_STATUSES);
                done += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(done)
    }

    /// Withdraws the open nudges of customers who left on or before `as_of` (or, with
    /// `dry_run`, only counts them). Returns the count per rule.
    pub async fn withdraw_for_departed(
        &self,
        as_of: NaiveDate,
        dry_run: bool,
    ) -> Result<Vec<(String, i64)>> {
        let _turn = self.bulk_turn().await;
        let select = format!(
            "SELECT n.kind, COUNT(*) FROM nudges n JOIN customers c ON c.id = n.customer_id
             WHERE c.churned_on <= $1 AND n.status IN {OPEN_STATUSES} GROUP BY n.kind ORDER BY n.kind"
        );
        let counts: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(select.as_str())).bind(as_of).fetch_all(p).await?);
        if dry_run || counts.is_empty() {
            return Ok(counts);
        }
        let update = format!(
            "UPDATE nudges SET status = 'withdrawn', updated_at = $2,
                 decision_reason = 'its trigger no longer holds: the customer left on ' || CAST(c.churned_on AS TEXT)
             FROM customers c WHERE c.id = nudges.customer_id AND c.churned_on <= $1 AND nudges.status IN {OPEN_STATUSES}"
        );
        on_pool!(self, p => { sqlx::query(sqlx::AssertSqlSafe(update.as_str())).bind(as_of).bind(now_secs()).execute(p).await?; });
        Ok(counts)
    }

    /// Each customer's nudges of each rule, first planning instant and holdout flags,
    /// with the day they left (if they did).
    pub async fn uplift_cohorts(&self) -> Result<Vec<UpliftCohortRow>> {
        let sql =
            "SELECT n.kind, n.customer_id, MIN(COALESCE(n.planned_at, n.created_at)) AS first_at,
                       MIN(CASE WHEN n.holdout THEN 1 ELSE 0 END) AS min_holdout,
                       MAX(CASE WHEN n.holdout THEN 1 ELSE 0 END) AS max_holdout, c.churned_on,
                       MAX(CASE WHEN d.status = 'sent' AND (d.outcome IS NULL OR d.outcome <> 'bounced')
                           THEN 1 ELSE 0 END) AS delivered
                   FROM nudges n JOIN customers c ON c.id = n.customer_id
                   LEFT JOIN deliveries d ON d.nudge_id = n.id
                   GROUP BY n.kind, n.customer_id, c.churned_on ORDER BY n.kind, n.customer_id";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Stores contacts (customer row id, contact), refreshing one with the same customer,
    /// role and name. One transaction.
    pub async fn upsert_contacts(
        &self,
        contacts: &[(i64, ContactRecord)],
    ) -> Result<ContactCounts> {
        let _turn = self.bulk_turn().await;
        let now = now_secs();
        // The last record of a contact wins; a statement may not touch one row twice.
        let mut last: HashMap<(i64, &str, &str), usize> = HashMap::new();
        for (i, (customer, c)) in contacts.iter().enumerate() {
            last.insert((*customer, c.role.as_str(), c.name.as_str()), i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let unique: Vec<&(i64, ContactRecord)> = order.into_iter().map(|i| &contacts[i]).collect();
        let mut counts = ContactCounts {
            inserted: 0,
            updated: (contacts.len() - unique.len()) as u64,
        };
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in unique.chunks(BATCH_ROWS / 2) {
                let mut q = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM contacts WHERE ");
                for (i, &(customer, c)) in chunk.iter().enumerate() {
                    if i > 0 {
                        q.push(" OR ");
                    }
                    q.push("(customer_id = ").push_bind(*customer)
                        .push(" AND role = ").push_bind(c.role.as_str())
                        .push(" AND name = ").push_bind(c.name.as_str()).push(")");
                }
                let (known,): (i64,) = q.build_query_as().fetch_one(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO contacts (customer_id, name, role, email, phone, address, preferred_channel, \
                     consent_email, consent_sms, consent_phone, consent_post, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, &(customer, c)| {
                    b.push_bind(*customer)
                        .push_bind(c.name.as_str())
                        .push_bind(c.role.as_str())
                        .push_bind(c.email.as_deref())
                        .push_bind(c.phone.as_deref())
                        .push_bind(c.address.as_deref())
                        .push_bind(c.preferred_channel.as_str())
                        .push_bind(c.consent.email)
                        .push_bind(c.consent.sms)
                        .push_bind(c.consent.phone)
                        .push_bind(c.consent.post)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (customer_id, role, name) DO UPDATE SET email = excluded.email, phone = excluded.phone, \
                     address = excluded.address, preferred_channel = excluded.preferred_channel, \
                     consent_email = excluded.consent_email, consent_sms = excluded.consent_sms, \
                     consent_phone = excluded.consent_phone, consent_post = excluded.consent_post, updated_at = excluded.updated_at",
                );
                q.build().execute(&mut *tx).await?;
                counts.updated += known as u64;
                counts.inserted += chunk.len() as u64 - known as u64;
            }
            tx.commit().await?;
        });
        Ok(counts)
    }

    /// Every rule's weekly review budget.
    pub async fn review_budgets(&self) -> Result<Vec<ReviewBudget>> {
        let sql = "SELECT rule, weekly, set_by, set_at FROM review_budgets ORDER BY rule";
        Ok(on_pool!(self, p => sqlx::query_as::<_, ReviewBudget>(sql).fetch_all(p).await?))
    }

    /// Sets (or with `None`, removes) a rule's weekly review budget; the next planning run
    /// applies it. Audited.
    pub async fn set_review_budget(&self, rule: &str, weekly: Option<u32>, by: &str) -> Result<()> {
        {
            let _turn = self.write_turn().await;
            let now = now_secs();
            on_pool!(self, p => {
                match weekly {
                    Some(n) => {
                        sqlx::query(
                            "INSERT INTO review_budgets (rule, weekly, set_by, set_at) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (rule) DO UPDATE SET weekly = excluded.weekly, set_by = excluded.set_by, set_at = excluded.set_at",
                        )
                        .bind(rule).bind(n as i64).bind(by).bind(now)
                        .execute(p).await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM review_budgets WHERE rule = $1").bind(rule).execute(p).await?;
                    }
                }
            });
        }
        self.audit(
            by,
            "budget.set",
            &format!("rule:{rule}"),
            &serde_json::json!({"rule": rule, "weekly": weekly}),
        )
        .await
    }

    /// A rule's nudges as its budget sees them in the week starting `week`: proposed ones
    /// not yet counted, this week's, and those waiting. With `budgeted` false, only the
    /// waiting ones (a budget removed lets them all go).
    pub async fn budget_candidates(
        &self,
        rule: &str,
        week: i64,
        budgeted: bool,
    ) -> Result<Vec<crate::playbook::budget::Candidate>> {
        use crate::playbook::budget::{Candidate, Place};
        type Row = (i64, String, Option<f64>, Option<i64>, bool);
        let rows: Vec<Row> = if budgeted {
            let sql = "SELECT id, status, expected_value, budget_week, over_budget FROM nudges
                 WHERE kind = $1 AND (
                     (status = 'proposed' AND budget_week IS NULL)
                     OR budget_week = $2
                     OR (status = 'deferred' AND over_budget))";
            on_pool!(self, p => sqlx::query_as(sql).bind(rule).bind(week).fetch_all(p).await?)
        } else {
            let sql = "SELECT id, status, expected_value, budget_week, over_budget FROM nudges
                 WHERE kind = $1 AND status = 'deferred' AND over_budget";
            on_pool!(self, p => sqlx::query_as(sql).bind(rule).fetch_all(p).await?)
        };
        Ok(rows
            .into_iter()
            .filter_map(|(id, status, expected_value, budget_week, over_budget)| {
                let place = match (status.as_str(), budget_week, over_budget) {
                    ("deferred", _, true) => Place::Waiting,
                    (_, _, true) => return None,
                    ("proposed", None, _) => Place::New,
                    ("proposed", Some(w), _) if w == week => Place::InReview,
                    (_, Some(w), _) if w == week => Place::Used,
                    _ => return None,
                };
                Some(Candidate {
                    id,
                    expected_value,
                    place,
                })
            })
            .collect())
    }

    /// Makes an [`Allotment`](crate::playbook::budget::Allotment) of the week starting
    /// `week`, each change only if the nudge is still as the pass saw it (a reviewer's
    /// decision meanwhile stands). Returns how many nudges changed.
    pub async fn apply_budget(
        &self,
        week: i64,
        a: &crate::playbook::budget::Allotment,
        reason: &str,
    ) -> Result<u64> {
        let _turn = self.bulk_turn().await;
        let now = now_secs();
        let mut done = 0;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in a.admit.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("UPDATE nudges SET budget_week = ");
                q.push_bind(week).push(" WHERE status = 'proposed' AND budget_week IS NULL AND id IN ");
                super::push_ids(&mut q, chunk);
                done += q.build().execute(&mut *tx).await?.rows_affected();
            }
            // Released to planning, which proposes it once the customer's contact cap allows.
            for chunk in a.release.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("UPDATE nudges SET over_budget = ");
                q.push_bind(false)
                    .push(", decision_reason = NULL, budget_week = ").push_bind(week)
                    .push(", send_after = ").push_bind(now)
                    .push(", updated_at = ").push_bind(now)
                    .push(" WHERE status = 'deferred' AND over_budget AND id IN ");
                super::push_ids(&mut q, chunk);
                done += q.build().execute(&mut *tx).await?.rows_affected();
            }
            for chunk in a.defer.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("UPDATE nudges SET status = 'deferred', over_budget = ");
                q.push_bind(true)
                    .push(", budget_week = NULL, send_after = NULL, decision_reason = ").push_bind(reason)
                    .push(", updated_at = ").push_bind(now)
                    .push(" WHERE status = 'proposed' AND id IN ");
                super::push_ids(&mut q, chunk);
                done += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(done)
    }

    /// Rules with nudges waiting for a budget's place.
    pub async fn rules_waiting_for_budget(&self) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT kind FROM nudges WHERE status = 'deferred' AND over_budget ORDER BY kind";
        Ok(on_pool!(self, p => sqlx::query_scalar::<_, String>(sql).fetch_all(p).await?))
    }

    /// Per rule: nudges proposed in the four weeks before `week` and in `week` so far, places
    /// of `week`'s budget taken, and nudges waiting for one.
    pub async fn budget_weeks(&self, week: i64) -> Result<Vec<RuleWeek>> {
        let sql = "SELECT kind,
                SUM(CASE WHEN created_at >= $1 - 2419200 AND created_at < $1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN budget_week = $1 AND NOT over_budget THEN 1 ELSE 0 END),
                SUM(CASE WHEN status = 'deferred' AND over_budget THEN 1 ELSE 0 END)
             FROM nudges WHERE status <> 'holdout' GROUP BY kind ORDER BY kind";
        type Row = (String, i64, i64, i64, i64);
        let rows: Vec<Row> =
            on_pool!(self, p => sqlx::query_as(sql).bind(week).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(
                |(rule, last_four_weeks, this_week, used, waiting)| RuleWeek {
                    rule,
                    last_four_weeks,
                    this_week,
                    used,
                    waiting,
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseUrl;

    /// Planning's read over a full run and the re-scores after it seeks each customer's
    /// score run by run through the (run, customer) index; SQLite 3.51 chose to scan the
    /// whole range of runs per customer when the range reached `scores.run_id`.
    #[tokio::test]
    async fn planning_reads_scores_by_run_and_customer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&DatabaseUrl::Sqlite(dir.path().join("t.db")))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let Db::Sqlite(pool, _) = &db else {
            unreachable!()
        };
        for basis in [Some((1, 3)), Some((2, 2)), None] {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                planning_page_sql(basis).replace('$', "?")
            );
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind("2026-12-06")
                .bind(0i64)
                .bind(10i64)
                .bind(1i64)
                .bind(3i64)
                .fetch_all(pool)
                .await
                .unwrap();
            let plan: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
            assert!(
                plan.iter()
                    .any(|l| l.contains("(run_id=? AND customer_id=?)")),
                "{basis:?}: {plan:#?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|l| l.contains("run_id>?") || l.starts_with("SCAN s")),
                "{basis:?}: {plan:#?}"
            );
        }
    }
}
