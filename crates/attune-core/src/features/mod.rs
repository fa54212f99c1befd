//! Point-in-time features: what attune knows about a customer as of a given day.
//!
//! A [`FeatureSpec`] (the `features.toml` data teams edit) names the features; [`compute`]
//! turns a customer's record and their daily [`Activity`] *before* the day into named
//! values. The same function serves training (as of past days, with only what was known
//! then) and scoring (as of today), so the two cannot drift apart, and it reads rollups,
//! never raw history. Pure: no I/O, no clock; the store reads the rollups.

pub mod auto;
pub mod churn;
mod spec;

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::domain::{Customer, KindCode};
pub use spec::{
    Attributes, CustomerField, DEFAULT_SPEC, DateField, FEATURE_TYPES, FeatureDef, FeatureKind,
    FeatureSpec, IfNone, Kinds, Lookback, MAX_LEVELS, NoActivity, PLACEHOLDERS, SpecError, Stat,
    TenureUnit, Window,
};

/// One feature's value before encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureValue {
    Num(f64),
    Cat(String),
    /// Not known for this customer (no activity yet, no contract end). Encoded as the
    /// training mean for numbers and as no level for categories.
    Missing,
}

/// Named feature values of one customer on one day.
pub type FeatureRow = BTreeMap<String, FeatureValue>;

/// One day's rollup of one kind of event for a customer: how many, and the sum of their
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DayCount {
    /// Whole days since 1970-01-01 (UTC).
    pub day: i32,
    pub kind: KindCode,
    pub n: u32,
    pub total: f64,
}

/// A customer's daily activity rollups, in day order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    days: Vec<DayCount>,
    /// Rollups that exist before the day they were read for but were not read (kinds or
    /// days no feature looks at): they still mean the customer had activity.
    #[serde(default)]
    unread: u32,
}

/// Whole days since 1970-01-01 of `day`.
pub fn day_number(day: NaiveDate) -> i32 {
    (day - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days() as i32
}

/// The day a day number stands for.
pub fn day_from_number(n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid") + chrono::Duration::days(n as i64)
}

impl Activity {
    pub fn new(mut days: Vec<DayCount>) -> Self {
        days.sort_by_key(|d| (d.day, d.kind));
        Self { days, unread: 0 }
    }

    /// Rollups read for one day with a [`Lookback`]: `unread` more exist before that day.
    pub fn partial(days: Vec<DayCount>, unread: u32) -> Self {
        Self {
            unread,
            ..Self::new(days)
        }
    }

    /// Rolls raw events up by day and kind, as ingest does (values to a thousandth).
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a crate::domain::ActivityEvent>,
    ) -> Self {
        let mut map: BTreeMap<(i32, KindCode), (u32, i64)> = BTreeMap::new();
        for e in events {
            let day = e.occurred_at.timestamp().div_euclid(86_400) as i32;
            let entry = map.entry((day, e.kind)).or_default();
            entry.0 += 1;
            entry.1 += milli(e.value);
        }
        Self::new(
            map.into_iter()
                .map(|((day, kind), (n, m))| DayCount {
                    day,
                    kind,
                    n,
                    total: m as f64 / 1000.0,
                })
                .collect(),
        )
    }

    pub fn days(&self) -> &[DayCount] {
        &self.days
    }

    /// Whether the customer had any activity before `day` (read or not).
    pub fn any_before(&self, day: i32) -> bool {
        self.unread > 0 || !self.before(day).is_empty()
    }

    /// The rollups of days before `day`.
    pub fn before(&self, day: i32) -> &[DayCount] {
        &self.days[..self.days.partition_point(|d| d.day < day)]
    }
}

/// An event's value in the thousandths rollups keep.
pub fn milli(value: Option<f64>) -> i64 {
    (value.unwrap_or(0.0) * 1000.0).round() as i64
}

/// Whole calendar months from `from` to `to` (0 if `to` is earlier).
pub fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    if to <= from {
        return 0;
    }
    let mut m =
        (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
    if to.day() < from.day() && !is_month_end_clamped(from, to) {
        m -= 1;
    }
    m.max(0)
}

/// `from` fell on a day `to`'s month does not have (31 Mar back one month is 28 Feb):
/// a clamped month end counts as a whole month.
fn is_month_end_clamped(from: NaiveDate, to: NaiveDate) -> bool {
    let last_of_to_month = NaiveDate::from_ymd_opt(to.year(), to.month(), 1)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .and_then(|d| d.pred_opt())
        .map(|d| d.day());
    last_of_to_month == Some(to.day()) && from.day() > to.day()
}

/// Prefix of features taken from a customer's free-form attributes.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

fn window_stat(days: &[DayCount], stat: Stat, kinds: &Kinds, from: i32, to: i32) -> f64 {
    days.iter()
        .rev()
        .take_while(|d| d.day >= from)
        .filter(|d| d.day < to && kinds.has(d.kind))
        .map(|d| match stat {
            Stat::Count => d.n as f64,
            Stat::Sum => d.total,
        })
        // Folded from +0.0: an empty sum of f64 is -0.0, which reads as "-0 logins".
        .fold(0.0, |a, b| a + b)
}

/// The features of `customer` as of the start of `as_of`, as `spec` defines them, from the
/// customer's activity before that day: [`compute_values`] by name, with the attributes
/// the spec takes (`attr.NAME`).
pub fn compute(
    spec: &FeatureSpec,
    customer: &Customer,
    activity: &Activity,
    as_of: NaiveDate,
) -> FeatureRow {
    let mut values = Vec::with_capacity(spec.features.len());
    compute_values(spec, customer, activity, as_of, &mut values);
    let mut row: FeatureRow = spec
        .features
        .iter()
        .map(|def| def.name.clone())
        .zip(values)
        .collect();
    for (k, v) in &customer.attributes {
        if spec.takes_attribute(k) {
            row.insert(format!("{ATTRIBUTE_PREFIX}{k}"), attribute_value(v));
        }
    }
    row
}

/// The values of the spec's features for `customer` as of the start of `as_of`, in the
/// spec's order, replacing what `out` held: what [`compute`] names, without a map per
/// customer (scoring computes these for every customer and reads them through a
/// [`Locator`]).
pub fn compute_values(
    spec: &FeatureSpec,
    customer: &Customer,
    activity: &Activity,
    as_of: NaiveDate,
    out: &mut Vec<FeatureValue>,
) {
    use FeatureValue::{Cat, Missing, Num};
    out.clear();
    let today = day_number(as_of);
    let days = activity.before(today);
    let known = activity.any_before(today);
    // A ratio reads features defined before it (names are unique).
    fn earlier<'v>(
        spec: &FeatureSpec,
        out: &'v [FeatureValue],
        name: &str,
    ) -> Option<&'v FeatureValue> {
        spec.features[..out.len()]
            .iter()
            .position(|f| f.name == name)
            .map(|j| &out[j])
    }
    for def in &spec.features {
        let value = if def.kind.reads_activity() && !known {
            match (def.no_activity, &def.kind) {
                (NoActivity::Unknown, _) => Missing,
                // Never in touch: as `if_none` says.
                (NoActivity::Zero, FeatureKind::DaysSince { .. }) => {
                    activity_value(&def.kind, customer, &[], today, as_of)
                }
                (NoActivity::Zero, _) => Num(0.0),
            }
        } else {
            match &def.kind {
                FeatureKind::Tenure(TenureUnit::Months) => {
                    Num(months_between(customer.signup_date, as_of) as f64)
                }
                FeatureKind::Tenure(TenureUnit::Days) => {
                    Num((as_of - customer.signup_date).num_days().max(0) as f64)
                }
                FeatureKind::Field(f) => match f {
                    CustomerField::MonthlyCharge => Num(customer.monthly_charge),
                    CustomerField::Contract => Cat(customer.contract_type.as_str().to_owned()),
                    CustomerField::Plan => Cat(customer.plan.clone()),
                    CustomerField::PreferredChannel => {
                        Cat(customer.preferred_channel.as_str().to_owned())
                    }
                },
                FeatureKind::MonthsUntil(f) => {
                    let day = match f {
                        DateField::ContractEnd => customer.contract_end,
                        DateField::FirstInvoiceDue => customer.first_invoice_due,
                    };
                    day.map(|end| {
                        Num(if end <= as_of {
                            0.0
                        } else {
                            (end - as_of).num_days() as f64 / 30.4375
                        })
                    })
                    .unwrap_or(Missing)
                }
                FeatureKind::Ratio {
                    numerator,
                    denominator,
                } => match (
                    earlier(spec, out, numerator),
                    earlier(spec, out, denominator),
                ) {
                    (Some(Num(a)), Some(Num(b))) if *b != 0.0 => Num(a / b),
                    _ => Missing,
                },
                FeatureKind::Attribute { attribute } => customer
                    .attributes
                    .get(attribute)
                    .map_or(Missing, |v| attribute_value(v)),
                activity_kind => activity_value(activity_kind, customer, days, today, as_of),
            }
        };
        out.push(value);
    }
}

/// The order [`compute`]'s map holds its entries in (by name, the attributes the spec
/// takes among the spec's features), for [`compute_values`]' values: what builds columns
/// by name (training's frame) needs, without a map per observation.
#[derive(Debug, Clone)]
pub struct NamedOrder {
    /// The spec's features by name.
    sorted: Vec<usize>,
}

impl NamedOrder {
    pub fn new(spec: &FeatureSpec) -> Self {
        let mut sorted: Vec<usize> = (0..spec.features.len()).collect();
        sorted.sort_by(|&a, &b| spec.features[a].name.cmp(&spec.features[b].name));
        Self { sorted }
    }

    /// Calls `each` with every name and value `compute(spec, customer, ..)` holds, in
    /// the map's order, from the customer's [`compute_values`] `values`.
    pub fn for_each(
        &self,
        spec: &FeatureSpec,
        customer: &Customer,
        values: &[FeatureValue],
        each: &mut dyn FnMut(&str, &FeatureValue),
    ) {
        let mut attributes = customer
            .attributes
            .iter()
            .filter(|(k, _)| spec.takes_attribute(k));
        let mut features = self.sorted.iter().copied().peekable();
        // The next attribute, with its feature's name.
        let mut name = String::new();
        let mut next_attribute = |name: &mut String| {
            attributes.next().map(|(k, v)| {
                name.clear();
                name.push_str(ATTRIBUTE_PREFIX);
                name.push_str(k);
                attribute_value(v)
            })
        };
        let mut attribute = next_attribute(&mut name);
        loop {
            match (features.peek().copied(), &attribute) {
                (None, None) => return,
                (Some(j), None) => {
                    each(&spec.features[j].name, &values[j]);
                    features.next();
                }
                (f, Some(value)) => {
                    let order = f.map(|j| spec.features[j].name.as_str().cmp(name.as_str()));
                    match order {
                        Some(std::cmp::Ordering::Less) => {
                            let j = f.expect("a feature");
                            each(&spec.features[j].name, &values[j]);
                            features.next();
                        }
                        // An attribute named as a feature replaces it, as in the map.
                        Some(std::cmp::Ordering::Equal) => {
                            each(&name, value);
                            features.next();
                            attribute = next_attribute(&mut name);
                        }
                        Some(std::cmp::Ordering::Greater) | None => {
                            each(&name, value);
                            attribute = next_attribute(&mut name);
                        }
                    }
                }
            }
        }
    }
}

/// Where named features (a model's sources, a drift profile's) are found among
/// [`compute_values`]: the name [`compute`] would give each value, resolved once per spec
/// instead of looked up in a map per customer. `get` gives what `compute(..).get(name)`
/// gives, attributes included (`attr.NAME`, read from the customer by [`Locator::fill`]).
#[derive(Debug, Clone)]
pub struct Locator {
    slots: Vec<Slot>,
    /// The attributes asked for, by name, each with the spec's feature of the same full
    /// name if there is one (what a customer without the attribute has under that name).
    attributes: Vec<(String, Option<usize>)>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The spec's feature at this position.
    Spec(usize),
    /// The attribute at this position of [`Locator::fill`]'s output.
    Attribute(usize),
    /// A name `compute` never gives.
    Absent,
}

impl Locator {
    pub fn new<'n>(spec: &FeatureSpec, names: impl IntoIterator<Item = &'n str>) -> Self {
        let mut attributes: Vec<(String, Option<usize>)> = Vec::new();
        let slots = names
            .into_iter()
            .map(|name| {
                let own = spec.features.iter().position(|f| f.name == name);
                match name.strip_prefix(ATTRIBUTE_PREFIX) {
                    // `compute` inserts attributes after the spec's features: an attribute
                    // the customer has wins over a feature of the same full name.
                    Some(attr) if spec.takes_attribute(attr) => {
                        let k = attributes
                            .iter()
                            .position(|(a, _)| a == attr)
                            .unwrap_or_else(|| {
                                attributes.push((attr.to_owned(), own));
                                attributes.len() - 1
                            });
                        Slot::Attribute(k)
                    }
                    _ => own.map_or(Slot::Absent, Slot::Spec),
                }
            })
            .collect();
        Self { slots, attributes }
    }

    /// The values of the attributes this locator reads, for `customer` whose spec values
    /// are `values`, replacing what `out` held (`None`: no value under that name).
    pub fn fill(
        &self,
        customer: &Customer,
        values: &[FeatureValue],
        out: &mut Vec<Option<FeatureValue>>,
    ) {
        out.clear();
        out.extend(
            self.attributes
                .iter()
                .map(|(attr, own)| match customer.attributes.get(attr) {
                    Some(v) => Some(attribute_value(v)),
                    None => own.map(|j| values[j].clone()),
                }),
        );
    }

    /// The value of the `i`th name given to [`Locator::new`].
    pub fn get<'v>(
        &self,
        i: usize,
        values: &'v [FeatureValue],
        attributes: &'v [Option<FeatureValue>],
    ) -> Option<&'v FeatureValue> {
        match self.slots[i] {
            Slot::Spec(j) => values.get(j),
            Slot::Attribute(k) => attributes.get(k).and_then(Option::as_ref),
            Slot::Absent => None,
        }
    }
}

/// The first day a window of `window` before `today` covers.
fn window_start(window: &Window, today: i32) -> i32 {
    match window {
        Window::Days(d) => today - *d as i32,
        Window::All => i32::MIN,
    }
}

/// An activity feature's value from the rollups `days` (all before `today`, in day order).
fn activity_value(
    kind: &FeatureKind,
    customer: &Customer,
    days: &[DayCount],
    today: i32,
    as_of: NaiveDate,
) -> FeatureValue {
    use FeatureValue::{Missing, Num};
    match kind {
        FeatureKind::Window {
            stat,
            kinds,
            window,
        } => Num(window_stat(
            days,
            *stat,
            kinds,
            window_start(window, today),
            today,
        )),
        FeatureKind::ActiveDays { kinds, window } => {
            let from = window_start(window, today);
            let mut distinct = 0u32;
            let mut last = None;
            for d in days.iter().rev().take_while(|d| d.day >= from) {
                if d.n > 0 && kinds.as_ref().is_none_or(|k| k.has(d.kind)) && last != Some(d.day) {
                    distinct += 1;
                    last = Some(d.day);
                }
            }
            Num(distinct as f64)
        }
        FeatureKind::DaysSince {
            kinds,
            cap_days,
            if_none,
        } => {
            let last = days.iter().rev().find(|d| kinds.has(d.kind)).map(|d| d.day);
            let since = match (last, if_none) {
                (Some(d), _) => Some((today - d) as f64),
                (None, IfNone::Signup) => {
                    Some((as_of - customer.signup_date).num_days().max(0) as f64)
                }
                (None, IfNone::Cap) => cap_days.map(f64::from),
                (None, IfNone::Missing) => None,
            };
            match since {
                Some(v) => Num(cap_days.map_or(v, |c| v.min(c as f64))),
                None => Missing,
            }
        }
        FeatureKind::Balance { add, subtract } => {
            // Never below 0 at any point: a subtraction with nothing to take from (a
            // resolution with no complaint open) takes nothing. Within a day, additions
            // first.
            let mut balance: i64 = 0;
            for day in days.chunk_by(|a, b| a.day == b.day) {
                let count = |set: &Kinds| -> i64 {
                    day.iter()
                        .filter(|d| set.has(d.kind))
                        .map(|d| d.n as i64)
                        .sum()
                };
                balance = (balance + count(add) - count(subtract)).max(0);
            }
            Num(balance as f64)
        }
        FeatureKind::OpenAge {
            open,
            close,
            reopen,
        } => {
            // Open items by the day they opened, oldest first; closed ones newest last.
            let mut opened: Vec<i32> = Vec::new();
            let mut closed: Vec<i32> = Vec::new();
            for on_day in days.chunk_by(|a, b| a.day == b.day) {
                let day = on_day[0].day;
                let count = |set: Option<&Kinds>| -> u32 {
                    on_day
                        .iter()
                        .filter(|d| set.is_some_and(|s| s.has(d.kind)))
                        .map(|d| d.n)
                        .sum()
                };
                let (opens, closes, reopens) = (
                    count(Some(open)),
                    count(Some(close)),
                    count(reopen.as_ref()),
                );
                opened.extend(std::iter::repeat_n(day, opens as usize));
                for _ in 0..closes {
                    if opened.is_empty() {
                        break;
                    }
                    closed.push(opened.remove(0));
                }
                for _ in 0..reopens {
                    // The latest closed item, open again from its opening day; with none
                    // closed, an item opened before the history read, from the reopening.
                    let at = closed.pop().unwrap_or(day);
                    let pos = opened.partition_point(|&d| d <= at);
                    opened.insert(pos, at);
                }
            }
            Num(opened.first().map_or(0.0, |day| (today - day) as f64))
        }
        FeatureKind::Change {
            stat,
            kinds,
            recent_days,
            prior_days,
            clamp,
        } => {
            let split = today - *recent_days as i32;
            let recent = window_stat(days, *stat, kinds, split, today) / *recent_days as f64;
            let prior = window_stat(days, *stat, kinds, split - *prior_days as i32, split)
                / *prior_days as f64;
            if prior > 0.0 {
                Num(((recent - prior) / prior).clamp(clamp.0, clamp.1))
            } else {
                Missing
            }
        }
        FeatureKind::LatestVsMean { kind, clamp } => {
            let of_kind = days.iter().filter(|d| kind.has(d.kind) && d.n > 0);
            let (mut n, mut total, mut latest) = (0u64, 0.0, None);
            for d in of_kind {
                n += d.n as u64;
                total += d.total;
                latest = Some(d.total / d.n as f64);
            }
            let mean = total / n.max(1) as f64;
            match latest {
                Some(last) if mean > 0.0 => Num((last / mean - 1.0).clamp(clamp.0, clamp.1)),
                _ => Missing,
            }
        }
        FeatureKind::Tenure(_)
        | FeatureKind::Field(_)
        | FeatureKind::MonthsUntil(_)
        | FeatureKind::Ratio { .. }
        | FeatureKind::Attribute { .. } => Missing,
    }
}

fn attribute_value(v: &str) -> FeatureValue {
    let v = v.trim();
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => FeatureValue::Num(x),
        _ if v.is_empty() => FeatureValue::Missing,
        _ => FeatureValue::Cat(v.to_owned()),
    }
}

impl FeatureSpec {
    /// A feature's value in the feature's own words, for a reviewer: "3 complaints in 90
    /// days", "usage down 40% on the prior quarter".
    pub fn describe(&self, name: &str, value: &FeatureValue) -> String {
        match self.get(name) {
            None => describe_plain(name, value),
            Some(def) => describe_in(
                def.describe.as_deref(),
                def.describe_at_cap.as_deref().zip(def.kind.cap()),
                name,
                value,
                &self.currency,
            ),
        }
    }

    /// The words [`FeatureSpec::describe`] puts feature `name`'s values in, to keep beside
    /// values that are described later (a scoring run's drivers).
    pub fn words(&self, name: &str) -> Words {
        let def = self.get(name);
        Words {
            template: def.and_then(|d| d.describe.clone()),
            at_cap: def.and_then(|d| d.describe_at_cap.clone().zip(d.kind.cap())),
        }
    }
}

/// How one feature's values are put into words: the spec's template for numbers, and the
/// words for a value at or past the feature's cap ([`FeatureSpec::words`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Words {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_cap: Option<(String, f64)>,
}

impl Words {
    /// `value` of feature `name` in these words: what the spec they came from says.
    pub fn describe(
        &self,
        name: &str,
        value: &FeatureValue,
        currency: &crate::domain::Currency,
    ) -> String {
        let at_cap = self.at_cap.as_ref().map(|(w, cap)| (w.as_str(), *cap));
        describe_in(self.template.as_deref(), at_cap, name, value, currency)
    }
}

/// The one way a value is described: by its template (numbers), else plainly.
fn describe_in(
    template: Option<&str>,
    at_cap: Option<(&str, f64)>,
    name: &str,
    value: &FeatureValue,
    currency: &crate::domain::Currency,
) -> String {
    match (value, template) {
        (FeatureValue::Num(v), Some(template)) => match at_cap {
            Some((words, cap)) if *v >= cap => words.to_owned(),
            _ => render(template, *v, currency),
        },
        _ => describe_plain(name, value),
    }
}

/// Fills a `describe` template's placeholders with `v`; `{money}` is `v` in `currency`.
pub fn render(template: &str, v: f64, currency: &crate::domain::Currency) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        let (name, fmt) = inner.split_once(':').unwrap_or((inner, ""));
        let decimals = fmt.strip_prefix('.').and_then(|d| d.parse::<usize>().ok());
        let num = |x: f64| match decimals {
            Some(p) => format!("{x:.p$}"),
            None => format!("{x}"),
        };
        match name {
            "value" => out.push_str(&num(v)),
            "money" => out.push_str(&currency.format(v)),
            "pct" => out.push_str(&num(v * 100.0)),
            "abs_pct" => out.push_str(&num((v * 100.0).abs())),
            "signed_pct" => {
                let s = num(v * 100.0);
                if v >= 0.0 {
                    out.push('+');
                }
                out.push_str(&s);
            }
            "up_down" => out.push_str(if v < 0.0 { "down" } else { "up" }),
            // The plural ending of the noun it follows: none for one of it.
            "s" => {
                if v.abs().round() != 1.0 {
                    out.push('s');
                }
            }
            _ => {
                out.push('{');
                out.push_str(inner);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Fuzzing entry point: parses `data` as a feature spec; a spec that parses must compute
/// features for a customer with some activity without panicking.
pub fn fuzz_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = FeatureSpec::parse(text, "fuzz") else {
        return;
    };
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let customer = Customer {
        external_id: crate::domain::CustomerId::parse("f").expect("valid"),
        signup_date: day - chrono::Duration::days(400),
        plan: "p".into(),
        monthly_charge: 10.0,
        contract_type: crate::domain::ContractType::MonthToMonth,
        contract_end: Some(day + chrono::Duration::days(30)),
        first_invoice_due: None,
        preferred_channel: crate::domain::Channel::Email,
        consent: crate::domain::Consent::ALL,
        churned_on: None,
        attributes: [("x".to_owned(), "1".to_owned())].into(),
    };
    let activity = Activity::new(
        crate::domain::Meaning::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| DayCount {
                day: day_number(day) - 1 - i as i32 * 7,
                kind: k.code(),
                n: i as u32 % 3,
                total: i as f64,
            })
            .collect(),
    );
    let row = compute(&spec, &customer, &activity, day);
    for (name, v) in &row {
        let _ = spec.describe(name, v);
    }
}

/// Describes a feature value in the words of the built-in spec (see [`FeatureSpec::describe`]).
pub fn describe(name: &str, value: &FeatureValue) -> String {
    static DEFAULT: std::sync::OnceLock<FeatureSpec> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(FeatureSpec::default_spec)
        .describe(name, value)
}

/// `0.4523` -> `0.45`, `3.0` -> `3`.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Describes a value of a feature the spec gives no words for.
fn describe_plain(name: &str, value: &FeatureValue) -> String {
    use FeatureValue::*;
    match (name.strip_prefix(ATTRIBUTE_PREFIX), value) {
        (_, Missing) => format!("{} unknown", name.replace('_', " ")),
        (Some(attr), Num(v)) => format!("{attr} = {}", round2(*v)),
        (Some(attr), Cat(c)) => format!("{attr} = {c}"),
        (None, Num(v)) => format!("{} = {}", name.replace('_', " "), round2(*v)),
        (None, Cat(c)) => format!("{}: {}", name.replace('_', " "), c.replace('_', " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use FeatureValue::{Cat, Missing, Num};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn customer() -> Customer {
        Customer {
            external_id: CustomerId::parse("c1").unwrap(),
            signup_date: d("2025-03-31"),
            plan: "fibre".into(),
            monthly_charge: 40.0,
            contract_type: ContractType::OneYear,
            contract_end: Some(d("2026-03-31")),
            first_invoice_due: None,
            preferred_channel: Channel::Email,
            consent: Consent::ALL,
            churned_on: None,
            attributes: [
                ("SeniorCitizen".to_owned(), "1".to_owned()),
                ("PaymentMethod".to_owned(), "Mailed check".to_owned()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn ev(kind: Meaning, day: &str, value: Option<f64>) -> ActivityEvent {
        ActivityEvent {
            customer: CustomerId::parse("c1").unwrap(),
            kind: kind.code(),
            occurred_at: d(day).and_hms_opt(12, 0, 0).unwrap().and_utc(),
            value,
            attributes: Default::default(),
            source: "t".into(),
            source_event_id: format!("{kind}-{day}-{value:?}"),
        }
    }

    fn features(events: &[ActivityEvent], as_of: &str) -> FeatureRow {
        compute(
            &FeatureSpec::default_spec(),
            &customer(),
            &Activity::from_events(events),
            d(as_of),
        )
    }

    /// What scoring computes a customer at a time (values by position, read through
    /// [`Locator`]s) is what the rows by name give, bit for bit, on a simulated population
    /// with attributes, a ratio of features defined before and after it, model sources the
    /// spec does not compute, and a profile of an attribute some customers lack.
    #[test]
    fn values_by_position_score_as_rows_by_name_do() {
        use crate::model::{self, drift, explain};
        let today = d("2026-06-30");
        let population = crate::synth::generate(&crate::synth::SynthOptions {
            months: 6,
            ..crate::synth::SynthOptions::new(600, 11, today)
        });
        let mut spec = FeatureSpec::parse(
            &format!(
                "{DEFAULT_SPEC}\n[[feature]]\nname = \"logins_per_charge\"\ntype = \"ratio\"\nnumerator = \"logins_30d\"\ndenominator = \"monthly_charge\"\n"
            ),
            "features.toml",
        )
        .unwrap();
        spec.attributes = Attributes::All;
        // A ratio of a feature defined after it: missing both ways.
        let mut ahead = spec.features.last().unwrap().clone();
        ahead.name = "ahead".into();
        if let FeatureKind::Ratio { numerator, .. } = &mut ahead.kind {
            *numerator = "logins_per_charge".into();
        }
        spec.features.insert(spec.features.len() - 1, ahead);
        let mut by_customer: std::collections::HashMap<&str, Vec<&crate::domain::ActivityEvent>> =
            Default::default();
        for e in &population.events {
            by_customer.entry(e.customer.as_str()).or_default().push(e);
        }
        let mut customers = population.customers.clone();
        // Some customers lack an attribute others have.
        for c in customers.iter_mut().step_by(3) {
            c.attributes.pop_first();
        }
        let activity: Vec<Activity> = customers
            .iter()
            .map(|c| {
                Activity::from_events(
                    by_customer
                        .get(c.external_id.as_str())
                        .into_iter()
                        .flatten()
                        .copied(),
                )
            })
            .collect();
        let as_of = d("2026-05-01");
        let rows: Vec<FeatureRow> = customers
            .iter()
            .zip(&activity)
            .map(|(c, a)| compute(&spec, c, a, as_of))
            .collect();
        let labels: Vec<bool> = customers
            .iter()
            .enumerate()
            .map(|(i, c)| c.churned_on.is_some() || i % 7 == 0)
            .collect();
        let opts = model::FitOptions::new(
            "t",
            chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap(),
            "0",
            "test",
        );
        let mut m = model::fit(&rows, &labels, &opts).unwrap();
        assert!(
            m.features
                .iter()
                .any(|f| f.source.starts_with(ATTRIBUTE_PREFIX))
        );
        // A source the spec does not compute counts as the row's lack of it.
        let mut stray = m.features[0].clone();
        stray.source = "not_in_the_spec".into();
        stray.name = "not_in_the_spec".into();
        m.features.push(stray);
        let at_model = Locator::new(&spec, m.features.iter().map(|f| f.source.as_str()));
        let at_profile = Locator::new(&spec, m.profiles.iter().map(|p| p.source.as_str()));
        let mut counter = drift::Counter::new(&m.profiles);
        let (mut values, mut for_model, mut for_profile) = (Vec::new(), Vec::new(), Vec::new());
        let mut with_drivers = 0;
        for ((c, a), row) in customers.iter().zip(&activity).zip(&rows) {
            compute_values(&spec, c, a, as_of, &mut values);
            at_model.fill(c, &values, &mut for_model);
            at_profile.fill(c, &values, &mut for_profile);
            let value = |i| at_model.get(i, &values, &for_model);
            for i in 0..m.features.len() {
                assert_eq!(
                    value(i),
                    row.get(&m.features[i].source),
                    "{}",
                    m.features[i].source
                );
            }
            assert_eq!(
                m.predict_by(value).get().to_bits(),
                m.predict(row).get().to_bits()
            );
            let (mut by_position, mut by_name) = (Vec::new(), Vec::new());
            explain::encode_by(&m, value, 3, &mut by_position);
            explain::encode(&m, row, 3, &mut by_name);
            assert_eq!(by_position, by_name);
            with_drivers += usize::from(by_name.len() > 1);
            counter.add(|i| at_profile.get(i, &values, &for_profile));
        }
        assert_eq!(counter.counts, drift::count_all(&m.profiles, &rows));
        // Training's frame reads the same entries in the map's order.
        let order = NamedOrder::new(&spec);
        for ((c, a), row) in customers.iter().zip(&activity).zip(&rows) {
            compute_values(&spec, c, a, as_of, &mut values);
            let mut entries: Vec<(String, FeatureValue)> = Vec::new();
            order.for_each(&spec, c, &values, &mut |k, v| {
                entries.push((k.to_owned(), v.clone()))
            });
            let want: Vec<(String, FeatureValue)> =
                row.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(entries, want);
        }
        // An attribute named as a feature replaces it, wherever it sorts.
        let mut odd = customers[0].clone();
        odd.attributes.insert("aaa".into(), "1".into());
        odd.attributes.insert("zzz".into(), "gold".into());
        let mut named = spec.clone();
        named.features[0].name = "attr.region".into();
        odd.attributes.insert("region".into(), "north".into());
        let row = compute(&named, &odd, &activity[0], as_of);
        compute_values(&named, &odd, &activity[0], as_of, &mut values);
        let mut entries: Vec<(String, FeatureValue)> = Vec::new();
        NamedOrder::new(&named).for_each(&named, &odd, &values, &mut |k, v| {
            entries.push((k.to_owned(), v.clone()))
        });
        assert_eq!(entries, row.into_iter().collect::<Vec<_>>());
        assert!(with_drivers > rows.len() / 2, "{with_drivers} with drivers");
    }

    #[test]
    fn months_between_round_trips_calendar_months() {
        for n in 0..80u32 {
            for as_of in ["2026-03-31", "2026-02-28", "2026-01-15", "2024-02-29"] {
                let as_of = d(as_of);
                let signup = as_of.checked_sub_months(chrono::Months::new(n)).unwrap();
                assert_eq!(
                    months_between(signup, as_of),
                    n as i64,
                    "{signup} -> {as_of}"
                );
            }
        }
    }

    #[test]
    fn customers_without_activity_have_none_of_it_unless_a_feature_says_unknown() {
        let row = features(&[], "2025-09-30");
        // The built-in spec asks for unknown here: no activity imported is not silence.
        assert_eq!(row["days_since_last_contact"], Missing);
        // Never complained: the cap (the feature's `if_none`).
        assert_eq!(row["days_since_last_complaint"], Num(365.0));
        assert_eq!(row["open_complaints"], Num(0.0));
        assert_eq!(row["logins_30d"], Num(0.0));
        let unknown = FeatureSpec::parse(
            "[settings]\nno_activity = \"unknown\"\n[[feature]]\nname = \"logins\"\ntype = \"count\"\nkinds = [\"login\"]\nwindow_days = 30\n[[feature]]\nname = \"last\"\ntype = \"days_since\"\nkinds = [\"login\"]\nif_none = \"signup\"\n",
            "t",
        )
        .unwrap();
        let row2 = compute(&unknown, &customer(), &Activity::default(), d("2025-09-30"));
        assert_eq!((&row2["logins"], &row2["last"]), (&Missing, &Missing));
        assert_eq!(row["tenure_months"], Num(6.0));
        assert_eq!(row["contract"], Cat("one_year".into()));
        assert_eq!(row["attr.SeniorCitizen"], Num(1.0));
        assert_eq!(row["attr.PaymentMethod"], Cat("Mailed check".into()));
    }

    #[test]
    fn usage_trend_silence_and_their_words() {
        let mut evs = vec![ev(Meaning::Login, "2025-08-01", None)];
        // 300 in the 90 days before the last 30, 60 in the last 30: down 40%.
        for day in ["2025-06-10", "2025-07-10", "2025-08-10"] {
            evs.push(ev(Meaning::Usage, day, Some(100.0)));
        }
        evs.push(ev(Meaning::Usage, "2025-09-15", Some(60.0)));
        let row = features(&evs, "2025-09-30");
        assert_eq!(row["usage_trend"], Num(-0.4));
        assert_eq!(row["days_since_last_contact"], Num(60.0));
        let spec = FeatureSpec::default_spec();
        assert_eq!(
            spec.describe("usage_trend", &row["usage_trend"]),
            "usage down 40% on the prior quarter"
        );
        assert_eq!(
            spec.describe("days_since_last_contact", &Num(60.0)),
            "no contact for 60 days"
        );
        assert_eq!(
            spec.describe("days_since_last_complaint", &Num(365.0)),
            "no complaint in a year"
        );
        assert_eq!(
            spec.describe("bill_shock", &Num(0.25)),
            "latest bill +25% against usual"
        );
        assert_eq!(
            spec.describe("contract", &Cat("one_year".into())),
            "contract: one year"
        );
        assert_eq!(
            spec.describe("attr.SeniorCitizen", &Num(1.0)),
            "SeniorCitizen = 1"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The model's `oldest_open_complaint_days` and `open_complaints` say what
        /// `domain::complaint::lifecycle` says, so a driver ("a complaint open for 138
        /// days") never contradicts the Complaints panel beside it. One event a day (daily
        /// rollups cannot order events within a day).
        #[test]
        fn complaint_features_follow_the_one_lifecycle(
            steps in proptest::collection::vec((0usize..3, 1i64..4), 0..12)
        ) {
            use crate::domain::complaint::{self, ComplaintEvent, Step};
            let kinds = [Meaning::ComplaintOpened, Meaning::ComplaintResolved, Meaning::ComplaintReopened];
            let step = [Step::Opened, Step::Resolved, Step::Reopened];
            let start = d("2025-01-01");
            let mut day = start;
            let mut events = Vec::new();
            let mut facts = Vec::new();
            for (i, &(k, gap)) in steps.iter().enumerate() {
                day += chrono::Duration::days(gap);
                let mut e = ev(kinds[k], &day.to_string(), None);
                e.source_event_id = format!("e{i}");
                facts.push(ComplaintEvent {
                    id: i as i64,
                    at: e.occurred_at.timestamp(),
                    step: step[k],
                    satisfaction: None,
                });
                events.push(e);
            }
            let as_of = day + chrono::Duration::days(1);
            let row = features(&events, &as_of.to_string());
            let all = complaint::lifecycle(facts);
            let want_age = complaint::oldest_open(&all).map_or(0.0, |c| c.days_open(as_of) as f64);
            let want_open = all.iter().filter(|c| c.open).count() as f64;
            proptest::prop_assert_eq!(&row["oldest_open_complaint_days"], &Num(want_age), "{:?}", all);
            proptest::prop_assert_eq!(&row["open_complaints"], &Num(want_open), "{:?}", all);
        }
    }

    /// `{s}` is the plural ending: none for one (issue 19: "1 complaints open").
    #[test]
    fn descriptions_say_one_and_many() {
        let spec = FeatureSpec::default_spec();
        assert_eq!(
            spec.describe("open_complaints", &Num(1.0)),
            "1 complaint open"
        );
        assert_eq!(
            spec.describe("open_complaints", &Num(2.0)),
            "2 complaints open"
        );
        assert_eq!(
            spec.describe("open_complaints", &Num(0.0)),
            "0 complaints open"
        );
        assert_eq!(
            spec.describe("tenure_months", &Num(1.0)),
            "1 month a customer"
        );
        let usd = crate::domain::Currency::default();
        assert_eq!(render("{value:.0} login{s}", 1.2, &usd), "1 login");
    }

    #[test]
    fn complaints_open_and_their_age() {
        let evs = [
            ev(Meaning::ComplaintOpened, "2025-06-01", None),
            ev(Meaning::ComplaintOpened, "2025-07-01", None),
            ev(Meaning::ComplaintResolved, "2025-07-15", Some(2.0)),
            ev(Meaning::ComplaintReopened, "2025-08-01", None),
        ];
        let row = features(&evs, "2025-09-30");
        assert_eq!(row["open_complaints"], Num(2.0));
        // The resolution closed the oldest (June); the reopening reopened it, so June's is
        // the oldest open again, aged from its opening (as `domain::complaint` says).
        assert_eq!(row["oldest_open_complaint_days"], Num(121.0));
        // June's and July's are more than 90 days back.
        assert_eq!(row["complaints_90d"], Num(0.0));
        assert_eq!(
            FeatureSpec::default_spec().describe("complaints_90d", &row["complaints_90d"]),
            "0 complaints in 90 days"
        );
        assert_eq!(row["days_since_last_complaint"], Num(60.0));
    }

    #[test]
    fn bill_shock_compares_the_latest_invoice_with_the_usual() {
        let evs = [
            ev(Meaning::InvoiceIssued, "2025-06-01", Some(40.0)),
            ev(Meaning::InvoiceIssued, "2025-07-01", Some(40.0)),
            ev(Meaning::InvoiceIssued, "2025-08-01", Some(70.0)),
        ];
        let row = features(&evs, "2025-09-30");
        assert_eq!(row["bill_shock"], Num(70.0 / 50.0 - 1.0));
    }

    #[test]
    fn features_as_of_a_past_day_ignore_what_came_later() {
        let early = vec![
            ev(Meaning::Login, "2025-05-01", None),
            ev(Meaning::ComplaintOpened, "2025-05-20", None),
            ev(Meaning::Usage, "2025-04-01", Some(10.0)),
        ];
        let mut later = early.clone();
        later.extend([
            ev(Meaning::ComplaintResolved, "2025-06-01", Some(5.0)),
            ev(Meaning::Login, "2025-06-01", None),
            ev(Meaning::Usage, "2025-06-01", Some(99.0)),
        ]);
        assert_eq!(
            features(&early, "2025-06-01"),
            features(&later, "2025-06-01")
        );
        assert_ne!(
            features(&early, "2025-06-02"),
            features(&later, "2025-06-02")
        );
    }

    #[test]
    fn active_days_whole_history_and_tenure_in_days() {
        let spec = FeatureSpec::parse(
            "[[feature]]\nname = \"days\"\ntype = \"tenure\"\nunit = \"days\"\n[[feature]]\nname = \"active_30\"\ntype = \"active_days\"\nwindow_days = 30\n[[feature]]\nname = \"login_days\"\ntype = \"active_days\"\nkinds = [\"login\"]\nwindow_days = \"all\"\n[[feature]]\nname = \"logins_ever\"\ntype = \"count\"\nkinds = [\"visit\"]\nwindow_days = \"all\"\n",
            "t",
        )
        .unwrap();
        let evs = [
            ev(Meaning::Login, "2025-04-02", None),
            ev(Meaning::Login, "2025-09-20", None),
            ev(Meaning::Login, "2025-09-20", None),
            ev(Meaning::Usage, "2025-09-20", Some(1.0)),
            ev(Meaning::Usage, "2025-09-25", Some(1.0)),
            // On the day itself: not before it.
            ev(Meaning::Login, "2025-09-30", None),
        ];
        let row = compute(
            &spec,
            &customer(),
            &Activity::from_events(&evs),
            d("2025-09-30"),
        );
        assert_eq!(row["days"], Num(183.0));
        assert_eq!(row["active_30"], Num(2.0));
        assert_eq!(row["login_days"], Num(2.0));
        assert_eq!(row["logins_ever"], Num(3.0));
    }

    #[test]
    fn fuzz_entry_point_accepts_anything() {
        fuzz_spec(DEFAULT_SPEC.as_bytes());
        fuzz_spec(b"[[feature]]\nname = \"r\"\ntype = \"tenure\"\n[[feature]]\nname = \"q\"\ntype = \"ratio\"\nnumerator = \"r\"\ndenominator = \"r\"\n");
        fuzz_spec(b"\xff[[[");
    }

    #[test]
    fn words_kept_apart_describe_as_the_spec_does() {
        // A run keeps each feature's words (`FeatureSpec::words`) to describe its drivers'
        // values when they are read: the same sentences as the spec makes, at and past caps
        // too, in the spec's currency.
        let mut spec = FeatureSpec::default_spec();
        spec.currency = crate::domain::Currency::parse("GBP", None).unwrap();
        let mut names: Vec<String> = spec.features.iter().map(|f| f.name.clone()).collect();
        names.push("attr.plan_tier".into()); // no definition: plain words
        let capped = spec
            .features
            .iter()
            .filter(|f| f.describe_at_cap.is_some())
            .count();
        assert!(
            capped > 0,
            "the default spec has a feature with words at its cap"
        );
        let values = [0.0, 1.0, 2.5, -3.0, 364.0, 365.0, 366.0, 1e6]
            .map(Num)
            .into_iter()
            .chain([Cat("month_to_month".into()), Missing]);
        for name in &names {
            let words = spec.words(name);
            for v in values.clone() {
                assert_eq!(
                    words.describe(name, &v, &spec.currency),
                    spec.describe(name, &v),
                    "{name} = {v:?}"
                );
            }
        }
    }

    #[test]
    fn templates_render_every_placeholder() {
        let usd = crate::domain::Currency::default();
        assert_eq!(
            render(
                "{value:.1} / {pct:.0}% / {abs_pct:.0} / {signed_pct:.0} / {up_down} / {money}",
                -0.25,
                &usd
            ),
            "-0.2 / -25% / 25 / -25 / down / -$0.25"
        );
        let eur = crate::domain::Currency::parse("EUR", None).unwrap();
        assert_eq!(
            render("pays {money} a month", 1234.5, &eur),
            "pays €1,234.50 a month"
        );
        assert_eq!(render("{value}", 3.0, &usd), "3");
        assert_eq!(render("no braces", 1.0, &usd), "no braces");
    }
}
