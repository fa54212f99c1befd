//! The relationship playbook: which nudges each customer should get, when, on which
//! channel and to whom, and why.
//!
//! Rules come from a file marketing owns (`file`); each looks at one customer's facts
//! (features, score, recent events, contacts) and proposes occasions. Guardrails then
//! apply across all rules: no duplicates, consent and opt-out per channel, preferred
//! channel first, a persistent randomised holdout per rule, the contact cap (lower
//! priority deferred to the next free slot, not dropped), quiet hours in the customer's
//! time zone, expiry, and withdrawal of nudges whose trigger no longer holds.
//!
//! Pure: no I/O and no clock. The caller gathers the facts, passes the planning instant,
//! and stores the decisions. Nothing here sends anything.

pub mod budget;
pub mod contacts;
pub mod file;
pub mod holdout;
pub mod template;
pub mod uplift;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Days, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

pub use crate::domain::complaint::Complaint;
use crate::domain::complaint::{ComplaintEvent, Step};
use crate::domain::{Channel, Consent, Customer, Meaning, NudgeStatus, RuleName};
use crate::features::{FeatureRow, FeatureValue};
pub use file::{
    Action, ChannelPref, CheckError, CheckErrors, Condition, Guardrails, Op, Playbook, Review,
    RiskBand, Rule, Source,
};

/// The nudge channel of a task for a team (not a way of reaching the customer).
pub const TASK_CHANNEL: &str = "task";
/// Who approved a nudge that goes out on the approval of its rule.
pub const RULE_APPROVER: &str = "playbook";
const DAY: i64 = 86_400;

/// Guardrail settings (see `[playbook]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub max_nudges: u32,
    pub window_days: u32,
    pub quiet_start: NaiveTime,
    pub quiet_end: NaiveTime,
    pub default_timezone: Tz,
    pub value_horizon_months: f64,
    pub medium_risk_from: f64,
    pub high_risk_from: f64,
    /// The `{help_url}` placeholder (`[playbook] help_url`).
    pub help_url: Option<String>,
    /// How amounts read in messages and reasons (`[money]`).
    pub currency: crate::domain::Currency,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_nudges: 2,
            window_days: 14,
            quiet_start: NaiveTime::from_hms_opt(21, 0, 0).expect("valid"),
            quiet_end: NaiveTime::from_hms_opt(8, 0, 0).expect("valid"),
            default_timezone: Tz::UTC,
            value_horizon_months: 12.0,
            medium_risk_from: 0.3,
            high_risk_from: 0.5,
            help_url: None,
            currency: crate::domain::Currency::default(),
        }
    }
}

impl Settings {
    pub fn risk_band(&self, p: Option<f64>) -> Option<RiskBand> {
        p.map(|p| {
            if p >= self.high_risk_from {
                RiskBand::High
            } else if p >= self.medium_risk_from {
                RiskBand::Medium
            } else {
                RiskBand::Low
            }
        })
    }
}

/// One event a trigger may look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventFact {
    pub id: i64,
    pub kind: Meaning,
    /// Unix seconds.
    pub at: i64,
    pub value: Option<f64>,
}

/// A person at a business customer a rule can address by role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub name: String,
    pub role: String,
    pub preferred_channel: Channel,
    /// Channels the contact agreed to and has an address for.
    pub consent: Consent,
}

/// Everything the rules may look at for one customer.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub id: i64,
    pub customer: &'a Customer,
    pub features: Option<&'a FeatureRow>,
    pub probability: Option<f64>,
    /// Complaint events of the last year and other events of the last few weeks, in time
    /// order, up to the planning instant.
    pub events: &'a [EventFact],
    /// Usage per month over the last 90 days; `None` without usage events.
    pub usage_per_month: Option<f64>,
    /// The customer's contacts, by name.
    pub contacts: &'a [Contact],
    /// The feature spec the features were computed with: a condition's value is said in
    /// its feature's `describe` words (the built-in spec's when `None`).
    pub spec: Option<&'a crate::features::FeatureSpec>,
}

/// A nudge already stored for the customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub id: i64,
    pub kind: String,
    pub occasion: String,
    pub status: NudgeStatus,
    pub priority: i64,
    pub expected_value: Option<f64>,
    pub channel: String,
    pub send_after: Option<i64>,
    pub planned_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub snoozed_until: Option<i64>,
    /// Deferred by its rule's weekly review budget: only the budget pass
    /// ([`budget`]) gives it a place.
    pub over_budget: bool,
}

impl Existing {
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            NudgeStatus::Proposed
                | NudgeStatus::Deferred
                | NudgeStatus::Approved
                | NudgeStatus::Snoozed
        )
    }

    /// When it takes its place under the contact cap, if it does.
    /// Held by a guardrail: deferred with no time to wait for.
    pub fn is_held(&self) -> bool {
        self.status == NudgeStatus::Deferred && self.send_after.is_none()
    }

    fn slot(&self) -> Option<i64> {
        match self.status {
            NudgeStatus::Snoozed => self.snoozed_until.or(self.send_after).or(self.planned_at),
            NudgeStatus::Proposed | NudgeStatus::Approved => self.send_after.or(self.planned_at),
            _ => None,
        }
    }
}

/// A new nudge, as planning decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    pub customer_id: i64,
    pub external_id: String,
    pub rule: RuleName,
    pub occasion: String,
    pub channel: String,
    pub status: NudgeStatus,
    pub stage: String,
    pub priority: u8,
    pub holdout: bool,
    pub expected_value: Option<f64>,
    pub probability: Option<f64>,
    pub segment: Option<String>,
    pub risk_band: Option<RiskBand>,
    pub message: String,
    pub contact_role: Option<String>,
    pub contact_name: Option<String>,
    pub send_after: Option<i64>,
    pub expires_at: i64,
    pub planned_at: i64,
    /// Why the rule fired, in words.
    pub why: String,
    /// How the recipient and channel were chosen, when it is worth saying.
    pub delivery_note: Option<String>,
    /// For tasks: the team.
    pub team: Option<String>,
    /// Why a guardrail holds it (status `deferred`, no `send_after`), if one does.
    pub held: Option<String>,
}

/// A change to a stored nudge.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A deferred nudge whose slot has come: proposed (or approved with its rule).
    Release {
        id: i64,
        status: NudgeStatus,
        send_after: i64,
    },
    /// A deferred nudge whose time came without a free slot: deferred again.
    Defer { id: i64, send_after: i64 },
    /// Its trigger no longer holds.
    Withdraw { id: i64, reason: String },
    /// Held by a guardrail (an offer while a complaint is open): deferred with no time,
    /// the reason recorded, until the guardrail lets it go.
    Hold { id: i64, reason: String },
    /// Past `expires_at` before it could go out.
    Expire { id: i64 },
}

impl Change {
    pub fn id(&self) -> i64 {
        match self {
            Change::Release { id, .. }
            | Change::Defer { id, .. }
            | Change::Withdraw { id, .. }
            | Change::Hold { id, .. }
            | Change::Expire { id } => *id,
        }
    }
}

/// Counts per rule (and in total) of what planning decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    /// Occasions the rule's trigger found.
    pub fired: u64,
    /// New nudges by status.
    pub proposed: u64,
    pub approved: u64,
    pub deferred: u64,
    pub holdout: u64,
    /// Occasions queued before (same customer, rule and occasion): not queued twice.
    pub already_queued: u64,
    /// Occasions for customers (or contacts) who consented to none of the rule's channels.
    pub no_consented_channel: u64,
    /// Stored nudges: deferred ones released, deferred again, withdrawn, expired.
    pub released: u64,
    pub redeferred: u64,
    pub withdrawn: u64,
    pub expired: u64,
    /// New nudges held by a guardrail (offers while a complaint is open), and stored ones
    /// held now.
    pub held: u64,
    pub held_stored: u64,
}

impl RuleCounts {
    /// New nudges stored.
    pub fn queued(&self) -> u64 {
        self.proposed + self.approved + self.deferred + self.holdout + self.held
    }

    fn add(&mut self, o: &RuleCounts) {
        self.fired += o.fired;
        self.proposed += o.proposed;
        self.approved += o.approved;
        self.deferred += o.deferred;
        self.holdout += o.holdout;
        self.already_queued += o.already_queued;
        self.no_consented_channel += o.no_consented_channel;
        self.released += o.released;
        self.redeferred += o.redeferred;
        self.withdrawn += o.withdrawn;
        self.expired += o.expired;
        self.held += o.held;
        self.held_stored += o.held_stored;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanSummary {
    pub customers: u64,
    pub totals: RuleCounts,
    pub by_rule: BTreeMap<String, RuleCounts>,
    /// Customers whose `timezone` attribute is not an IANA name: planned in the default.
    pub unknown_timezones: u64,
}

impl PlanSummary {
    fn rule(&mut self, name: &str) -> &mut RuleCounts {
        if !self.by_rule.contains_key(name) {
            self.by_rule.insert(name.to_owned(), RuleCounts::default());
        }
        self.by_rule.get_mut(name).expect("inserted")
    }

    /// Recomputes the totals from the per-rule counts.
    pub fn total(&mut self) {
        let mut t = RuleCounts::default();
        for c in self.by_rule.values() {
            t.add(c);
        }
        self.totals = t;
    }

    pub fn merge(&mut self, o: &PlanSummary) {
        self.customers += o.customers;
        self.unknown_timezones += o.unknown_timezones;
        for (k, v) in &o.by_rule {
            self.rule(k).add(v);
        }
    }

    /// Counts `n` nudges of `rule` withdrawn outside [`plan_customer`].
    pub fn add_withdrawn(&mut self, rule: &str, n: u64) {
        self.rule(rule).withdrawn += n;
    }

    /// Counts a change to a stored nudge of `rule`.
    pub fn count_change(&mut self, rule: &str, change: &Change) {
        let c = self.rule(rule);
        match change {
            Change::Release { .. } => c.released += 1,
            Change::Defer { .. } => c.redeferred += 1,
            Change::Withdraw { .. } => c.withdrawn += 1,
            Change::Hold { .. } => c.held_stored += 1,
            Change::Expire { .. } => c.expired += 1,
        }
    }
}

/// What planning decided for a set of customers.
#[derive(Debug, Clone, Default)]
pub struct PlanOutput {
    pub inserts: Vec<Planned>,
    /// With the rule of the nudge changed.
    pub changes: Vec<(String, Change)>,
    pub summary: PlanSummary,
}

/// One occasion a rule's trigger found.
#[derive(Debug, Clone, PartialEq)]
pub struct Occasion {
    pub key: String,
    pub why: String,
    pub values: BTreeMap<&'static str, String>,
}

fn day_of(at: i64) -> NaiveDate {
    DateTime::from_timestamp(at, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

fn add_months(d: NaiveDate, m: u32) -> Option<NaiveDate> {
    d.checked_add_months(Months::new(m))
}

/// The customer's complaints from the events planning read, by the one definition of a
/// complaint's lifecycle (`domain::complaint`).
pub fn complaints(events: &[EventFact]) -> Vec<Complaint> {
    crate::domain::complaint::lifecycle(events.iter().filter_map(|e| {
        Some(ComplaintEvent {
            id: e.id,
            at: e.at,
            step: Step::of(e.kind)?,
            satisfaction: e.value,
        })
    }))
}

/// `1 day`, `3 days`.
fn days(n: i64) -> String {
    format!("{n} day{}", if n == 1 { "" } else { "s" })
}

/// A named value for conditions, borrowed where it can be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Num(f64),
    Cat(&'a str),
    Missing,
}

/// A named value for conditions: features, `attr.*`, and the planning values.
fn value_of<'a>(f: &'a Facts<'_>, s: &Settings, name: &str) -> Value<'a> {
    let num = |v: Option<f64>| v.map(Value::Num).unwrap_or(Value::Missing);
    match name {
        "churn_probability" => num(f.probability),
        "expected_value" => num(expected_value(f, s)),
        "usage_per_month" => num(f.usage_per_month),
        _ => match f.features.and_then(|row| row.get(name)) {
            Some(FeatureValue::Num(x)) => Value::Num(*x),
            Some(FeatureValue::Cat(c)) => Value::Cat(c),
            _ => Value::Missing,
        },
    }
}

pub fn expected_value(f: &Facts<'_>, s: &Settings) -> Option<f64> {
    f.probability
        .map(|p| p * f.customer.monthly_charge * s.value_horizon_months)
}

fn condition_holds(c: &Condition, v: Value<'_>) -> bool {
    use file::CondValue;
    match (v, &c.value) {
        (Value::Num(x), CondValue::Num(y)) => match c.op {
            Op::Lt => x < *y,
            Op::Le => x <= *y,
            Op::Gt => x > *y,
            Op::Ge => x >= *y,
            Op::Eq => x == *y,
            Op::Ne => x != *y,
        },
        (Value::Cat(x), CondValue::Text(y)) => match c.op {
            Op::Eq => x == y,
            Op::Ne => x != y,
            _ => false,
        },
        (Value::Num(x), CondValue::Text(y)) => match c.op {
            Op::Eq => x.to_string() == *y,
            Op::Ne => x.to_string() != *y,
            _ => false,
        },
        _ => false,
    }
}

/// A condition's value in words: the feature's `describe` text, or what the value is.
fn say(f: &Facts<'_>, s: &Settings, name: &str, v: Value<'_>) -> String {
    let value = match v {
        Value::Num(x) => FeatureValue::Num(x),
        Value::Cat(c) => FeatureValue::Cat(c.to_owned()),
        Value::Missing => FeatureValue::Missing,
    };
    match (name, &value) {
        ("churn_probability", FeatureValue::Num(p)) => {
            format!("{:.0}% churn probability", p * 100.0)
        }
        ("expected_value", FeatureValue::Num(x)) => format!(
            "{} of revenue at risk over {} months",
            s.currency.format(*x),
            s.value_horizon_months
        ),
        ("usage_per_month", FeatureValue::Num(x)) => format!("uses {x:.0} a month"),
        _ => match f.spec {
            Some(spec) => spec.describe(name, &value),
            None => crate::features::describe(name, &value),
        },
    }
}

fn show(v: Value<'_>) -> String {
    match v {
        Value::Num(x) => {
            let r = (x * 100.0).round() / 100.0;
            format!("{r}")
        }
        Value::Cat(c) => format!("{c:?}"),
        Value::Missing => "unknown".into(),
    }
}

/// Whether the rule's risk band and conditions hold, without saying why (the hot path).
fn conditions_hold(rule: &Rule, f: &Facts<'_>, s: &Settings) -> bool {
    let t = &rule.trigger;
    if !t.risk.is_empty()
        && !s
            .risk_band(f.probability)
            .is_some_and(|b| t.risk.contains(&b))
    {
        return false;
    }
    t.when
        .iter()
        .all(|c| condition_holds(c, value_of(f, s, &c.feature)))
}

/// Checks the rule's risk band and conditions: `Ok(words)` saying what held, or
/// `Err(words)` saying what did not.
fn conditions(rule: &Rule, f: &Facts<'_>, s: &Settings) -> Result<Vec<String>, String> {
    let mut said = Vec::new();
    let t = &rule.trigger;
    if !t.risk.is_empty() {
        let band = s.risk_band(f.probability);
        match band {
            Some(b) if t.risk.contains(&b) => said.push(format!(
                "{} risk ({:.0}% churn probability)",
                b.as_str(),
                f.probability.unwrap_or(0.0) * 100.0
            )),
            Some(b) => {
                return Err(format!(
                    "risk band is now {}; the rule needs {}",
                    b.as_str(),
                    t.risk
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
            None => return Err("the customer has no score".into()),
        }
    }
    for c in &t.when {
        let v = value_of(f, s, &c.feature);
        if condition_holds(c, v) {
            said.push(say(f, s, &c.feature, v));
        } else {
            return Err(format!(
                "{} is now {}; the rule needs {}",
                c.feature,
                show(v),
                c.text
            ));
        }
    }
    Ok(said)
}

/// The cheapest plan in the catalogue that fits the customer's usage and saves at least
/// `min_saving` a month.
fn better_plan<'p>(
    pb: &'p Playbook,
    f: &Facts<'_>,
    min_saving: f64,
) -> Option<(&'p file::PlanOffer, f64)> {
    let usage = f.usage_per_month?;
    let charge = f.customer.monthly_charge;
    pb.plans
        .iter()
        .filter(|p| p.name != f.customer.plan)
        .filter(|p| p.included_usage.is_none_or(|u| u >= usage))
        .filter(|p| p.price < charge && charge - p.price >= min_saving)
        .min_by(|a, b| a.price.total_cmp(&b.price))
        .map(|p| (p, usage))
}

/// The occasions a rule finds for a customer on `as_of`, at the planning instant `now`.
pub fn occasions(
    pb: &Playbook,
    rule: &Rule,
    f: &Facts<'_>,
    s: &Settings,
    as_of: NaiveDate,
    now: i64,
) -> Vec<Occasion> {
    let c = f.customer;
    if !c.is_active_on(as_of) {
        return Vec::new();
    }
    if !conditions_hold(rule, f, s) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |key: String, why: String, values: Vec<(&'static str, String)>| {
        out.push(Occasion {
            key,
            why,
            values: values.into_iter().collect(),
        })
    };
    let since = |days: u32| now - days as i64 * DAY;
    match &rule.trigger.source {
        Source::Signup { within_days } => {
            let ago = (as_of - c.signup_date).num_days();
            if (0..=*within_days as i64).contains(&ago) {
                push(
                    format!("signup:{}", c.signup_date),
                    format!("signed up on {} ({} ago)", c.signup_date, days(ago)),
                    vec![("signup_date", c.signup_date.to_string())],
                );
            }
        }
        Source::FirstInvoiceDue { days_before } => {
            if let Some(due) = c.first_invoice_due {
                let ahead = (due - as_of).num_days();
                if (0..=*days_before as i64).contains(&ahead) {
                    push(
                        format!("first_invoice:{due}"),
                        format!("first invoice due {due}, in {ahead} days"),
                        vec![("due_date", due.to_string())],
                    );
                }
            }
        }
        Source::ContractEnd { days_before } => {
            if let Some(end) = c.contract_end {
                let ahead = (end - as_of).num_days();
                if (0..=*days_before as i64).contains(&ahead) {
                    push(
                        format!("contract_end:{end}"),
                        format!("contract ends {end}, in {ahead} days"),
                        vec![("contract_end", end.to_string())],
                    );
                }
            }
        }
        Source::TenureMilestone {
            months,
            within_days,
        } => {
            for &m in months {
                let Some(anniversary) = add_months(c.signup_date, m) else {
                    continue;
                };
                let ago = (as_of - anniversary).num_days();
                if (0..=*within_days as i64).contains(&ago) {
                    let years = if m % 12 == 0 {
                        format!("{}", m / 12)
                    } else {
                        format!("{:.1}", m as f64 / 12.0)
                    };
                    push(
                        format!("tenure:{m}m"),
                        format!("{m} months a customer on {anniversary}"),
                        vec![
                            ("milestone_months", m.to_string()),
                            ("milestone_years", years),
                        ],
                    );
                }
            }
        }
        Source::Event {
            kind,
            within_days,
            unless,
        } => {
            let from = since(*within_days);
            for e in f
                .events
                .iter()
                .filter(|e| e.kind == *kind && e.at >= from && e.at <= now)
            {
                if let Some(u) = unless
                    && f.events
                        .iter()
                        .any(|x| x.kind == *u && x.at > e.at && x.at <= now)
                {
                    continue;
                }
                let day = day_of(e.at);
                push(
                    format!("{}:{}", kind.as_str(), e.id),
                    format!(
                        "{} on {day} ({} ago)",
                        kind.as_str().replace('_', " "),
                        days((as_of - day).num_days().max(0))
                    ),
                    vec![("event_date", day.to_string())],
                );
            }
        }
        Source::ComplaintOpen {
            min_age_days,
            max_age_days,
        } => {
            for k in complaints(f.events)
                .iter()
                .filter(|k| k.open && k.opened_at <= now)
            {
                let opened = day_of(k.opened_at);
                let age = k.days_open(as_of);
                if age >= *min_age_days as i64 && max_age_days.is_none_or(|m| age <= m as i64) {
                    push(
                        format!("complaint:{}", k.opened_id),
                        format!(
                            "complaint opened {opened} is unresolved after {}",
                            days(age)
                        ),
                        vec![
                            ("complaint_date", opened.to_string()),
                            ("complaint_days", age.to_string()),
                        ],
                    );
                }
            }
        }
        Source::ComplaintReopened { within_days } => {
            let from = since(*within_days);
            for k in complaints(f.events).iter().filter(|k| k.open) {
                if let Some(r) = k.reopened_at
                    && r >= from
                    && r <= now
                {
                    let opened = day_of(k.opened_at);
                    let age = k.days_open(as_of);
                    push(
                        format!("complaint:{}", k.opened_id),
                        format!(
                            "complaint opened {opened} was reopened on {} and is open after {}",
                            day_of(r),
                            days(age)
                        ),
                        vec![
                            ("complaint_date", opened.to_string()),
                            ("complaint_days", age.to_string()),
                        ],
                    );
                }
            }
        }
        Source::SupportAfterFirstInvoice {
            within_days,
            after_days,
        } => {
            if let Some(due) = c.first_invoice_due {
                let until = due + Days::new(*after_days as u64);
                let from = since(*within_days);
                if let Some(e) = f.events.iter().find(|e| {
                    e.kind == Meaning::SupportContact
                        && e.at >= from
                        && e.at <= now
                        && (due..=until).contains(&day_of(e.at))
                }) {
                    push(
                        format!("first_invoice_support:{due}"),
                        format!(
                            "contacted support on {} after the first invoice (due {due})",
                            day_of(e.at)
                        ),
                        vec![("due_date", due.to_string())],
                    );
                }
            }
        }
        Source::BetterPlan { min_saving } => {
            if let Some((p, usage)) = better_plan(pb, f, *min_saving) {
                let saving = c.monthly_charge - p.price;
                push(
                    format!("better_plan:{}", p.name),
                    format!(
                        "pays {} a month on {}; {} costs {} a month and {}, enough for the {:.0} they use a month",
                        s.currency.format(c.monthly_charge),
                        c.plan,
                        p.name,
                        s.currency.format(p.price),
                        p.included_usage
                            .map(|u| format!("includes {u:.0} a month"))
                            .unwrap_or_else(|| "has no limit on use".into()),
                        usage
                    ),
                    vec![
                        ("better_plan", p.name.clone()),
                        ("better_plan_price", s.currency.format(p.price)),
                        ("monthly_saving", s.currency.format(saving)),
                        ("yearly_saving", s.currency.format(saving * 12.0)),
                    ],
                );
            }
        }
        Source::AboveNewCustomerPrice {
            min_tenure_months,
            min_saving,
        } => {
            let tenure = crate::features::months_between(c.signup_date, as_of);
            if tenure >= *min_tenure_months as i64
                && let Some(p) = pb.plan(&c.plan)
            {
                let over = c.monthly_charge - p.price;
                if over > 0.0 && over >= *min_saving {
                    push(
                        format!("loyalty_price:{}", p.name),
                        format!(
                            "a customer of {tenure} months pays {} a month on {}, where a new customer pays {}",
                            s.currency.format(c.monthly_charge),
                            p.name,
                            s.currency.format(p.price)
                        ),
                        vec![
                            ("new_customer_price", s.currency.format(p.price)),
                            ("monthly_saving", s.currency.format(over)),
                            ("yearly_saving", s.currency.format(over * 12.0)),
                        ],
                    );
                }
            }
        }
        Source::State { every_days } => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
            let d = (as_of - epoch).num_days();
            let start = epoch + Days::new((d - d.rem_euclid(*every_days as i64)) as u64);
            push(format!("period:{start}"), String::new(), Vec::new());
        }
    }
    if out.is_empty() {
        return out;
    }
    let conds = conditions(rule, f, s).unwrap_or_default();
    for o in &mut out {
        let mut parts: Vec<String> = Vec::new();
        if !o.why.is_empty() {
            parts.push(std::mem::take(&mut o.why));
        }
        parts.extend(conds.iter().cloned());
        o.why = parts.join("; ");
    }
    out
}

/// Whether a stored nudge's trigger still holds for its occasion, whatever the time
/// windows say (stale timing is what `expires_at` is for): `Err` says why not.
pub fn holds(
    pb: &Playbook,
    rule: &Rule,
    f: &Facts<'_>,
    s: &Settings,
    as_of: NaiveDate,
    occasion: &str,
) -> Result<(), String> {
    let c = f.customer;
    if let Some(left) = c.churned_on
        && left <= as_of
    {
        return Err(format!("the customer left on {left}"));
    }
    let (prefix, rest) = occasion.split_once(':').unwrap_or((occasion, ""));
    match &rule.trigger.source {
        Source::Signup { .. } if rest != c.signup_date.to_string() => {
            return Err(format!("the signup date is now {}", c.signup_date));
        }
        Source::FirstInvoiceDue { .. } | Source::SupportAfterFirstInvoice { .. }
            if Some(rest.to_owned()) != c.first_invoice_due.map(|d| d.to_string()) =>
        {
            return Err(match c.first_invoice_due {
                Some(d) => format!("the first invoice is now due {d}"),
                None => "the customer has no first invoice date any more".into(),
            });
        }
        Source::ContractEnd { .. }
            if Some(rest.to_owned()) != c.contract_end.map(|d| d.to_string()) =>
        {
            return Err(match c.contract_end {
                Some(d) => format!("the contract now ends {d} (renewed or changed)"),
                None => "the customer has no contract end any more".into(),
            });
        }
        Source::Event {
            unless: Some(u),
            kind,
            ..
        } => {
            let id: i64 = rest.parse().unwrap_or(-1);
            if let Some(e) = f.events.iter().find(|e| e.id == id)
                && let Some(after) = f.events.iter().find(|x| x.kind == *u && x.at > e.at)
            {
                return Err(format!(
                    "{} on {} was followed by {} on {}",
                    kind.as_str().replace('_', " "),
                    day_of(e.at),
                    u.as_str().replace('_', " "),
                    day_of(after.at)
                ));
            }
        }
        Source::ComplaintOpen { .. } | Source::ComplaintReopened { .. } => {
            let id: i64 = rest.parse().unwrap_or(-1);
            if let Some(k) = complaints(f.events).iter().find(|k| k.opened_id == id)
                && !k.open
            {
                return Err(format!(
                    "the complaint opened {} was resolved on {}",
                    day_of(k.opened_at),
                    k.resolved_at
                        .map(day_of)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                ));
            }
        }
        Source::BetterPlan { min_saving } if better_plan(pb, f, *min_saving).is_none() => {
            return Err(format!(
                "no plan in the catalogue is now cheaper than {} a month on {} and fits the customer's usage",
                s.currency.format(c.monthly_charge),
                c.plan
            ));
        }
        Source::AboveNewCustomerPrice { min_saving, .. } => {
            let still = pb
                .plan(&c.plan)
                .is_some_and(|p| c.monthly_charge - p.price >= min_saving.max(0.01));
            if !still || prefix == "loyalty_price" && rest != c.plan {
                return Err(format!(
                    "the customer now pays {} on {}, no more than a new customer",
                    s.currency.format(c.monthly_charge),
                    c.plan
                ));
            }
        }
        _ => {}
    }
    conditions(rule, f, s).map(|_| ())
}

/// Moves `t` out of quiet hours in `tz`: a time inside them becomes their end.
pub fn out_of_quiet_hours(t: i64, tz: Tz, start: NaiveTime, end: NaiveTime) -> i64 {
    let Some(utc) = DateTime::from_timestamp(t, 0) else {
        return t;
    };
    let local = utc.with_timezone(&tz);
    let lt = local.time();
    let quiet = if start <= end {
        start <= lt && lt < end
    } else {
        lt >= start || lt < end
    };
    if !quiet || start == end {
        return t;
    }
    let mut day = local.date_naive();
    if start > end && lt >= start {
        day = day.succ_opt().unwrap_or(day);
    }
    // A quiet-hours end inside a daylight-saving gap: the first valid minute after it.
    let mut at = day.and_time(end);
    for _ in 0..180 {
        if let Some(x) = tz.from_local_datetime(&at).earliest() {
            return x.with_timezone(&Utc).timestamp().max(t);
        }
        at += chrono::Duration::minutes(1);
    }
    t
}

/// Whether one more contact at `t` keeps every window of `window` seconds at or below
/// `max` contacts, given the contacts in `slots`.
pub fn fits(slots: &[i64], t: i64, window: i64, max: u32) -> bool {
    // Windows [a, a + window) that contain t start in (t - window, t]; the fullest starts
    // just after t - window or at a contact.
    let starts = [t - window + 1, t]
        .into_iter()
        .chain(slots.iter().copied().filter(|&s| s > t - window && s <= t));
    starts
        .map(|a| slots.iter().filter(|&&s| s >= a && s < a + window).count() + 1)
        .all(|n| n <= max as usize)
}

/// The first moment at or after `now` when one more contact fits.
pub fn next_free(slots: &[i64], now: i64, window: i64, max: u32) -> i64 {
    let mut candidates: Vec<i64> = std::iter::once(now)
        .chain(slots.iter().map(|s| s + window))
        .filter(|&t| t >= now)
        .collect();
    candidates.sort_unstable();
    candidates
        .into_iter()
        .find(|&t| fits(slots, t, window, max))
        .unwrap_or_else(|| slots.iter().copied().max().unwrap_or(now) + window)
}

/// The customer's time zone: the `timezone` attribute (an IANA name) or the default.
/// `Err` carries the default when the attribute is not a time zone.
pub fn timezone_of(c: &Customer, default: Tz) -> Result<Tz, Tz> {
    timezone_in(&c.attributes, default)
}

/// [`timezone_of`] from a customer's attributes alone.
pub fn timezone_in(attributes: &BTreeMap<String, String>, default: Tz) -> Result<Tz, Tz> {
    match attributes.get("timezone").map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some(name) => name.parse::<Tz>().map_err(|_| default),
    }
}

/// The channels a rule's nudges can go out on: its fixed channels, all four when it
/// takes the customer's preferred one, `task` for a task, `post` for a notice the business
/// must give (its fallback).
pub fn channels_of(rule: &Rule) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut add = |c: &'static str| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    if let Action::Task { .. } = rule.action {
        add(TASK_CHANNEL);
        return out;
    }
    for p in &rule.channels {
        match p {
            ChannelPref::Fixed(c) => add(c.as_str()),
            ChannelPref::Preferred => Channel::ALL.iter().for_each(|c| add(c.as_str())),
        }
    }
    if rule.regulatory {
        add(Channel::Post.as_str());
    }
    out
}

/// The recipient's first name for `{first_name}`: a contact's first word, the customer's
/// `first_name` attribute, the first word of a `name` attribute, or "there".
fn first_name(c: &Customer, contact: Option<&Contact>) -> String {
    let first = |s: &str| s.split_whitespace().next().map(str::to_owned);
    contact
        .and_then(|k| first(&k.name))
        .or_else(|| c.attributes.get("first_name").and_then(|s| first(s)))
        .or_else(|| c.attributes.get("name").and_then(|s| first(s)))
        .unwrap_or_else(|| "there".into())
}

/// Who receives a nudge and on which channel.
struct Delivery<'a> {
    channel: String,
    contact: Option<&'a Contact>,
    note: Option<String>,
}

fn pick_channel(prefs: &[ChannelPref], preferred: Channel, consent: &Consent) -> Option<Channel> {
    prefs
        .iter()
        .map(|p| match p {
            ChannelPref::Preferred => preferred,
            ChannelPref::Fixed(c) => *c,
        })
        .find(|c| consent.allows(*c))
}

fn delivery<'a>(rule: &Rule, f: &Facts<'a>) -> Option<Delivery<'a>> {
    if let Action::Task { team } = &rule.action {
        return Some(Delivery {
            channel: TASK_CHANNEL.into(),
            contact: None,
            note: Some(format!("a task for the {team} team, not a message")),
        });
    }
    let c = f.customer;
    let mut note = None;
    if let Some(role) = &rule.contact_role {
        let with_role: Vec<&Contact> = f.contacts.iter().filter(|k| &k.role == role).collect();
        if !with_role.is_empty() {
            for k in &with_role {
                if let Some(ch) = pick_channel(&rule.channels, k.preferred_channel, &k.consent) {
                    return Some(Delivery {
                        channel: ch.as_str().into(),
                        contact: Some(k),
                        note: None,
                    });
                }
            }
            return None;
        }
        note = Some(format!("no {role} contact on file: to the account holder"));
    }
    match pick_channel(&rule.channels, c.preferred_channel, &c.consent) {
        Some(ch) => Some(Delivery {
            channel: ch.as_str().into(),
            contact: None,
            note,
        }),
        None if rule.regulatory => Some(Delivery {
            channel: Channel::Post.as_str().into(),
            contact: None,
            note: Some(
                "by post: a notice the business must give needs no marketing consent, and the customer consented to none of the rule's channels"
                    .into(),
            ),
        }),
        None => None,
    }
}

/// Rechecks a stored open nudge: withdrawn if its rule is gone or its trigger no longer
/// holds (with the reason), expired if it is past `expires_at`, else `None`.
pub fn recheck(
    pb: &Playbook,
    s: &Settings,
    f: &Facts<'_>,
    e: &Existing,
    as_of: NaiveDate,
    now: i64,
) -> Option<Change> {
    if !e.is_open() {
        return None;
    }
    match pb.rule(&e.kind) {
        None => Some(Change::Withdraw {
            id: e.id,
            reason: format!("rule {:?} is no longer in the playbook", e.kind),
        }),
        Some(rule) => match holds(pb, rule, f, s, as_of, &e.occasion) {
            Err(reason) => Some(Change::Withdraw {
                id: e.id,
                reason: format!("its trigger no longer holds: {reason}"),
            }),
            Ok(()) if e.expires_at.is_some_and(|x| x <= now) => Some(Change::Expire { id: e.id }),
            Ok(()) => match offer_hold(pb, rule, f) {
                Some(reason) if !e.is_held() => Some(Change::Hold { id: e.id, reason }),
                _ => None,
            },
        },
    }
}

/// Why a nudge of `rule` must wait now, if it must: an offer while the customer has an
/// unresolved complaint (`[guardrails] hold_offers_while_complaint_open`).
pub fn offer_hold(pb: &Playbook, rule: &Rule, f: &Facts<'_>) -> Option<String> {
    offer_hold_in(pb, rule, f.events)
}

/// Whether an offer of `rule` must wait now: a rule that offers something, under the
/// guardrail. The customer's events are read only when this is true.
pub fn offer_may_be_held(pb: &Playbook, rule: &Rule) -> bool {
    rule.offer && pb.guardrails.hold_offers_while_complaint_open
}

/// [`offer_hold`] from the customer's events alone (delivery checks it again at send time).
pub fn offer_hold_in(pb: &Playbook, rule: &Rule, events: &[EventFact]) -> Option<String> {
    if !offer_may_be_held(pb, rule) {
        return None;
    }
    let complaints = complaints(events);
    let open = crate::domain::complaint::oldest_open(&complaints)?;
    Some(format!(
        "held while the complaint opened {} is unresolved: an offer waits until it is resolved",
        day_of(open.opened_at)
    ))
}

/// Plans one customer: rechecks their open nudges, finds new occasions, and applies the
/// guardrails. `now` is the planning instant (unix seconds) within `as_of`.
#[allow(clippy::too_many_arguments)]
pub fn plan_customer(
    pb: &Playbook,
    s: &Settings,
    f: &Facts<'_>,
    existing: &[Existing],
    as_of: NaiveDate,
    now: i64,
    out: &mut PlanOutput,
) {
    out.summary.customers += 1;
    let window = s.window_days as i64 * DAY;
    let found_all: Vec<(&Rule, Vec<Occasion>)> = pb
        .rules
        .iter()
        .map(|r| (r, occasions(pb, r, f, s, as_of, now)))
        .filter(|(_, o)| !o.is_empty())
        .collect();
    if existing.is_empty() && found_all.is_empty() {
        return;
    }
    let tz = match timezone_of(f.customer, s.default_timezone) {
        Ok(tz) => tz,
        Err(tz) => {
            out.summary.unknown_timezones += 1;
            tz
        }
    };
    let quiet = |t: i64, channel: &str| -> i64 {
        if channel == TASK_CHANNEL || channel == Channel::Post.as_str() {
            t
        } else {
            out_of_quiet_hours(t, tz, s.quiet_start, s.quiet_end)
        }
    };

    // 1. Open nudges: withdraw what no longer holds, expire what is too late.
    let mut closed: HashSet<i64> = HashSet::new();
    for e in existing.iter().filter(|e| e.is_open()) {
        if let Some(change) = recheck(pb, s, f, e, as_of, now) {
            closed.insert(e.id);
            out.summary.count_change(&e.kind, &change);
            out.changes.push((e.kind.clone(), change));
        }
    }

    // 2. New occasions, past the duplicate, consent and holdout guardrails.
    let keys: HashSet<(&str, &str)> = existing
        .iter()
        .map(|e| (e.kind.as_str(), e.occasion.as_str()))
        .collect();
    let ev = expected_value(f, s);
    let band = s.risk_band(f.probability);
    let segment = f.customer.attributes.get("segment").cloned();
    let mut treated: Vec<Planned> = Vec::new();
    let mut held_new: Vec<Planned> = Vec::new();
    for (rule, found) in found_all {
        for occ in found {
            let counts = out.summary.rule(rule.name.as_str());
            counts.fired += 1;
            if keys.contains(&(rule.name.as_str(), occ.key.as_str())) {
                counts.already_queued += 1;
                continue;
            }
            let Some(d) = delivery(rule, f) else {
                counts.no_consented_channel += 1;
                continue;
            };
            let mut values = occ.values.clone();
            let c = f.customer;
            values.insert("first_name", first_name(c, d.contact));
            values.insert("customer_id", c.external_id.to_string());
            values.insert("plan", c.plan.clone());
            values.insert("monthly_charge", s.currency.format(c.monthly_charge));
            let tenure = crate::features::months_between(c.signup_date, as_of);
            values.insert("tenure_months", tenure.to_string());
            values.insert("tenure_years", (tenure / 12).to_string());
            if let Some(url) = &s.help_url {
                values.insert("help_url", url.clone());
            }
            let mut rendered_values: BTreeMap<&str, String> =
                values.iter().map(|(k, v)| (*k, v.clone())).collect();
            for (k, v) in &pb.placeholders {
                rendered_values.insert(k.as_str(), v.clone());
            }
            let held =
                holdout::is_held_out(rule.name.as_str(), c.external_id.as_str(), rule.holdout);
            let p = Planned {
                customer_id: f.id,
                external_id: c.external_id.to_string(),
                rule: rule.name.clone(),
                occasion: occ.key,
                channel: d.channel,
                status: if held {
                    NudgeStatus::Holdout
                } else {
                    NudgeStatus::Proposed
                },
                stage: rule.stage.clone(),
                priority: rule.priority,
                holdout: held,
                expected_value: ev,
                probability: f.probability,
                segment: segment.clone(),
                risk_band: band,
                message: rule.message.render(&rendered_values),
                contact_role: d.contact.map(|k| k.role.clone()),
                contact_name: d.contact.map(|k| k.name.clone()),
                send_after: None,
                expires_at: now + rule.expires_after_days as i64 * DAY,
                planned_at: now,
                why: occ.why,
                delivery_note: d.note,
                team: match &rule.action {
                    Action::Task { team } => Some(team.clone()),
                    Action::Message => None,
                },
                held: None,
            };
            if held {
                counts.holdout += 1;
                out.inserts.push(p);
            } else if let Some(reason) = offer_hold(pb, rule, f) {
                counts.held += 1;
                held_new.push(Planned {
                    status: NudgeStatus::Deferred,
                    send_after: None,
                    held: Some(reason),
                    ..p
                });
            } else {
                treated.push(p);
            }
        }
    }

    // 3. The contact cap: the most important first; over the cap, deferred to the next
    // free slot. Regulatory notices neither wait for nor take a slot.
    let regulatory = |kind: &str| pb.rule(kind).is_some_and(|r| r.regulatory);
    let mut slots: Vec<i64> = existing
        .iter()
        .filter(|e| !closed.contains(&e.id) && !regulatory(&e.kind))
        .filter_map(Existing::slot)
        .collect();
    enum Item<'e> {
        New(Box<Planned>),
        Deferred(&'e Existing),
    }
    let mut items: Vec<(bool, i64, f64, String, Item<'_>)> = Vec::new();
    for p in treated {
        items.push((
            regulatory(p.rule.as_str()),
            p.priority as i64,
            p.expected_value.unwrap_or(0.0),
            format!("{}\u{1f}{}", p.rule, p.occasion),
            Item::New(Box::new(p)),
        ));
    }
    let still_held = |e: &Existing| {
        e.is_held()
            && pb
                .rule(&e.kind)
                .is_some_and(|r| offer_hold(pb, r, f).is_some())
    };
    for e in existing.iter().filter(|e| {
        e.status == NudgeStatus::Deferred
            && !e.over_budget
            && !closed.contains(&e.id)
            && e.send_after.is_none_or(|t| t <= now)
            && !still_held(e)
    }) {
        items.push((
            regulatory(&e.kind),
            pb.rule(&e.kind)
                .map(|r| r.priority as i64)
                .unwrap_or(e.priority),
            e.expected_value.unwrap_or(0.0),
            format!("{}\u{1f}{}", e.kind, e.occasion),
            Item::Deferred(e),
        ));
    }
    items.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.2.total_cmp(&a.2))
            .then(a.3.cmp(&b.3))
    });
    for (is_regulatory, _, _, _, item) in items {
        let (kind, channel) = match &item {
            Item::New(p) => (p.rule.as_str().to_owned(), p.channel.clone()),
            Item::Deferred(e) => (e.kind.clone(), e.channel.clone()),
        };
        let review = pb.rule(&kind).map(|r| r.review).unwrap_or(Review::Each);
        let placed = if is_regulatory {
            Some(quiet(now, &channel))
        } else if fits(&slots, now, window, s.max_nudges) {
            let t = quiet(now, &channel);
            slots.push(t);
            Some(t)
        } else {
            None
        };
        let status = if review == Review::Rule {
            NudgeStatus::Approved
        } else {
            NudgeStatus::Proposed
        };
        match (item, placed) {
            (Item::New(p), Some(t)) => {
                let mut p = *p;
                p.status = status;
                p.send_after = Some(t);
                let c = out.summary.rule(&kind);
                if status == NudgeStatus::Approved {
                    c.approved += 1;
                } else {
                    c.proposed += 1;
                }
                out.inserts.push(p);
            }
            (Item::New(p), None) => {
                let mut p = *p;
                let t = quiet(next_free(&slots, now, window, s.max_nudges), &channel);
                slots.push(t);
                p.status = NudgeStatus::Deferred;
                p.send_after = Some(t);
                out.summary.rule(&kind).deferred += 1;
                out.inserts.push(p);
            }
            (Item::Deferred(e), Some(t)) => {
                let change = Change::Release {
                    id: e.id,
                    status,
                    send_after: t,
                };
                out.summary.count_change(&kind, &change);
                out.changes.push((kind, change));
            }
            (Item::Deferred(e), None) => {
                let t = quiet(next_free(&slots, now, window, s.max_nudges), &channel);
                slots.push(t);
                let change = Change::Defer {
                    id: e.id,
                    send_after: t,
                };
                out.summary.count_change(&kind, &change);
                out.changes.push((kind, change));
            }
        }
    }
    // Offers held by a guardrail take no slot; stored after the rest.
    out.inserts.append(&mut held_new);
}

/// The planning instant for a plan as of `as_of`: now if it is today (UTC), else noon UTC
/// on that day, so a backfill or a simulation of another day is reproducible.
pub fn planning_instant(as_of: NaiveDate, wall_clock: i64) -> i64 {
    let start = as_of
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp();
    if day_of(wall_clock) == as_of {
        wall_clock
    } else {
        start + 12 * 3600
    }
}

#[cfg(test)]
mod tests;
