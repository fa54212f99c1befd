//! The playbook file: TOML that marketing owns and keeps in version control, read into
//! validated rules. Every problem is reported with the line it is on
//! (`playbook.toml:42: rule "bill_explainer": unknown feature "usage_tren"; known
//! features: ...`), and every problem in the file is reported, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::template::{Template, TemplateError};
use crate::domain::{Channel, Meaning, RuleName};
use crate::features;

/// The default playbook, shipped in the repository as `playbook.toml`.
pub const DEFAULT_PLAYBOOK: &str = include_str!("../../../../playbook.toml");
/// How the default playbook is named in messages.
pub const DEFAULT_NAME: &str = "playbook.toml (built in)";

/// One problem in a playbook file, at a line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckError {
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// Every problem found in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct CheckErrors(pub Vec<CheckError>);

/// The stages of a relationship a rule can belong to.
pub const STAGES: &[&str] = &[
    "early_days",
    "first_disagreement",
    "long_term",
    "warning_signs",
    "high_value_at_risk",
    "contract_end",
];

/// Risk bands, from the configured cut points on the churn probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    Low,
    Medium,
    High,
}

impl RiskBand {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskBand::Low => "low",
            RiskBand::Medium => "medium",
            RiskBand::High => "high",
        }
    }

    fn parse(raw: &str) -> Option<RiskBand> {
        match raw {
            "low" => Some(RiskBand::Low),
            "medium" => Some(RiskBand::Medium),
            "high" => Some(RiskBand::High),
            _ => None,
        }
    }
}

/// A channel in a rule's preference list: a fixed one, or the recipient's preferred one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ChannelPref {
    Preferred,
    Fixed(Channel),
}

/// What a rule produces: a message to the customer (or a contact), or a task for a
/// person in one of the business's teams (never an automated message).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    Message,
    Task { team: String },
}

/// Whether each nudge waits for a person (`each`) or goes out on the approval of its
/// rule (`rule`: the rule and its template were reviewed when the file was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Review {
    Each,
    Rule,
}

/// What makes a rule fire: an occasion (an event, a date, a state) and conditions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trigger {
    pub source: Source,
    /// The customer's risk band must be one of these (empty: any, scored or not).
    pub risk: Vec<RiskBand>,
    pub when: Vec<Condition>,
}

/// Where a rule's occasions come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Source {
    /// Signed up at most `within_days` days ago. Occasion `signup:DATE`.
    Signup { within_days: u32 },
    /// The first invoice is due in 0..=`days_before` days. Occasion `first_invoice:DATE`.
    FirstInvoiceDue { days_before: u32 },
    /// The contract ends in 0..=`days_before` days. Occasion `contract_end:DATE`.
    ContractEnd { days_before: u32 },
    /// A whole-month tenure anniversary in `months` passed at most `within_days` ago.
    /// Occasion `tenure:NNm`.
    TenureMilestone { months: Vec<u32>, within_days: u32 },
    /// An event of `kind` at most `within_days` ago, not followed since by an event of
    /// `unless`. Occasion `KIND:EVENT_ID`.
    Event {
        kind: Meaning,
        within_days: u32,
        unless: Option<Meaning>,
    },
    /// A complaint that is open now, opened (first) between `min_age_days` and
    /// `max_age_days` ago. Occasion `complaint:OPENED_EVENT_ID`.
    ComplaintOpen {
        min_age_days: u32,
        max_age_days: Option<u32>,
    },
    /// A complaint reopened at most `within_days` ago and open now.
    /// Occasion `complaint:OPENED_EVENT_ID`.
    ComplaintReopened { within_days: u32 },
    /// A support contact at most `within_days` ago, in the `after_days` after the first
    /// invoice was due. Occasion `first_invoice_support:DATE`.
    SupportAfterFirstInvoice { within_days: u32, after_days: u32 },
    /// A plan in the catalogue fits the customer's usage and costs at least `min_saving`
    /// a month less than they pay. Occasion `better_plan:PLAN`.
    BetterPlan { min_saving: f64 },
    /// A customer of at least `min_tenure_months` pays at least `min_saving` a month more
    /// than a new customer pays for the same plan. Occasion `loyalty_price:PLAN`.
    AboveNewCustomerPrice {
        min_tenure_months: u32,
        min_saving: f64,
    },
    /// The conditions hold now; once per `every_days`. Occasion `period:START_DATE`.
    State { every_days: u32 },
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Signup { .. } => "signup",
            Source::FirstInvoiceDue { .. } => "first_invoice_due",
            Source::ContractEnd { .. } => "contract_end",
            Source::TenureMilestone { .. } => "tenure_milestone",
            Source::Event { .. } => "event",
            Source::ComplaintOpen { .. } => "complaint_open",
            Source::ComplaintReopened { .. } => "complaint_reopened",
            Source::SupportAfterFirstInvoice { .. } => "support_after_first_invoice",
            Source::BetterPlan { .. } => "better_plan",
            Source::AboveNewCustomerPrice { .. } => "above_new_customer_price",
            Source::State { .. } => "state",
        }
    }

    /// Placeholders a message may use because of this source, beyond the common ones.
    pub fn placeholders(&self) -> &'static [&'static str] {
        match self {
            Source::Signup { .. } => &["signup_date"],
            Source::FirstInvoiceDue { .. } | Source::SupportAfterFirstInvoice { .. } => {
                &["due_date"]
            }
            Source::ContractEnd { .. } => &["contract_end"],
            Source::TenureMilestone { .. } => &["milestone_years", "milestone_months"],
            Source::Event { .. } => &["event_date"],
            Source::ComplaintOpen { .. } | Source::ComplaintReopened { .. } => {
                &["complaint_date", "complaint_days"]
            }
            Source::BetterPlan { .. } => &[
                "better_plan",
                "better_plan_price",
                "monthly_saving",
                "yearly_saving",
            ],
            Source::AboveNewCustomerPrice { .. } => {
                &["new_customer_price", "monthly_saving", "yearly_saving"]
            }
            Source::State { .. } => &[],
        }
    }
}

const SOURCES: &[&str] = &[
    "signup",
    "first_invoice_due",
    "contract_end",
    "tenure_milestone",
    "event",
    "complaint_open",
    "complaint_reopened",
    "support_after_first_invoice",
    "better_plan",
    "above_new_customer_price",
    "state",
];

/// Placeholders every message may use.
pub const COMMON_PLACEHOLDERS: &[&str] = &[
    "help_url",
    "first_name",
    "customer_id",
    "plan",
    "monthly_charge",
    "tenure_months",
    "tenure_years",
];

/// A comparison of a named value with a constant: `usage_trend <= -0.3`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Condition {
    pub feature: String,
    pub op: Op,
    pub value: CondValue,
    /// As written, for reasons.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum CondValue {
    Num(f64),
    Text(String),
}

/// Values planning knows besides the features: the score and what follows from it, and
/// the customer's usage per month over the last 90 days.
pub const PLANNING_VALUES: &[&str] = &["churn_probability", "expected_value", "usage_per_month"];

/// Feature names a condition may use (besides `attr.NAME`) and whether each is a number.
/// These are the feature pipeline's names (stable across its implementations), plus the
/// planning values.
pub fn known_features() -> Vec<(&'static str, bool)> {
    let mut v = vec![
        ("tenure_months", true),
        ("monthly_charge", true),
        ("contract", false),
        ("plan", false),
        ("months_to_contract_end", true),
        ("days_since_last_contact", true),
        ("complaints_90d", true),
        ("open_complaints", true),
        ("days_since_last_complaint", true),
        ("payment_failures_90d", true),
        ("support_contacts_90d", true),
        ("logins_30d", true),
        ("usage_trend", true),
        ("bill_shock", true),
    ];
    v.extend(PLANNING_VALUES.iter().map(|p| (*p, true)));
    v
}

/// A plan or tariff on offer: what it costs a new customer and the usage it includes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanOffer {
    pub name: String,
    pub price: f64,
    /// Monthly usage included; `None` is unlimited.
    pub included_usage: Option<f64>,
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rule {
    pub name: RuleName,
    pub stage: String,
    pub description: Option<String>,
    pub trigger: Trigger,
    pub action: Action,
    pub channels: Vec<ChannelPref>,
    /// 0 to 100; higher goes first when the contact cap forces a choice.
    pub priority: u8,
    #[serde(skip)]
    pub message: Template,
    pub message_text: String,
    pub expires_after_days: u32,
    pub review: Review,
    pub contact_role: Option<String>,
    /// Share of customers held out (never sent this rule's nudges), to measure it.
    pub holdout: f64,
    /// A notice the business must give (the ombudsman after eight weeks): never held
    /// out, not limited by (nor counted in) the contact cap, and sent by post when the
    /// customer consented to none of the rule's channels.
    pub regulatory: bool,
    /// The rule offers something of value (a price, a discount).
    pub offer: bool,
    pub line: usize,
}

/// A validated playbook.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Playbook {
    /// Where it came from, for messages.
    pub origin: String,
    pub rules: Vec<Rule>,
    pub plans: Vec<PlanOffer>,
    pub contact_roles: Vec<String>,
    pub placeholders: BTreeMap<String, String>,
    pub guardrails: Guardrails,
}

/// Guardrails a playbook may turn off, each on by default (`[guardrails]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// While the customer has an unresolved complaint, nudges of `offer = true` rules are
    /// held (deferred, the reason recorded) and proposed again once it is resolved: the
    /// first disagreement is answered by a person, not a sale.
    #[serde(default = "yes")]
    pub hold_offers_while_complaint_open: bool,
}

fn yes() -> bool {
    true
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            hold_offers_while_complaint_open: true,
        }
    }
}

impl Playbook {
    /// Rules whose message says `{help_url}`: they need `[playbook] help_url`.
    pub fn rules_using_help_url(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.message.placeholders().any(|p| p == "help_url"))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The playbook built into attune.
    pub fn default_playbook() -> Playbook {
        parse(DEFAULT_NAME, DEFAULT_PLAYBOOK).expect("the built-in playbook is valid")
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name.as_str() == name)
    }

    pub fn plan(&self, name: &str) -> Option<&PlanOffer> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// Whether any rule needs the customers' usage per month (a query of its own).
    pub fn needs_usage(&self) -> bool {
        self.rules.iter().any(|r| {
            matches!(r.trigger.source, Source::BetterPlan { .. })
                || r.trigger
                    .when
                    .iter()
                    .any(|c| c.feature == "usage_per_month")
        })
    }
}

// ---- the file as written -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    contact_roles: Vec<Spanned<String>>,
    #[serde(default)]
    placeholders: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    plans: Vec<Spanned<RawPlan>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    guardrails: Guardrails,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Spanned<String>,
    price: Spanned<f64>,
    included_usage: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    stage: Spanned<String>,
    description: Option<String>,
    trigger: Spanned<RawTrigger>,
    action: Option<Spanned<String>>,
    team: Option<Spanned<String>>,
    channels: Option<Spanned<Vec<Spanned<String>>>>,
    priority: Option<Spanned<i64>>,
    message: Spanned<String>,
    expires_after_days: Option<Spanned<i64>>,
    review: Option<Spanned<String>>,
    contact_role: Option<Spanned<String>>,
    holdout: Option<Spanned<f64>>,
    #[serde(default)]
    regulatory: bool,
    #[serde(default)]
    offer: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    on: Spanned<String>,
    event: Option<Spanned<String>>,
    unless: Option<Spanned<String>>,
    within_days: Option<Spanned<i64>>,
    days_before: Option<Spanned<i64>>,
    after_days: Option<Spanned<i64>>,
    min_age_days: Option<Spanned<i64>>,
    max_age_days: Option<Spanned<i64>>,
    every_days: Option<Spanned<i64>>,
    months: Option<Spanned<Vec<i64>>>,
    min_saving: Option<Spanned<f64>>,
    min_tenure_months: Option<Spanned<i64>>,
    risk: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    when: Vec<Spanned<String>>,
}

/// Rule defaults, as documented in the README.
pub const DEFAULT_HOLDOUT: f64 = 0.10;
pub const DEFAULT_PRIORITY: u8 = 50;
pub const DEFAULT_EXPIRES_AFTER_DAYS: u32 = 14;

/// Byte offsets to 1-based lines.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Self(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

struct Checker<'a> {
    file: &'a str,
    lines: Lines,
    errors: Vec<CheckError>,
}

impl Checker<'_> {
    fn err(&mut self, offset: usize, message: impl Into<String>) {
        self.errors.push(CheckError {
            file: self.file.to_owned(),
            line: self.lines.line(offset),
            message: message.into(),
        });
    }

    fn rule_err(&mut self, offset: usize, rule: &str, message: impl fmt::Display) {
        self.err(offset, format!("rule {rule:?}: {message}"));
    }
}

fn quoted(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads and validates a playbook. `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Playbook, CheckErrors> {
    let mut c = Checker {
        file,
        lines: Lines::new(text),
        errors: Vec::new(),
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let line = if e.span().is_some() {
                c.lines.line(offset)
            } else {
                0
            };
            return Err(CheckErrors(vec![CheckError {
                file: file.to_owned(),
                line,
                message: e.message().trim().to_owned(),
            }]));
        }
    };

    let mut contact_roles = Vec::new();
    for role in &raw.contact_roles {
        match RuleName::parse(role.get_ref()) {
            Ok(_) if contact_roles.contains(role.get_ref()) => {
                c.err(role.span().start, format!("contact role {:?} is listed twice", role.get_ref()))
            }
            Ok(_) => contact_roles.push(role.get_ref().clone()),
            Err(_) => c.err(
                role.span().start,
                format!(
                    "contact role {:?}: use lowercase letters, digits and _, e.g. \"decision_maker\"",
                    role.get_ref()
                ),
            ),
        }
    }

    let mut placeholders = BTreeMap::new();
    let builtin: BTreeSet<&str> = COMMON_PLACEHOLDERS
        .iter()
        .chain(SOURCES_PLACEHOLDERS.iter())
        .copied()
        .collect();
    for (k, v) in &raw.placeholders {
        if builtin.contains(k.as_str()) {
            c.err(
                v.span().start,
                format!("placeholder {k:?} is built in; choose another name"),
            );
        } else if RuleName::parse(k).is_err() {
            c.err(
                v.span().start,
                format!("placeholder name {k:?}: use lowercase letters, digits and _"),
            );
        } else {
            placeholders.insert(k.clone(), v.get_ref().clone());
        }
    }

    let mut plans: Vec<PlanOffer> = Vec::new();
    for p in &raw.plans {
        let raw_plan = p.get_ref();
        let name = raw_plan.name.get_ref().trim().to_owned();
        let at = raw_plan.name.span().start;
        if name.is_empty() {
            c.err(at, "plan name is empty");
            continue;
        }
        if plans.iter().any(|q| q.name == name) {
            c.err(at, format!("plan {name:?} is listed twice"));
            continue;
        }
        let price = *raw_plan.price.get_ref();
        if !(price.is_finite() && price >= 0.0) {
            c.err(
                raw_plan.price.span().start,
                format!("plan {name:?}: price {price} must be a number >= 0"),
            );
            continue;
        }
        let included_usage = match &raw_plan.included_usage {
            Some(u) if !(u.get_ref().is_finite() && *u.get_ref() >= 0.0) => {
                c.err(
                    u.span().start,
                    format!(
                        "plan {name:?}: included_usage {} must be a number >= 0 (leave it out for unlimited)",
                        u.get_ref()
                    ),
                );
                continue;
            }
            Some(u) => Some(*u.get_ref()),
            None => None,
        };
        plans.push(PlanOffer {
            name,
            price,
            included_usage,
        });
    }

    let mut rules: Vec<Rule> = Vec::new();
    for r in &raw.rules {
        if let Some(rule) = check_rule(&mut c, r, &contact_roles, &placeholders, &plans)
            && !rules.iter().any(|q| q.name == rule.name)
        {
            rules.push(rule);
        } else if let Ok(name) = RuleName::parse(r.get_ref().name.get_ref())
            && rules.iter().any(|q| q.name == name)
        {
            c.rule_err(
                r.get_ref().name.span().start,
                name.as_str(),
                "a rule with this name is already defined; rule names are nudge kinds and must be unique",
            );
        }
    }
    if raw.rules.is_empty() {
        c.errors.push(CheckError {
            file: file.to_owned(),
            line: 0,
            message: "the playbook has no rules; add [[rules]] tables".into(),
        });
    }
    if c.errors.is_empty() {
        Ok(Playbook {
            origin: file.to_owned(),
            rules,
            plans,
            contact_roles,
            placeholders,
            guardrails: raw.guardrails.clone(),
        })
    } else {
        c.errors.sort_by_key(|e| e.line);
        Err(CheckErrors(c.errors))
    }
}

const SOURCES_PLACEHOLDERS: &[&str] = &[
    "signup_date",
    "due_date",
    "contract_end",
    "milestone_years",
    "milestone_months",
    "event_date",
    "complaint_date",
    "complaint_days",
    "better_plan",
    "better_plan_price",
    "monthly_saving",
    "yearly_saving",
    "new_customer_price",
];

fn days(c: &mut Checker<'_>, rule: &str, v: &Option<Spanned<i64>>, key: &str) -> Option<u32> {
    let v = v.as_ref()?;
    match u32::try_from(*v.get_ref()) {
        Ok(d) if d <= 3650 => Some(d),
        _ => {
            c.rule_err(
                v.span().start,
                rule,
                format!(
                    "{key} = {} must be a whole number of days from 0 to 3650",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

fn check_rule(
    c: &mut Checker<'_>,
    r: &Spanned<RawRule>,
    roles: &[String],
    custom: &BTreeMap<String, String>,
    plans: &[PlanOffer],
) -> Option<Rule> {
    let at = r.span().start;
    let raw = r.get_ref();
    let before = c.errors.len();
    let name = match RuleName::parse(raw.name.get_ref()) {
        Ok(n) => n,
        Err(e) => {
            c.err(raw.name.span().start, e.to_string());
            return None;
        }
    };
    let n = name.as_str().to_owned();
    if !STAGES.contains(&raw.stage.get_ref().as_str()) {
        c.rule_err(
            raw.stage.span().start,
            &n,
            format!(
                "unknown stage {:?}; stages are: {}",
                raw.stage.get_ref(),
                quoted(STAGES)
            ),
        );
    }
    let regulatory = raw.regulatory;
    let trigger = check_trigger(c, &n, &raw.trigger, plans);

    let action = match raw
        .action
        .as_ref()
        .map(|a| (a.get_ref().as_str(), a.span().start))
    {
        None | Some(("message", _)) => {
            if let Some(t) = &raw.team {
                c.rule_err(t.span().start, &n, "team applies to action = \"task\" only");
            }
            Action::Message
        }
        Some(("task", a)) => match &raw.team {
            Some(t) if !t.get_ref().trim().is_empty() => Action::Task {
                team: t.get_ref().trim().to_owned(),
            },
            _ => {
                c.rule_err(a, &n, "a task needs a team, e.g. team = \"service\"");
                Action::Message
            }
        },
        Some((other, a)) => {
            c.rule_err(
                a,
                &n,
                format!("unknown action {other:?}; use \"message\" or \"task\""),
            );
            Action::Message
        }
    };
    let is_task = matches!(action, Action::Task { .. });
    let channels = match &raw.channels {
        None => vec![
            ChannelPref::Preferred,
            ChannelPref::Fixed(Channel::Email),
            ChannelPref::Fixed(Channel::Sms),
            ChannelPref::Fixed(Channel::Post),
        ],
        Some(list) => {
            if is_task {
                c.rule_err(
                    list.span().start,
                    &n,
                    "a task goes to a team, not through a channel; remove channels",
                );
            }
            let mut out = Vec::new();
            for ch in list.get_ref() {
                if ch.get_ref() == "preferred" {
                    out.push(ChannelPref::Preferred);
                    continue;
                }
                match ch.get_ref().parse::<Channel>() {
                    Ok(x) => out.push(ChannelPref::Fixed(x)),
                    Err(e) => c.rule_err(
                        ch.span().start,
                        &n,
                        format!("{e}, or \"preferred\" (the recipient's preferred channel)"),
                    ),
                }
            }
            if out.is_empty() && !is_task {
                c.rule_err(
                    list.span().start,
                    &n,
                    "channels is empty; list at least one",
                );
            }
            out
        }
    };
    let priority = match &raw.priority {
        None => DEFAULT_PRIORITY,
        Some(p) => match u8::try_from(*p.get_ref()) {
            Ok(v) if v <= 100 => v,
            _ => {
                c.rule_err(
                    p.span().start,
                    &n,
                    format!(
                        "priority {} must be from 0 to 100 (higher goes first)",
                        p.get_ref()
                    ),
                );
                DEFAULT_PRIORITY
            }
        },
    };
    let expires_after_days = match days(c, &n, &raw.expires_after_days, "expires_after_days") {
        Some(0) => {
            let at = raw
                .expires_after_days
                .as_ref()
                .map(|s| s.span().start)
                .unwrap_or(at);
            c.rule_err(at, &n, "expires_after_days must be at least 1");
            1
        }
        Some(d) => d,
        None => DEFAULT_EXPIRES_AFTER_DAYS,
    };
    let review = match raw
        .review
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span().start))
    {
        None | Some(("each", _)) => Review::Each,
        Some(("rule", _)) => Review::Rule,
        Some((other, a)) => {
            c.rule_err(
                a,
                &n,
                format!(
                    "unknown review {other:?}; use \"each\" (a person reviews every nudge) or \"rule\" (approved with the rule)"
                ),
            );
            Review::Each
        }
    };
    let contact_role = match &raw.contact_role {
        None => None,
        Some(role) if is_task => {
            c.rule_err(
                role.span().start,
                &n,
                "a task goes to a team; remove contact_role",
            );
            None
        }
        Some(role) if roles.contains(role.get_ref()) => Some(role.get_ref().clone()),
        Some(role) => {
            c.rule_err(
                role.span().start,
                &n,
                format!(
                    "unknown contact role {:?}; contact_roles at the top of the file are: {}",
                    role.get_ref(),
                    if roles.is_empty() {
                        "(none)".to_owned()
                    } else {
                        quoted(roles)
                    }
                ),
            );
            None
        }
    };
    let holdout = match &raw.holdout {
        None if regulatory => 0.0,
        None => DEFAULT_HOLDOUT,
        Some(h) => {
            let v = *h.get_ref();
            if !(v.is_finite() && (0.0..0.9).contains(&v)) {
                c.rule_err(
                    h.span().start,
                    &n,
                    format!("holdout {v} must be a share from 0 to below 0.9, e.g. 0.1"),
                );
            } else if regulatory && v > 0.0 {
                c.rule_err(
                    h.span().start,
                    &n,
                    "a regulatory notice must reach everyone it applies to; set holdout = 0",
                );
            }
            v
        }
    };
    if regulatory && is_task {
        c.rule_err(
            at,
            &n,
            "a regulatory notice is a message to the customer, not a task",
        );
    }

    let message = match Template::parse(raw.message.get_ref()) {
        Ok(t) => {
            let allowed: Vec<&str> = COMMON_PLACEHOLDERS
                .iter()
                .copied()
                .chain(
                    trigger
                        .as_ref()
                        .map(|t| t.source.placeholders())
                        .unwrap_or(&[])
                        .iter()
                        .copied(),
                )
                .chain(custom.keys().map(String::as_str))
                .collect();
            for p in t.placeholders() {
                if !allowed.contains(&p) {
                    let where_known = if SOURCES_PLACEHOLDERS.contains(&p) {
                        format!(
                            " ({{{p}}} is known only to triggers that have it, and this rule's trigger is on = {:?})",
                            trigger.as_ref().map(|t| t.source.name()).unwrap_or("?")
                        )
                    } else {
                        String::new()
                    };
                    c.rule_err(
                        raw.message.span().start,
                        &n,
                        format!(
                            "unknown placeholder {{{p}}} in message{where_known}; this rule may use: {}",
                            allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            t
        }
        Err(TemplateError(m)) => {
            c.rule_err(raw.message.span().start, &n, format!("message: {m}"));
            Template::default()
        }
    };
    if raw.message.get_ref().trim().is_empty() {
        c.rule_err(raw.message.span().start, &n, "message is empty");
    }

    // Long-standing customers get offers at least as good as new ones.
    if raw.offer
        && let Some(t) = &trigger
    {
        let new_only = matches!(
            t.source,
            Source::Signup { .. } | Source::FirstInvoiceDue { .. }
        ) || t.when.iter().any(|cond| {
            cond.feature == "tenure_months" && matches!(cond.op, Op::Lt | Op::Le | Op::Eq)
        });
        if new_only {
            c.rule_err(
                raw.trigger.span().start,
                &n,
                "an offer must be open to long-standing customers as well as new ones: its trigger limits it to new customers (signup, first invoice or a tenure_months upper bound); offer it whatever the tenure",
            );
        }
    }

    if c.errors.len() > before {
        return None;
    }
    Some(Rule {
        name,
        stage: raw.stage.get_ref().clone(),
        description: raw.description.clone(),
        trigger: trigger?,
        action,
        channels,
        priority,
        message,
        message_text: raw.message.get_ref().clone(),
        expires_after_days,
        review,
        contact_role,
        holdout,
        regulatory,
        offer: raw.offer,
        line: c.lines.line(at),
    })
}

fn check_trigger(
    c: &mut Checker<'_>,
    n: &str,
    t: &Spanned<RawTrigger>,
    plans: &[PlanOffer],
) -> Option<Trigger> {
    let raw = t.get_ref();
    let at = raw.on.span().start;
    let on = raw.on.get_ref().as_str();
    let before = c.errors.len();
    // Which keys each source takes; any other is a mistake worth pointing at.
    let (allowed, required): (&[&str], &[&str]) = match on {
        "signup" => (&["within_days"], &["within_days"]),
        "first_invoice_due" | "contract_end" => (&["days_before"], &["days_before"]),
        "tenure_milestone" => (&["months", "within_days"], &["months", "within_days"]),
        "event" => (
            &["event", "within_days", "unless"],
            &["event", "within_days"],
        ),
        "complaint_open" => (&["min_age_days", "max_age_days"], &[]),
        "complaint_reopened" => (&["within_days"], &["within_days"]),
        "support_after_first_invoice" => (&["within_days", "after_days"], &["within_days"]),
        "better_plan" => (&["min_saving"], &[]),
        "above_new_customer_price" => {
            (&["min_tenure_months", "min_saving"], &["min_tenure_months"])
        }
        "state" => (&["every_days"], &["every_days"]),
        other => {
            c.rule_err(
                at,
                n,
                format!(
                    "unknown trigger on = {other:?}; triggers are: {}",
                    quoted(SOURCES)
                ),
            );
            return None;
        }
    };
    let present: Vec<(&str, usize)> = [
        ("event", raw.event.as_ref().map(|s| s.span().start)),
        ("unless", raw.unless.as_ref().map(|s| s.span().start)),
        (
            "within_days",
            raw.within_days.as_ref().map(|s| s.span().start),
        ),
        (
            "days_before",
            raw.days_before.as_ref().map(|s| s.span().start),
        ),
        (
            "after_days",
            raw.after_days.as_ref().map(|s| s.span().start),
        ),
        (
            "min_age_days",
            raw.min_age_days.as_ref().map(|s| s.span().start),
        ),
        (
            "max_age_days",
            raw.max_age_days.as_ref().map(|s| s.span().start),
        ),
        (
            "every_days",
            raw.every_days.as_ref().map(|s| s.span().start),
        ),
        ("months", raw.months.as_ref().map(|s| s.span().start)),
        (
            "min_saving",
            raw.min_saving.as_ref().map(|s| s.span().start),
        ),
        (
            "min_tenure_months",
            raw.min_tenure_months.as_ref().map(|s| s.span().start),
        ),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect();
    for (k, s) in &present {
        if !allowed.contains(k) {
            c.rule_err(
                *s,
                n,
                format!(
                    "trigger key {k} does not apply to on = {on:?}; it takes: {}",
                    if allowed.is_empty() {
                        "no other keys".to_owned()
                    } else {
                        quoted(allowed)
                    }
                ),
            );
        }
    }
    for k in required {
        if !present.iter().any(|(p, _)| p == k) {
            c.rule_err(at, n, format!("trigger on = {on:?} needs {k}"));
        }
    }
    let within = days(c, n, &raw.within_days, "within_days").unwrap_or(0);
    let event_kind = |c: &mut Checker<'_>, v: &Option<Spanned<String>>| -> Option<Meaning> {
        let v = v.as_ref()?;
        match v.get_ref().parse::<Meaning>() {
            Ok(k) => Some(k),
            Err(e) => {
                c.rule_err(v.span().start, n, e.to_string());
                None
            }
        }
    };
    let source = match on {
        "signup" => Source::Signup {
            within_days: within,
        },
        "first_invoice_due" => Source::FirstInvoiceDue {
            days_before: days(c, n, &raw.days_before, "days_before").unwrap_or(0),
        },
        "contract_end" => Source::ContractEnd {
            days_before: days(c, n, &raw.days_before, "days_before").unwrap_or(0),
        },
        "tenure_milestone" => {
            let mut months = Vec::new();
            if let Some(m) = &raw.months {
                for v in m.get_ref() {
                    match u32::try_from(*v) {
                        Ok(x) if (1..=1200).contains(&x) => months.push(x),
                        _ => c.rule_err(
                            m.span().start,
                            n,
                            format!("months: {v} is not a tenure in months from 1 to 1200"),
                        ),
                    }
                }
                if months.is_empty() {
                    c.rule_err(
                        m.span().start,
                        n,
                        "months is empty; list milestones such as [12, 24, 60]",
                    );
                }
            }
            Source::TenureMilestone {
                months,
                within_days: within,
            }
        }
        "event" => {
            let kind = event_kind(c, &raw.event);
            let unless = event_kind(c, &raw.unless);
            Source::Event {
                kind: kind.unwrap_or(Meaning::Usage),
                within_days: within,
                unless,
            }
        }
        "complaint_open" => {
            let min_age_days = days(c, n, &raw.min_age_days, "min_age_days").unwrap_or(0);
            let max_age_days = days(c, n, &raw.max_age_days, "max_age_days");
            if let Some(max) = max_age_days
                && max < min_age_days
            {
                c.rule_err(
                    at,
                    n,
                    format!("max_age_days {max} is below min_age_days {min_age_days}"),
                );
            }
            Source::ComplaintOpen {
                min_age_days,
                max_age_days,
            }
        }
        "complaint_reopened" => Source::ComplaintReopened {
            within_days: within,
        },
        "support_after_first_invoice" => Source::SupportAfterFirstInvoice {
            within_days: within,
            after_days: days(c, n, &raw.after_days, "after_days").unwrap_or(30),
        },
        "better_plan" => {
            if plans.is_empty() {
                c.rule_err(
                    at,
                    n,
                    "on = \"better_plan\" compares with the plan catalogue, and the file has no [[plans]]",
                );
            }
            Source::BetterPlan {
                min_saving: saving(c, n, &raw.min_saving),
            }
        }
        "above_new_customer_price" => {
            if plans.is_empty() {
                c.rule_err(
                    at,
                    n,
                    "on = \"above_new_customer_price\" compares with the plan catalogue, and the file has no [[plans]]",
                );
            }
            Source::AboveNewCustomerPrice {
                min_tenure_months: raw
                    .min_tenure_months
                    .as_ref()
                    .and_then(|v| u32::try_from(*v.get_ref()).ok())
                    .unwrap_or(0),
                min_saving: saving(c, n, &raw.min_saving),
            }
        }
        _ => {
            let every = days(c, n, &raw.every_days, "every_days").unwrap_or(1);
            if every == 0 {
                c.rule_err(at, n, "every_days must be at least 1");
            }
            if raw.when.is_empty() && raw.risk.is_none() {
                c.rule_err(
                    at,
                    n,
                    "on = \"state\" needs conditions (when = [...] or risk = [...]); without them it fires for every customer",
                );
            }
            Source::State { every_days: every }
        }
    };
    let mut risk = Vec::new();
    if let Some(list) = &raw.risk {
        for b in list.get_ref() {
            match RiskBand::parse(b.get_ref()) {
                Some(band) => risk.push(band),
                None => c.rule_err(
                    b.span().start,
                    n,
                    format!(
                        "unknown risk band {:?}; bands are: low, medium, high",
                        b.get_ref()
                    ),
                ),
            }
        }
    }
    let known = known_features();
    let mut when = Vec::new();
    for w in &raw.when {
        match parse_condition(w.get_ref(), &known) {
            Ok(cond) => when.push(cond),
            Err(m) => c.rule_err(w.span().start, n, m),
        }
    }
    (c.errors.len() == before).then_some(Trigger { source, risk, when })
}

fn saving(c: &mut Checker<'_>, n: &str, v: &Option<Spanned<f64>>) -> f64 {
    match v {
        None => 0.0,
        Some(s) if s.get_ref().is_finite() && *s.get_ref() >= 0.0 => *s.get_ref(),
        Some(s) => {
            c.rule_err(
                s.span().start,
                n,
                format!("min_saving {} must be a number >= 0", s.get_ref()),
            );
            0.0
        }
    }
}

/// Parses `feature OP value`: OP is one of `< <= > >= == !=`; the value a number or, for
/// a feature that is text (`contract`, `plan`, `attr.*`), a word or a quoted string.
pub fn parse_condition(raw: &str, known: &[(&str, bool)]) -> Result<Condition, String> {
    const OPS: [(&str, Op); 6] = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
    ];
    let Some((pos, sym, op)) = OPS
        .iter()
        .filter_map(|(s, o)| raw.find(s).map(|p| (p, *s, *o)))
        .min_by_key(|(p, s, _)| (*p, std::cmp::Reverse(s.len())))
    else {
        return Err(format!(
            "condition {raw:?} has no comparison; write e.g. \"usage_trend <= -0.3\" (one of < <= > >= == !=)"
        ));
    };
    let feature = raw[..pos].trim();
    let value = raw[pos + sym.len()..].trim();
    let is_num = if let Some(attr) = feature.strip_prefix(features::ATTRIBUTE_PREFIX) {
        if attr.is_empty() {
            return Err(format!(
                "condition {raw:?}: name the attribute, e.g. attr.segment"
            ));
        }
        None
    } else {
        match known.iter().find(|(k, _)| *k == feature) {
            Some((_, num)) => Some(*num),
            None => {
                return Err(format!(
                    "unknown feature {feature:?}; known features: {}, and attr.NAME for a customer attribute",
                    quoted(known.iter().map(|(k, _)| *k))
                ));
            }
        }
    };
    if value.is_empty() {
        return Err(format!("condition {raw:?} has no value after {sym}"));
    }
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    let value = match (unquoted, value.parse::<f64>()) {
        (None, Ok(x)) if x.is_finite() => CondValue::Num(x),
        (Some(text), _) => CondValue::Text(text.to_owned()),
        (None, _) => CondValue::Text(value.to_owned()),
    };
    match (is_num, &value, op) {
        (Some(true), CondValue::Text(t), _) => Err(format!(
            "condition {raw:?}: {feature} is a number, and {t:?} is not"
        )),
        (Some(false), CondValue::Num(_), _) => Err(format!(
            "condition {raw:?}: {feature} is text; quote the value, e.g. {feature} == \"month_to_month\""
        )),
        (_, CondValue::Text(_), Op::Lt | Op::Le | Op::Gt | Op::Ge) => Err(format!(
            "condition {raw:?}: text compares with == or != only"
        )),
        _ => Ok(Condition {
            feature: feature.to_owned(),
            op,
            value,
            text: raw.trim().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
contact_roles = ["decision_maker"]

[[rules]]
name = "welcome"
stage = "early_days"
trigger = { on = "signup", within_days = 7 }
message = "Welcome {first_name}"
"#;

    #[test]
    fn default_playbook_is_valid_and_covers_every_stage() {
        let p = parse(DEFAULT_NAME, DEFAULT_PLAYBOOK).unwrap_or_else(|e| panic!("{e}"));
        for stage in STAGES {
            assert!(
                p.rules.iter().any(|r| r.stage == *stage),
                "no default rule for stage {stage}"
            );
        }
        assert!(p.rules.iter().all(|r| r.line > 0));
        let ombudsman = p.rule("ombudsman_notice").unwrap();
        assert!(ombudsman.regulatory && ombudsman.holdout == 0.0);
        assert_eq!(
            ombudsman.trigger.source,
            Source::ComplaintOpen {
                min_age_days: 56,
                max_age_days: None
            }
        );
    }

    #[test]
    fn minimal_rule_gets_the_defaults() {
        let p = parse("p.toml", MINIMAL).unwrap();
        let r = &p.rules[0];
        assert_eq!(
            (
                r.priority,
                r.holdout,
                r.expires_after_days,
                r.review,
                r.line
            ),
            (
                DEFAULT_PRIORITY,
                DEFAULT_HOLDOUT,
                DEFAULT_EXPIRES_AFTER_DAYS,
                Review::Each,
                4
            )
        );
        assert_eq!(r.channels[0], ChannelPref::Preferred);
    }

    fn errors(text: &str) -> Vec<String> {
        parse("p.toml", text)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn unknown_feature_points_at_its_line_and_lists_the_known_ones() {
        let text = format!(
            "{MINIMAL}\n[[rules]]\nname = \"bill_explainer\"\nstage = \"early_days\"\nmessage = \"x\"\n\n[rules.trigger]\non = \"state\"\nevery_days = 30\nwhen = [\n  \"usage_tren <= -0.3\",\n]\n"
        );
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "p.toml:19: rule \"bill_explainer\": unknown feature \"usage_tren\"; known features: tenure_months,"
            ),
            "{}",
            e[0]
        );
        assert!(e[0].contains("usage_trend"), "{}", e[0]);
    }

    #[test]
    fn every_problem_is_reported_at_its_line() {
        let text = r#"contact_roles = ["ops"]

[[rules]]
name = "a"
stage = "middle_age"
trigger = { on = "signup", within_days = 7 }
message = "Hi {firstname}"
priority = 300

[[rules]]
name = "b"
stage = "early_days"
trigger = { on = "event", event = "fax_received", within_days = 3 }
message = "Due {due_date}"
contact_role = "ceo"
holdout = 1.5

[[rules]]
name = "a"
stage = "early_days"
trigger = { on = "signup", within_days = 7, days_before = 3 }
message = "x"
"#;
        let e = errors(text);
        let expect = [
            "p.toml:5: rule \"a\": unknown stage \"middle_age\"",
            "p.toml:7: rule \"a\": unknown placeholder {firstname} in message",
            "p.toml:8: rule \"a\": priority 300",
            "p.toml:13: rule \"b\": unknown event kind \"fax_received\"",
            "p.toml:14: rule \"b\": unknown placeholder {due_date}",
            "p.toml:15: rule \"b\": unknown contact role \"ceo\"",
            "p.toml:16: rule \"b\": holdout 1.5",
            "p.toml:21: rule \"a\": trigger key days_before does not apply to on = \"signup\"",
        ];
        for (got, want) in e.iter().zip(expect) {
            assert!(
                got.starts_with(want),
                "{got}\n  does not start with\n{want}"
            );
        }
        assert_eq!(e.len(), expect.len(), "{e:#?}");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_point_at_the_line() {
        let e = errors("[[rules]]\nname = \"a\"\nstage = \"early_days\"\nmesage = \"x\"\n");
        assert!(
            e[0].starts_with("p.toml:4: unknown field `mesage`"),
            "{e:?}"
        );
        let e = errors("[[rules]]\nname = \"a\n");
        assert!(e[0].starts_with("p.toml:2:"), "{e:?}");
    }

    #[test]
    fn duplicate_rules_and_guardrails_at_check_time() {
        let text = format!(
            "{MINIMAL}\n[[rules]]\nname = \"welcome\"\nstage = \"early_days\"\ntrigger = {{ on = \"signup\", within_days = 3 }}\nmessage = \"again\"\n"
        );
        let e = errors(&text);
        assert!(
            e[0].starts_with(
                "p.toml:11: rule \"welcome\": a rule with this name is already defined"
            ),
            "{e:?}"
        );

        let e = errors(
            "[[rules]]\nname = \"ombudsman\"\nstage = \"first_disagreement\"\nregulatory = true\nholdout = 0.1\ntrigger = { on = \"complaint_open\", min_age_days = 56 }\nmessage = \"x\"\n",
        );
        assert!(
            e[0].contains("regulatory notice must reach everyone"),
            "{e:?}"
        );

        let e = errors(
            "[[rules]]\nname = \"promo\"\nstage = \"long_term\"\noffer = true\ntrigger = { on = \"state\", every_days = 30, when = [\"tenure_months < 3\"] }\nmessage = \"x\"\n",
        );
        assert!(
            e[0].contains("offer must be open to long-standing customers"),
            "{e:?}"
        );

        let e = errors(
            "[[rules]]\nname = \"everyone\"\nstage = \"long_term\"\ntrigger = { on = \"state\", every_days = 30 }\nmessage = \"x\"\n",
        );
        assert!(e[0].contains("fires for every customer"), "{e:?}");

        let e = errors(
            "[[rules]]\nname = \"tariff\"\nstage = \"long_term\"\ntrigger = { on = \"better_plan\" }\nmessage = \"{better_plan}\"\n",
        );
        assert!(e[0].contains("has no [[plans]]"), "{e:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Any text: a playbook or errors, every error at a line inside the file.
        #[test]
        fn never_panics(text in "\\PC{0,400}") {
            if let Err(e) = parse("p.toml", &text) {
                let lines = text.lines().count().max(1);
                for err in e.0 {
                    proptest::prop_assert!(err.line <= lines + 1, "{err} in {} lines", lines);
                }
            }
        }

        /// The default playbook with one line removed: valid, or errors that name a line.
        #[test]
        fn a_line_removed_is_reported_or_harmless(n in 0usize..400) {
            let lines: Vec<&str> = DEFAULT_PLAYBOOK.lines().collect();
            let n = n % lines.len();
            let text = lines.iter().enumerate().filter(|(i, _)| *i != n).map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
            if let Err(e) = parse("p.toml", &text) {
                proptest::prop_assert!(!e.0.is_empty());
                proptest::prop_assert!(e.0.iter().all(|err| err.line >= 1), "{e}");
            }
        }
    }

    #[test]
    fn conditions() {
        let known = known_features();
        let c = parse_condition("usage_trend <= -0.3", &known).unwrap();
        assert_eq!((c.op, c.value), (Op::Le, CondValue::Num(-0.3)));
        let c = parse_condition("contract == \"month_to_month\"", &known).unwrap();
        assert_eq!(c.value, CondValue::Text("month_to_month".into()));
        let c = parse_condition("attr.segment != small_business", &known).unwrap();
        assert_eq!(
            (c.op, c.value),
            (Op::Ne, CondValue::Text("small_business".into()))
        );
        for (bad, msg) in [
            ("usage_trend", "has no comparison"),
            ("usage_trend <= low", "is a number"),
            ("contract == 3", "is text"),
            ("contract < \"x\"", "== or != only"),
            ("attr. == x", "name the attribute"),
            ("logins <= 3", "unknown feature \"logins\""),
        ] {
            let e = parse_condition(bad, &known).unwrap_err();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
