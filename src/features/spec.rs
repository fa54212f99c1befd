//! The feature spec: the file data teams edit (`features.toml`) to say which features the
//! model sees, each computed as of a given day from the customer's record and daily
//! activity rollups. Parsing checks every definition and points at the line of anything
//! wrong; the default spec ships in the repository and is compiled in.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::EventKind;

/// The spec attune uses when none is configured.
pub const DEFAULT_SPEC: &str = include_str!("../../features.toml");

/// A parsed, checked feature spec.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub features: Vec<FeatureDef>,
    pub attributes: Attributes,
    /// The first 16 hex digits of the SHA-256 of the spec's text: recorded with every model
    /// trained on it.
    pub hash: String,
}

/// Which of a customer's free-form attributes become features (named `attr.NAME`).
#[derive(Debug, Clone, PartialEq)]
pub enum Attributes {
    All,
    None,
    Only(BTreeSet<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDef {
    pub name: String,
    pub kind: FeatureKind,
    /// How a value reads to a reviewer; see [`crate::features::render`].
    pub describe: Option<String>,
    /// What to say instead when a capped value is at its cap ("no complaint in a year").
    pub describe_at_cap: Option<String>,
}

/// A number or category taken from the customer's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerField {
    MonthlyCharge,
    Contract,
    Plan,
    PreferredChannel,
}

/// A day on the customer's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateField {
    ContractEnd,
    FirstInvoiceDue,
}

/// When nothing of the kinds happened yet, `days_since` is...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfNone {
    /// ... the days since signup.
    Signup,
    /// ... the cap.
    Cap,
    /// ... unknown.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Count,
    Sum,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// Whole months since signup.
    Tenure,
    Field(CustomerField),
    /// Months until a day on the record (0 once past; unknown if the record has none).
    MonthsUntil(DateField),
    /// Count or sum of values of `kinds` in the `window_days` before the day.
    Window {
        stat: Stat,
        kinds: Vec<EventKind>,
        window_days: u32,
    },
    /// Days since the last event of `kinds`, capped.
    DaysSince {
        kinds: Vec<EventKind>,
        cap_days: Option<u32>,
        if_none: IfNone,
    },
    /// Events of `add` less events of `subtract`, ever (never below 0): open complaints.
    Balance {
        add: Vec<EventKind>,
        subtract: Vec<EventKind>,
    },
    /// Days the oldest still-open item has been open (each `close` closes the oldest).
    OpenAge {
        open: Vec<EventKind>,
        close: Vec<EventKind>,
    },
    /// Relative change of the daily rate of `stat` over `kinds`: the `recent_days` before
    /// the day against the `prior_days` before those, clamped.
    Change {
        stat: Stat,
        kinds: Vec<EventKind>,
        recent_days: u32,
        prior_days: u32,
        clamp: (f64, f64),
    },
    /// The latest day's average value of `kind` against its average over all time, less 1,
    /// clamped: bill shock.
    LatestVsMean {
        kind: EventKind,
        clamp: (f64, f64),
    },
    /// One earlier feature divided by another (unknown when the denominator is 0).
    Ratio {
        numerator: String,
        denominator: String,
    },
    /// A free-form customer attribute: a number if it parses as one, else a category.
    Attribute {
        attribute: String,
    },
}

impl FeatureKind {
    /// Features computed from activity are unknown for a customer with no activity at all
    /// before the day, rather than misleading zeros.
    pub fn reads_activity(&self) -> bool {
        matches!(
            self,
            FeatureKind::Window { .. }
                | FeatureKind::DaysSince { .. }
                | FeatureKind::Balance { .. }
                | FeatureKind::OpenAge { .. }
                | FeatureKind::Change { .. }
                | FeatureKind::LatestVsMean { .. }
        )
    }

    /// How far back (in days) this feature looks, if it only looks at a window.
    pub fn cap(&self) -> Option<f64> {
        match self {
            FeatureKind::DaysSince { cap_days, .. } => cap_days.map(f64::from),
            _ => None,
        }
    }
}

/// How many days back each kind of event is read: not at all, all of history, or a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookback {
    /// Indexed by [`EventKind::code`]: `None` not read, `Some(None)` all history.
    by_code: [Option<Option<u32>>; 16],
}

impl Lookback {
    /// Every kind, all of history (training reads this way: one read, many days).
    pub fn everything() -> Self {
        let mut l = Self::default();
        l.need(EventKind::ALL, None);
        l
    }

    fn need(&mut self, kinds: &[EventKind], days: Option<u32>) {
        for k in kinds {
            let slot = &mut self.by_code[k.code() as usize];
            *slot = match (*slot, days) {
                (None, d) => Some(d),
                (Some(None), _) | (_, None) => Some(None),
                (Some(Some(a)), Some(b)) => Some(Some(a.max(b))),
            };
        }
    }

    /// What to read of `kind`: `None` nothing, `Some(None)` everything, `Some(Some(d))`
    /// the last `d` days.
    pub fn of(&self, kind: EventKind) -> Option<Option<u32>> {
        self.by_code[kind.code() as usize]
    }

    pub fn is_everything(&self) -> bool {
        EventKind::ALL.iter().all(|k| self.of(*k) == Some(None))
    }
}

/// What is wrong with a spec: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct SpecError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    feature: Vec<toml::Spanned<RawFeature>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    attributes: Option<toml::Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    field: Option<String>,
    kinds: Option<Vec<String>>,
    kind_of_event: Option<String>,
    window_days: Option<u32>,
    cap_days: Option<u32>,
    if_none: Option<String>,
    add: Option<Vec<String>>,
    subtract: Option<Vec<String>>,
    open: Option<Vec<String>>,
    close: Option<Vec<String>>,
    stat: Option<String>,
    recent_days: Option<u32>,
    prior_days: Option<u32>,
    clamp: Option<[f64; 2]>,
    numerator: Option<String>,
    denominator: Option<String>,
    attribute: Option<String>,
    describe: Option<String>,
    describe_at_cap: Option<String>,
}

/// The feature types a spec may use, for error messages and the README.
pub const FEATURE_TYPES: &[(&str, &str)] = &[
    ("tenure", "whole months since signup"),
    (
        "field",
        "a value on the customer's record: field = monthly_charge, contract, plan or preferred_channel",
    ),
    (
        "months_until",
        "months until a day on the record: field = contract_end or first_invoice_due",
    ),
    (
        "count",
        "events of `kinds` in the `window_days` before the day",
    ),
    (
        "sum",
        "the sum of the values of `kinds` in the `window_days` before the day",
    ),
    (
        "days_since",
        "days since the last event of `kinds`; `cap_days`, `if_none` = signup, cap or missing",
    ),
    (
        "balance",
        "events of `add` less events of `subtract`, ever, never below 0",
    ),
    (
        "open_age",
        "days the oldest still-open item has been open: `open` kinds open one, `close` kinds close the oldest",
    ),
    (
        "change",
        "relative change of the daily rate (`stat` = count or sum of `kinds`) over the `recent_days` against the `prior_days` before them, clamped",
    ),
    (
        "latest_vs_mean",
        "the latest value of `kind_of_event` against its mean, less 1, clamped: bill shock",
    ),
    (
        "ratio",
        "`numerator` / `denominator`, two features defined earlier",
    ),
    (
        "attribute",
        "a free-form customer attribute named `attribute`: a number if it parses, else a category",
    ),
];

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

impl FeatureSpec {
    /// The spec compiled into attune.
    pub fn default_spec() -> FeatureSpec {
        FeatureSpec::parse(DEFAULT_SPEC, "features.toml (built in)")
            .expect("the built-in feature spec is valid (tested)")
    }

    /// Parses and checks a spec; `origin` names it in errors (usually the file's path).
    pub fn parse(text: &str, origin: &str) -> Result<FeatureSpec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError {
            origin: origin.to_owned(),
            line: e.span().map(|s| line_of(text, s)).unwrap_or(1),
            message: e.message().trim().to_owned(),
        })?;
        let attributes = match raw.settings.attributes {
            None => Attributes::All,
            Some(v) => {
                let line = line_of(text, v.span());
                match v.into_inner() {
                    toml::Value::String(s) if s == "all" => Attributes::All,
                    toml::Value::String(s) if s == "none" => Attributes::None,
                    toml::Value::Array(items) => {
                        let mut names = BTreeSet::new();
                        for item in items {
                            match item {
                                toml::Value::String(s) => {
                                    names.insert(s);
                                }
                                other => {
                                    return Err(SpecError {
                                        origin: origin.to_owned(),
                                        line,
                                        message: format!(
                                            "settings.attributes: {other} is not an attribute name; write names as strings"
                                        ),
                                    });
                                }
                            }
                        }
                        Attributes::Only(names)
                    }
                    other => {
                        return Err(SpecError {
                            origin: origin.to_owned(),
                            line,
                            message: format!(
                                "settings.attributes: {other} is not allowed; use \"all\", \"none\" or a list of attribute names"
                            ),
                        });
                    }
                }
            }
        };
        let mut features: Vec<FeatureDef> = Vec::new();
        for spanned in raw.feature {
            let line = line_of(text, spanned.span());
            let f = spanned.into_inner();
            let err = |message: String| SpecError {
                origin: origin.to_owned(),
                line,
                message: format!("feature {:?}: {message}", f.name),
            };
            check_name(&f.name).map_err(&err)?;
            if features.iter().any(|d| d.name == f.name) {
                return Err(err("is defined twice; feature names must be unique".into()));
            }
            let kind = build_kind(&f, &features).map_err(&err)?;
            if let Some(t) = &f.describe {
                check_template(t).map_err(&err)?;
            }
            features.push(FeatureDef {
                name: f.name,
                kind,
                describe: f.describe,
                describe_at_cap: f.describe_at_cap,
            });
        }
        if features.is_empty() && attributes == Attributes::None {
            return Err(SpecError {
                origin: origin.to_owned(),
                line: 1,
                message: "the spec defines no features; add [[feature]] tables".into(),
            });
        }
        let digest = Sha256::digest(text.as_bytes());
        Ok(FeatureSpec {
            features,
            attributes,
            hash: digest.iter().take(8).map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// Reads a spec from a file.
    pub fn load(path: &std::path::Path) -> Result<FeatureSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            origin: path.display().to_string(),
            line: 1,
            message: format!("cannot read the file: {e}"),
        })?;
        FeatureSpec::parse(&text, &path.display().to_string())
    }

    pub fn get(&self, name: &str) -> Option<&FeatureDef> {
        self.features.iter().find(|f| f.name == name)
    }

    /// Whether the spec produces the feature `name` (attributes included).
    pub fn defines(&self, name: &str) -> bool {
        if self.get(name).is_some() {
            return true;
        }
        match name.strip_prefix(super::ATTRIBUTE_PREFIX) {
            Some(attr) => match &self.attributes {
                Attributes::All => true,
                Attributes::None => false,
                Attributes::Only(names) => names.contains(attr),
            },
            None => false,
        }
    }

    /// How far back each kind of event must be read to compute the spec as of a day.
    pub fn lookback(&self) -> Lookback {
        let mut l = Lookback::default();
        for f in &self.features {
            match &f.kind {
                FeatureKind::Window {
                    kinds, window_days, ..
                } => l.need(kinds, Some(*window_days)),
                FeatureKind::Change {
                    kinds,
                    recent_days,
                    prior_days,
                    ..
                } => l.need(kinds, Some(recent_days + prior_days)),
                // Capped, with the cap as the answer when nothing happened: older events
                // cannot change the value.
                FeatureKind::DaysSince {
                    kinds,
                    cap_days: Some(c),
                    if_none: IfNone::Cap,
                } => l.need(kinds, Some(*c)),
                FeatureKind::DaysSince { kinds, .. } => l.need(kinds, None),
                FeatureKind::Balance { add, subtract } => {
                    l.need(add, None);
                    l.need(subtract, None);
                }
                FeatureKind::OpenAge { open, close } => {
                    l.need(open, None);
                    l.need(close, None);
                }
                FeatureKind::LatestVsMean { kind, .. } => l.need(&[*kind], None),
                _ => {}
            }
        }
        l
    }

    /// The longest look-back of any activity feature, in days (for reading rollups).
    pub fn max_window_days(&self) -> u32 {
        self.features
            .iter()
            .map(|f| match &f.kind {
                FeatureKind::Window { window_days, .. } => *window_days,
                FeatureKind::Change {
                    recent_days,
                    prior_days,
                    ..
                } => recent_days + prior_days,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err("is not a valid name; use lowercase letters, digits and _, starting with a letter (at most 64)".into())
    }
}

fn kinds(field: &str, raw: Option<&Vec<String>>) -> Result<Vec<EventKind>, String> {
    let raw = raw.ok_or_else(|| format!("`{field}` is missing; list event kinds, e.g. {field} = [\"login\", \"support_contact\"]"))?;
    if raw.is_empty() {
        return Err(format!("`{field}` is empty; list at least one event kind"));
    }
    let mut out = Vec::new();
    for k in raw {
        let kind: EventKind = k.parse().map_err(|e| format!("{field}: {e}"))?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

fn positive(field: &str, v: Option<u32>) -> Result<u32, String> {
    match v {
        Some(d) if d > 0 => Ok(d),
        Some(_) => Err(format!("`{field}` must be at least 1 day")),
        None => Err(format!("`{field}` is missing; give a number of days")),
    }
}

fn clamp(v: Option<[f64; 2]>, default: (f64, f64)) -> Result<(f64, f64), String> {
    match v {
        None => Ok(default),
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo < hi => Ok((lo, hi)),
        Some([lo, hi]) => Err(format!(
            "clamp = [{lo}, {hi}] is not a range; write [low, high] with low < high"
        )),
    }
}

fn stat(raw: Option<&str>) -> Result<Stat, String> {
    match raw {
        Some("count") => Ok(Stat::Count),
        Some("sum") | None => Ok(Stat::Sum),
        Some(other) => Err(format!("stat {other:?} is not known; use count or sum")),
    }
}

fn build_kind(f: &RawFeature, earlier: &[FeatureDef]) -> Result<FeatureKind, String> {
    let field = f.field.as_deref();
    Ok(match f.kind.as_str() {
        "tenure" => FeatureKind::Tenure,
        "field" => FeatureKind::Field(match field {
            Some("monthly_charge") => CustomerField::MonthlyCharge,
            Some("contract") | Some("contract_type") => CustomerField::Contract,
            Some("plan") => CustomerField::Plan,
            Some("preferred_channel") => CustomerField::PreferredChannel,
            other => {
                return Err(format!(
                    "field {other:?} is not on the customer record; use monthly_charge, contract, plan or preferred_channel"
                ));
            }
        }),
        "months_until" => FeatureKind::MonthsUntil(match field {
            Some("contract_end") => DateField::ContractEnd,
            Some("first_invoice_due") => DateField::FirstInvoiceDue,
            other => {
                return Err(format!(
                    "field {other:?} is not a day on the customer record; use contract_end or first_invoice_due"
                ));
            }
        }),
        "count" | "sum" => FeatureKind::Window {
            stat: if f.kind == "count" {
                Stat::Count
            } else {
                Stat::Sum
            },
            kinds: kinds("kinds", f.kinds.as_ref())?,
            window_days: positive("window_days", f.window_days)?,
        },
        "days_since" => FeatureKind::DaysSince {
            kinds: kinds("kinds", f.kinds.as_ref())?,
            cap_days: f.cap_days,
            if_none: match f.if_none.as_deref() {
                None | Some("missing") => IfNone::Missing,
                Some("signup") => IfNone::Signup,
                Some("cap") if f.cap_days.is_some() => IfNone::Cap,
                Some("cap") => return Err("if_none = \"cap\" needs cap_days".into()),
                Some(other) => {
                    return Err(format!(
                        "if_none {other:?} is not known; use signup, cap or missing"
                    ));
                }
            },
        },
        "balance" => FeatureKind::Balance {
            add: kinds("add", f.add.as_ref())?,
            subtract: kinds("subtract", f.subtract.as_ref())?,
        },
        "open_age" => FeatureKind::OpenAge {
            open: kinds("open", f.open.as_ref())?,
            close: kinds("close", f.close.as_ref())?,
        },
        "change" => FeatureKind::Change {
            stat: stat(f.stat.as_deref())?,
            kinds: kinds("kinds", f.kinds.as_ref())?,
            recent_days: positive("recent_days", f.recent_days)?,
            prior_days: positive("prior_days", f.prior_days)?,
            clamp: clamp(f.clamp, (-1.0, 3.0))?,
        },
        "latest_vs_mean" => FeatureKind::LatestVsMean {
            kind: f
                .kind_of_event
                .as_deref()
                .ok_or("`kind_of_event` is missing; name one event kind, e.g. \"invoice_issued\"")?
                .parse()
                .map_err(|e| format!("kind_of_event: {e}"))?,
            clamp: clamp(f.clamp, (-1.0, 5.0))?,
        },
        "ratio" => {
            let known = |n: &Option<String>, which: &str| -> Result<String, String> {
                let n = n
                    .clone()
                    .ok_or_else(|| format!("`{which}` is missing; name a feature defined above"))?;
                if earlier.iter().any(|d| d.name == n) {
                    Ok(n)
                } else {
                    Err(format!(
                        "{which} {n:?} is not a feature defined above; known: {}",
                        earlier
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            };
            FeatureKind::Ratio {
                numerator: known(&f.numerator, "numerator")?,
                denominator: known(&f.denominator, "denominator")?,
            }
        }
        "attribute" => FeatureKind::Attribute {
            attribute: f
                .attribute
                .clone()
                .filter(|a| !a.trim().is_empty())
                .ok_or("`attribute` is missing; name the customer attribute")?,
        },
        other => {
            return Err(format!(
                "type {other:?} is not known; use one of: {}",
                FEATURE_TYPES
                    .iter()
                    .map(|(t, _)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    })
}

/// Placeholders a `describe` template may use.
pub const PLACEHOLDERS: &[&str] = &["value", "pct", "abs_pct", "signed_pct", "up_down"];

fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("describe {t:?} has an unclosed {{"))?;
        let inner = &after[..close];
        let (name, fmt) = inner.split_once(':').unwrap_or((inner, ""));
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "describe {t:?} uses {{{name}}}; known placeholders: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        if !fmt.is_empty() && !is_precision(fmt) {
            return Err(format!(
                "describe {t:?}: {{{inner}}} has format {fmt:?}; write .N for N decimals, e.g. {{value:.0}}"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

pub(super) fn is_precision(fmt: &str) -> bool {
    fmt.strip_prefix('.')
        .is_some_and(|d| !d.is_empty() && d.len() <= 2 && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_spec_is_valid_and_covers_the_seeds() {
        let spec = FeatureSpec::default_spec();
        for name in [
            "tenure_months",
            "days_since_last_contact",
            "open_complaints",
            "oldest_open_complaint_days",
            "payment_failures_90d",
            "bill_shock",
            "usage_trend",
            "months_to_contract_end",
            "contract",
            "monthly_charge",
        ] {
            assert!(
                spec.get(name).is_some(),
                "{name} missing from features.toml"
            );
        }
        assert!(spec.defines("attr.SeniorCitizen"));
        assert_eq!(spec.hash.len(), 16);
    }

    fn err(text: &str) -> String {
        FeatureSpec::parse(text, "f.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_point_at_the_line_and_say_what_is_known() {
        let text = "[[feature]]\nname = \"a\"\ntype = \"tenure\"\n\n[[feature]]\nname = \"b\"\ntype = \"count\"\nkinds = [\"usag\"]\nwindow_days = 30\n";
        let e = err(text);
        assert!(e.starts_with("f.toml:5: feature \"b\": kinds: unknown event kind \"usag\"; expected one of: usage,"), "{e}");
        let e = err("[[feature]]\nname = \"a\"\ntype = \"tenure\"\ncolour = 3\n");
        assert!(e.starts_with("f.toml:"), "{e}");
        assert!(e.contains("colour"), "{e}");
        assert_eq!(
            err(
                "[[feature]]\nname = \"r\"\ntype = \"ratio\"\nnumerator = \"x\"\ndenominator = \"y\"\n"
            ),
            "f.toml:1: feature \"r\": numerator \"x\" is not a feature defined above; known: "
        );
        assert!(
            err("[[feature]]\nname = \"Bad Name\"\ntype = \"tenure\"\n")
                .contains("not a valid name")
        );
        assert!(err("[[feature]]\nname = \"a\"\ntype = \"tenure\"\n[[feature]]\nname = \"a\"\ntype = \"tenure\"\n").contains("f.toml:4: feature \"a\": is defined twice"));
        assert!(err("[[feature]]\nname = \"a\"\ntype = \"count\"\nkinds = [\"login\"]\nwindow_days = 0\n").contains("at least 1 day"));
        assert!(
            err("[[feature]]\nname = \"a\"\ntype = \"magic\"\n")
                .contains("type \"magic\" is not known; use one of: tenure, field")
        );
        assert!(
            err("[[feature]]\nname = \"a\"\ntype = \"tenure\"\ndescribe = \"{valu} months\"\n")
                .contains("known placeholders: value")
        );
        assert!(err("[settings]\nattributes = 3\n").contains("f.toml:2: settings.attributes"));
    }

    #[test]
    fn the_default_spec_reads_only_what_it_needs() {
        let l = FeatureSpec::default_spec().lookback();
        assert_eq!(l.of(EventKind::Usage), Some(Some(120)));
        assert_eq!(l.of(EventKind::PaymentFailed), Some(Some(90)));
        assert_eq!(
            l.of(EventKind::Login),
            Some(None),
            "days since last contact looks back forever"
        );
        assert_eq!(
            l.of(EventKind::InvoiceIssued),
            Some(None),
            "the usual bill is over all of history"
        );
        assert_eq!(l.of(EventKind::PaymentMade), None);
        assert!(Lookback::everything().is_everything());
        assert!(!l.is_everything());
    }

    #[test]
    fn the_hash_follows_the_text() {
        let a = FeatureSpec::parse("[[feature]]\nname = \"a\"\ntype = \"tenure\"\n", "x").unwrap();
        let b = FeatureSpec::parse("[[feature]]\nname = \"b\"\ntype = \"tenure\"\n", "x").unwrap();
        assert_ne!(a.hash, b.hash);
        assert!(!a.defines("attr.x") || a.attributes == Attributes::All);
    }
}
