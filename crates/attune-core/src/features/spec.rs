//! The feature spec: the file data teams edit (`features.toml`) to say which features the
//! model sees, each computed as of a given day from the customer's record and daily
//! activity rollups. Parsing checks every definition against the kinds the business
//! records ([`EventKinds`]) and points at the line of anything wrong; the default spec ships
//! in the repository and is compiled in. A spec with `[settings] auto = true` also derives
//! features for every kind ([`super::auto`]); [`FeatureSpec::to_toml`] writes any spec back
//! out, which is how a model carries the exact features it was trained on.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::{EventKinds, KindCode, KindSet};

/// The spec attune uses when none is configured.
pub const DEFAULT_SPEC: &str = include_str!("../../../../features.toml");

/// A parsed, checked feature spec.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub features: Vec<FeatureDef>,
    pub attributes: Attributes,
    /// Derive features for every event kind ([`super::auto`]) besides those listed.
    pub auto: bool,
    /// A categorical attribute with more levels than this is left out of `attributes =
    /// "all"` (an email address, a free-text note), and so is a numeric identifier.
    pub max_levels: usize,
    /// The first 16 hex digits of the SHA-256 of the spec's text: recorded with every model
    /// trained on it.
    pub hash: String,
    /// How `{money}` reads in `describe` texts (`[money]` in the config; not part of the
    /// spec's text or hash).
    pub currency: crate::domain::Currency,
}

/// Which of a customer's free-form attributes become features (named `attr.NAME`).
#[derive(Debug, Clone, PartialEq)]
pub enum Attributes {
    All,
    None,
    Only(BTreeSet<String>),
}

/// What an activity feature is for a customer with no activity at all before the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoActivity {
    /// Zero: no logins yet is 0 logins (`days_since` follows its `if_none`).
    #[default]
    Zero,
    /// Unknown: encoded as the training mean.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDef {
    pub name: String,
    pub kind: FeatureKind,
    /// How a value reads to a reviewer; see [`crate::features::render`].
    pub describe: Option<String>,
    /// What to say instead when a capped value is at its cap ("no complaint in a year").
    pub describe_at_cap: Option<String>,
    pub no_activity: NoActivity,
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

/// How far back a window looks: a number of days, or all of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Days(u32),
    All,
}

/// Tenure in whole months (the default) or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenureUnit {
    Months,
    Days,
}

/// Event kinds a feature reads, as the spec names them and as the codes they stand for
/// (a meaning stands for every kind that means it; see [`EventKinds::select`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kinds {
    pub names: Vec<String>,
    pub set: KindSet,
}

impl Kinds {
    #[inline]
    pub fn has(&self, code: KindCode) -> bool {
        self.set.contains(code)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// Time since signup.
    Tenure(TenureUnit),
    Field(CustomerField),
    /// Months until a day on the record (0 once past; unknown if the record has none).
    MonthsUntil(DateField),
    /// Count or sum of values of `kinds` in the window before the day.
    Window {
        stat: Stat,
        kinds: Kinds,
        window: Window,
    },
    /// Distinct days with an event of `kinds` (any kind when `None`) in the window.
    ActiveDays {
        kinds: Option<Kinds>,
        window: Window,
    },
    /// Days since the last event of `kinds`, capped.
    DaysSince {
        kinds: Kinds,
        cap_days: Option<u32>,
        if_none: IfNone,
    },
    /// Events of `add` less events of `subtract`, ever (never below 0): open complaints.
    Balance {
        add: Kinds,
        subtract: Kinds,
    },
    /// Days the oldest still-open item has been open: each `close` closes the oldest, and
    /// each `reopen` reopens the latest closed one, its age still counted from its opening
    /// (`domain::complaint`'s rules; within a day: openings, then closings, then
    /// reopenings).
    OpenAge {
        open: Kinds,
        close: Kinds,
        reopen: Option<Kinds>,
    },
    /// Relative change of the daily rate of `stat` over `kinds`: the `recent_days` before
    /// the day against the `prior_days` before those, clamped.
    Change {
        stat: Stat,
        kinds: Kinds,
        recent_days: u32,
        prior_days: u32,
        clamp: (f64, f64),
    },
    /// The latest day's average value of `kind` against its average over all time, less 1,
    /// clamped: bill shock.
    LatestVsMean {
        kind: Kinds,
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
    /// Features computed from activity (see [`NoActivity`] for a customer with none).
    pub fn reads_activity(&self) -> bool {
        matches!(
            self,
            FeatureKind::Window { .. }
                | FeatureKind::ActiveDays { .. }
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
    /// Every kind, all of history.
    all: bool,
    /// Indexed by kind code: `None` not read, `Some(None)` all history.
    by_code: Vec<Option<Option<u32>>>,
}

impl Lookback {
    /// Every kind, all of history (training reads this way: one read, many days).
    pub fn everything() -> Self {
        Self {
            all: true,
            by_code: Vec::new(),
        }
    }

    /// Reads `set` for `days` (all of history for `None`) besides what it reads already.
    pub fn need(&mut self, set: &KindSet, days: Option<u32>) {
        for code in set.iter() {
            let i = code.0 as usize;
            if self.by_code.len() <= i {
                self.by_code.resize(i + 1, None);
            }
            let slot = &mut self.by_code[i];
            *slot = match (*slot, days) {
                (None, d) => Some(d),
                (Some(None), _) | (_, None) => Some(None),
                (Some(Some(a)), Some(b)) => Some(Some(a.max(b))),
            };
        }
    }

    /// Every kind, all of history, from now on.
    pub fn need_everything(&mut self) {
        self.all = true;
    }

    /// Reads what `other` reads too.
    pub fn merge(&mut self, other: &Lookback) {
        if other.all {
            self.all = true;
        }
        for (code, window) in other.kinds() {
            let set: KindSet = std::iter::once(code).collect();
            self.need(&set, window);
        }
    }

    /// What to read of `kind`: `None` nothing, `Some(None)` everything, `Some(Some(d))`
    /// the last `d` days.
    pub fn of(&self, kind: KindCode) -> Option<Option<u32>> {
        if self.all {
            return Some(None);
        }
        self.by_code.get(kind.0 as usize).copied().flatten()
    }

    pub fn is_everything(&self) -> bool {
        self.all
    }

    /// The kinds read, with their window, by code.
    pub fn kinds(&self) -> impl Iterator<Item = (KindCode, Option<u32>)> + '_ {
        self.by_code
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (KindCode(i as u16), w)))
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
    auto: Option<bool>,
    no_activity: Option<toml::Spanned<String>>,
    max_levels: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    field: Option<String>,
    unit: Option<String>,
    kinds: Option<Vec<String>>,
    kind_of_event: Option<String>,
    window_days: Option<toml::Value>,
    cap_days: Option<u32>,
    if_none: Option<String>,
    add: Option<Vec<String>>,
    subtract: Option<Vec<String>>,
    open: Option<Vec<String>>,
    close: Option<Vec<String>>,
    reopen: Option<Vec<String>>,
    stat: Option<String>,
    recent_days: Option<u32>,
    prior_days: Option<u32>,
    clamp: Option<[f64; 2]>,
    numerator: Option<String>,
    denominator: Option<String>,
    attribute: Option<String>,
    no_activity: Option<String>,
    describe: Option<String>,
    describe_at_cap: Option<String>,
}

/// The feature types a spec may use, for error messages and the README.
pub const FEATURE_TYPES: &[(&str, &str)] = &[
    (
        "tenure",
        "time since signup: whole months, or days with unit = \"days\"",
    ),
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
        "events of `kinds` in the `window_days` before the day (a number, or \"all\")",
    ),
    (
        "sum",
        "the sum of the values of `kinds` in the `window_days` before the day",
    ),
    (
        "active_days",
        "distinct days with an event of `kinds` (any kind if absent) in the `window_days` before the day",
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
        "days the oldest still-open item has been open: `open` kinds open one, `close` kinds close the oldest, `reopen` kinds (optional) reopen the latest closed one, aged from its opening",
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

/// The default `max_levels`.
pub const MAX_LEVELS: usize = 50;

impl FeatureSpec {
    /// The spec compiled into attune, for attune's own kinds.
    pub fn default_spec() -> FeatureSpec {
        Self::default_for(&EventKinds::builtin())
    }

    /// The spec compiled into attune, its kinds resolved in `kinds` (a meaning such as
    /// `complaint_opened` also reads the business's kinds declared to mean it).
    pub fn default_for(kinds: &EventKinds) -> FeatureSpec {
        FeatureSpec::parse_with(DEFAULT_SPEC, "features.toml (built in)", kinds)
            .expect("the built-in feature spec is valid (tested)")
    }

    /// Parses and checks a spec naming attune's own kinds only.
    pub fn parse(text: &str, origin: &str) -> Result<FeatureSpec, SpecError> {
        Self::parse_with(text, origin, &EventKinds::builtin())
    }

    /// Parses and checks a spec; `origin` names it in errors (usually the file's path) and
    /// `kinds` are the event kinds it may name.
    pub fn parse_with(
        text: &str,
        origin: &str,
        kinds: &EventKinds,
    ) -> Result<FeatureSpec, SpecError> {
        let at = |line: usize, message: String| SpecError {
            origin: origin.to_owned(),
            line,
            message,
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            at(
                e.span().map(|s| line_of(text, s)).unwrap_or(1),
                e.message().trim().to_owned(),
            )
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
                                    return Err(at(
                                        line,
                                        format!(
                                            "settings.attributes: {other} is not an attribute name; write names as strings"
                                        ),
                                    ));
                                }
                            }
                        }
                        Attributes::Only(names)
                    }
                    other => {
                        return Err(at(
                            line,
                            format!(
                                "settings.attributes: {other} is not allowed; use \"all\", \"none\" or a list of attribute names"
                            ),
                        ));
                    }
                }
            }
        };
        let default_no_activity = match &raw.settings.no_activity {
            None => NoActivity::Zero,
            Some(v) => no_activity(v.get_ref()).map_err(|m| {
                at(
                    line_of(text, v.span()),
                    format!("settings.no_activity: {m}"),
                )
            })?,
        };
        let max_levels = match raw.settings.max_levels {
            None => MAX_LEVELS,
            Some(0) => {
                return Err(at(
                    1,
                    "settings.max_levels must be at least 1 (50 by default)".into(),
                ));
            }
            Some(n) => n as usize,
        };
        let mut features: Vec<FeatureDef> = Vec::new();
        for spanned in raw.feature {
            let line = line_of(text, spanned.span());
            let f = spanned.into_inner();
            let err = |message: String| at(line, format!("feature {:?}: {message}", f.name));
            check_name(&f.name).map_err(&err)?;
            if features.iter().any(|d| d.name == f.name) {
                return Err(err("is defined twice; feature names must be unique".into()));
            }
            let kind = build_kind(&f, &features, kinds).map_err(&err)?;
            if let Some(t) = &f.describe {
                check_template(t).map_err(&err)?;
            }
            let no_activity = match &f.no_activity {
                None => default_no_activity,
                Some(v) => no_activity(v).map_err(|m| err(format!("no_activity: {m}")))?,
            };
            features.push(FeatureDef {
                name: f.name,
                kind,
                describe: f.describe,
                describe_at_cap: f.describe_at_cap,
                no_activity,
            });
        }
        let auto = raw.settings.auto.unwrap_or(false);
        if features.is_empty() && attributes == Attributes::None && !auto {
            return Err(at(
                1,
                "the spec defines no features; add [[feature]] tables or set [settings] auto = true".into(),
            ));
        }
        let digest = Sha256::digest(text.as_bytes());
        Ok(FeatureSpec {
            features,
            attributes,
            auto,
            max_levels,
            hash: digest.iter().take(8).map(|b| format!("{b:02x}")).collect(),
            currency: Default::default(),
        })
    }

    /// Reads a spec from a file.
    pub fn load(path: &std::path::Path, kinds: &EventKinds) -> Result<FeatureSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            origin: path.display().to_string(),
            line: 1,
            message: format!("cannot read the file: {e}"),
        })?;
        FeatureSpec::parse_with(&text, &path.display().to_string(), kinds)
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
            Some(attr) => self.takes_attribute(attr),
            None => false,
        }
    }

    /// Whether the customer attribute `attr` becomes the feature `attr.NAME`.
    pub fn takes_attribute(&self, attr: &str) -> bool {
        match &self.attributes {
            Attributes::All => true,
            Attributes::None => false,
            Attributes::Only(names) => names.contains(attr),
        }
    }

    /// How far back each kind of event must be read to compute the spec as of a day.
    pub fn lookback(&self) -> Lookback {
        let mut l = Lookback::default();
        let days = |w: &Window| match w {
            Window::Days(d) => Some(*d),
            Window::All => None,
        };
        for f in &self.features {
            match &f.kind {
                FeatureKind::Window { kinds, window, .. } => l.need(&kinds.set, days(window)),
                FeatureKind::ActiveDays {
                    kinds: Some(kinds),
                    window,
                } => l.need(&kinds.set, days(window)),
                // Any kind: everything there is.
                FeatureKind::ActiveDays { kinds: None, .. } => l.need_everything(),
                FeatureKind::Change {
                    kinds,
                    recent_days,
                    prior_days,
                    ..
                } => l.need(&kinds.set, Some(recent_days + prior_days)),
                // Capped, with the cap as the answer when nothing happened: older events
                // cannot change the value.
                FeatureKind::DaysSince {
                    kinds,
                    cap_days: Some(c),
                    if_none: IfNone::Cap,
                } => l.need(&kinds.set, Some(*c)),
                FeatureKind::DaysSince { kinds, .. } => l.need(&kinds.set, None),
                FeatureKind::Balance { add, subtract } => {
                    l.need(&add.set, None);
                    l.need(&subtract.set, None);
                }
                FeatureKind::OpenAge {
                    open,
                    close,
                    reopen,
                } => {
                    l.need(&open.set, None);
                    l.need(&close.set, None);
                    if let Some(r) = reopen {
                        l.need(&r.set, None);
                    }
                }
                FeatureKind::LatestVsMean { kind, .. } => l.need(&kind.set, None),
                FeatureKind::Tenure(_)
                | FeatureKind::Field(_)
                | FeatureKind::MonthsUntil(_)
                | FeatureKind::Ratio { .. }
                | FeatureKind::Attribute { .. } => {}
            }
        }
        l
    }

    /// The spec as a file: every feature written out with its settings (auto features
    /// already derived stay as they are; `auto` is written as set). Parsing it again gives
    /// the same features, which is how a model carries the spec it was trained on.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# The features this model was trained on, written by attune.\n[settings]\n",
        );
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |names: &[String]| {
            format!(
                "[{}]",
                names.iter().map(|n| q(n)).collect::<Vec<_>>().join(", ")
            )
        };
        match &self.attributes {
            Attributes::All => out.push_str("attributes = \"all\"\n"),
            Attributes::None => out.push_str("attributes = \"none\"\n"),
            Attributes::Only(names) => {
                let names: Vec<String> = names.iter().cloned().collect();
                let _ = writeln!(out, "attributes = {}", list(&names));
            }
        }
        let _ = writeln!(out, "auto = {}", self.auto);
        let _ = writeln!(out, "max_levels = {}", self.max_levels);
        let window = |w: &Window| match w {
            Window::Days(d) => d.to_string(),
            Window::All => "\"all\"".into(),
        };
        let stat = |s: &Stat| match s {
            Stat::Count => "\"count\"",
            Stat::Sum => "\"sum\"",
        };
        let clamp = |c: &(f64, f64)| format!("[{:?}, {:?}]", c.0, c.1);
        for f in &self.features {
            let _ = write!(out, "\n[[feature]]\nname = {}\n", q(&f.name));
            let mut kv = |k: &str, v: String| {
                let _ = writeln!(out, "{k} = {v}");
            };
            match &f.kind {
                FeatureKind::Tenure(unit) => {
                    kv("type", q("tenure"));
                    if *unit == TenureUnit::Days {
                        kv("unit", q("days"));
                    }
                }
                FeatureKind::Field(field) => {
                    kv("type", q("field"));
                    kv(
                        "field",
                        q(match field {
                            CustomerField::MonthlyCharge => "monthly_charge",
                            CustomerField::Contract => "contract",
                            CustomerField::Plan => "plan",
                            CustomerField::PreferredChannel => "preferred_channel",
                        }),
                    );
                }
                FeatureKind::MonthsUntil(field) => {
                    kv("type", q("months_until"));
                    kv(
                        "field",
                        q(match field {
                            DateField::ContractEnd => "contract_end",
                            DateField::FirstInvoiceDue => "first_invoice_due",
                        }),
                    );
                }
                FeatureKind::Window {
                    stat: s,
                    kinds,
                    window: w,
                } => {
                    kv(
                        "type",
                        q(match s {
                            Stat::Count => "count",
                            Stat::Sum => "sum",
                        }),
                    );
                    kv("kinds", list(&kinds.names));
                    kv("window_days", window(w));
                }
                FeatureKind::ActiveDays { kinds, window: w } => {
                    kv("type", q("active_days"));
                    if let Some(k) = kinds {
                        kv("kinds", list(&k.names));
                    }
                    kv("window_days", window(w));
                }
                FeatureKind::DaysSince {
                    kinds,
                    cap_days,
                    if_none,
                } => {
                    kv("type", q("days_since"));
                    kv("kinds", list(&kinds.names));
                    if let Some(c) = cap_days {
                        kv("cap_days", c.to_string());
                    }
                    kv(
                        "if_none",
                        q(match if_none {
                            IfNone::Signup => "signup",
                            IfNone::Cap => "cap",
                            IfNone::Missing => "missing",
                        }),
                    );
                }
                FeatureKind::Balance { add, subtract } => {
                    kv("type", q("balance"));
                    kv("add", list(&add.names));
                    kv("subtract", list(&subtract.names));
                }
                FeatureKind::OpenAge {
                    open,
                    close,
                    reopen,
                } => {
                    kv("type", q("open_age"));
                    kv("open", list(&open.names));
                    kv("close", list(&close.names));
                    if let Some(r) = reopen {
                        kv("reopen", list(&r.names));
                    }
                }
                FeatureKind::Change {
                    stat: s,
                    kinds,
                    recent_days,
                    prior_days,
                    clamp: c,
                } => {
                    kv("type", q("change"));
                    kv("stat", stat(s).to_owned());
                    kv("kinds", list(&kinds.names));
                    kv("recent_days", recent_days.to_string());
                    kv("prior_days", prior_days.to_string());
                    kv("clamp", clamp(c));
                }
                FeatureKind::LatestVsMean { kind, clamp: c } => {
                    kv("type", q("latest_vs_mean"));
                    kv(
                        "kind_of_event",
                        q(kind.names.first().map(String::as_str).unwrap_or_default()),
                    );
                    kv("clamp", clamp(c));
                }
                FeatureKind::Ratio {
                    numerator,
                    denominator,
                } => {
                    kv("type", q("ratio"));
                    kv("numerator", q(numerator));
                    kv("denominator", q(denominator));
                }
                FeatureKind::Attribute { attribute } => {
                    kv("type", q("attribute"));
                    kv("attribute", q(attribute));
                }
            }
            if f.kind.reads_activity() {
                kv(
                    "no_activity",
                    q(match f.no_activity {
                        NoActivity::Zero => "zero",
                        NoActivity::Unknown => "unknown",
                    }),
                );
            }
            if let Some(d) = &f.describe {
                kv("describe", q(d));
            }
            if let Some(d) = &f.describe_at_cap {
                kv("describe_at_cap", q(d));
            }
        }
        out
    }
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 96
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err("is not a valid name; use lowercase letters, digits and _, starting with a letter (at most 96)".into())
    }
}

fn no_activity(raw: &str) -> Result<NoActivity, String> {
    match raw {
        "zero" => Ok(NoActivity::Zero),
        "unknown" | "missing" => Ok(NoActivity::Unknown),
        other => Err(format!(
            "{other:?} is not known; use \"zero\" (no activity yet counts as none) or \"unknown\" (the training mean)"
        )),
    }
}

fn kinds(field: &str, raw: Option<&Vec<String>>, catalog: &EventKinds) -> Result<Kinds, String> {
    let raw = raw.ok_or_else(|| format!("`{field}` is missing; list event kinds, e.g. {field} = [\"login\", \"support_contact\"]"))?;
    if raw.is_empty() {
        return Err(format!("`{field}` is empty; list at least one event kind"));
    }
    let mut out = Kinds {
        names: Vec::new(),
        set: KindSet::new(),
    };
    for k in raw {
        let set = catalog.select(k).map_err(|e| format!("{field}: {e}"))?;
        let name = k.trim().to_owned();
        if !out.names.contains(&name) {
            out.names.push(name);
        }
        out.set.extend(&set);
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

fn window(v: Option<&toml::Value>) -> Result<Window, String> {
    match v {
        Some(toml::Value::Integer(d)) if *d >= 1 && *d <= 36_600 => Ok(Window::Days(*d as u32)),
        Some(toml::Value::Integer(d)) if *d < 1 => {
            Err("`window_days` must be at least 1 day".into())
        }
        Some(toml::Value::String(s)) if s == "all" => Ok(Window::All),
        None => Err("`window_days` is missing; give a number of days or \"all\"".into()),
        Some(other) => Err(format!(
            "window_days = {other} is not a window; give a number of days (at most 36600) or \"all\""
        )),
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

fn build_kind(
    f: &RawFeature,
    earlier: &[FeatureDef],
    catalog: &EventKinds,
) -> Result<FeatureKind, String> {
    let field = f.field.as_deref();
    Ok(match f.kind.as_str() {
        "tenure" => FeatureKind::Tenure(match f.unit.as_deref() {
            None | Some("months") => TenureUnit::Months,
            Some("days") => TenureUnit::Days,
            Some(other) => {
                return Err(format!(
                    "unit {other:?} is not known; use \"months\" or \"days\""
                ));
            }
        }),
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
            kinds: kinds("kinds", f.kinds.as_ref(), catalog)?,
            window: window(f.window_days.as_ref())?,
        },
        "active_days" => FeatureKind::ActiveDays {
            kinds: match &f.kinds {
                None => None,
                Some(k) => Some(kinds("kinds", Some(k), catalog)?),
            },
            window: window(f.window_days.as_ref())?,
        },
        "days_since" => FeatureKind::DaysSince {
            kinds: kinds("kinds", f.kinds.as_ref(), catalog)?,
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
            add: kinds("add", f.add.as_ref(), catalog)?,
            subtract: kinds("subtract", f.subtract.as_ref(), catalog)?,
        },
        "open_age" => FeatureKind::OpenAge {
            open: kinds("open", f.open.as_ref(), catalog)?,
            close: kinds("close", f.close.as_ref(), catalog)?,
            reopen: f
                .reopen
                .as_ref()
                .map(|r| kinds("reopen", Some(r), catalog))
                .transpose()?,
        },
        "change" => FeatureKind::Change {
            stat: stat(f.stat.as_deref())?,
            kinds: kinds("kinds", f.kinds.as_ref(), catalog)?,
            recent_days: positive("recent_days", f.recent_days)?,
            prior_days: positive("prior_days", f.prior_days)?,
            clamp: clamp(f.clamp, (-1.0, 3.0))?,
        },
        "latest_vs_mean" => {
            let name = f.kind_of_event.as_deref().ok_or(
                "`kind_of_event` is missing; name one event kind, e.g. \"invoice_issued\"",
            )?;
            FeatureKind::LatestVsMean {
                kind: Kinds {
                    names: vec![name.trim().to_owned()],
                    set: catalog
                        .select(name)
                        .map_err(|e| format!("kind_of_event: {e}"))?,
                },
                clamp: clamp(f.clamp, (-1.0, 5.0))?,
            }
        }
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
pub const PLACEHOLDERS: &[&str] = &[
    "value",
    "money",
    "pct",
    "abs_pct",
    "signed_pct",
    "up_down",
    "s",
];

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
    use crate::domain::{DeclaredKind, Meaning};

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
        assert_eq!(l.of(Meaning::Usage.code()), Some(Some(120)));
        assert_eq!(l.of(Meaning::PaymentFailed.code()), Some(Some(90)));
        assert_eq!(
            l.of(Meaning::Login.code()),
            Some(None),
            "days since last contact looks back forever"
        );
        assert_eq!(
            l.of(Meaning::InvoiceIssued.code()),
            Some(None),
            "the usual bill is over all of history"
        );
        assert_eq!(l.of(Meaning::PaymentMade.code()), None);
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

    #[test]
    fn specs_name_declared_kinds_and_meanings_stand_for_every_kind_meaning_them() {
        let declared = vec![
            DeclaredKind::parse("message", "none").unwrap(),
            DeclaredKind::parse("ticket", "complaint_opened").unwrap(),
        ];
        let kinds = EventKinds::provisional(&declared);
        let text = "[[feature]]\nname = \"messages_all\"\ntype = \"count\"\nkinds = [\"message\"]\nwindow_days = \"all\"\n\n[[feature]]\nname = \"complaints\"\ntype = \"count\"\nkinds = [\"complaint_opened\"]\nwindow_days = 30\nno_activity = \"unknown\"\n";
        let spec = FeatureSpec::parse_with(text, "s.toml", &kinds).unwrap();
        let FeatureKind::Window {
            kinds: k, window, ..
        } = &spec.features[0].kind
        else {
            panic!()
        };
        assert_eq!(*window, Window::All);
        assert_eq!(
            k.set.iter().collect::<Vec<_>>(),
            [kinds.lookup("message").unwrap().code]
        );
        let FeatureKind::Window { kinds: k, .. } = &spec.features[1].kind else {
            panic!()
        };
        assert!(k.has(Meaning::ComplaintOpened.code()));
        assert!(k.has(kinds.lookup("ticket").unwrap().code));
        assert_eq!(spec.features[1].no_activity, NoActivity::Unknown);
        assert_eq!(spec.features[0].no_activity, NoActivity::Zero);
        // The same text without the declarations names an unknown kind.
        let e = FeatureSpec::parse(text, "s.toml").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "s.toml:1: feature \"messages_all\": kinds: unknown event kind \"message\""
            ),
            "{e}"
        );
        assert!(err("[[feature]]\nname = \"a\"\ntype = \"count\"\nkinds = [\"login\"]\nwindow_days = \"ever\"\n").contains("a number of days (at most 36600) or \"all\""));
        assert!(
            err(
                "[settings]\nno_activity = \"none\"\n[[feature]]\nname = \"a\"\ntype = \"tenure\"\n"
            )
            .contains("f.toml:2: settings.no_activity")
        );
        assert!(
            err("[[feature]]\nname = \"a\"\ntype = \"tenure\"\nunit = \"weeks\"\n")
                .contains("\"months\" or \"days\"")
        );
    }

    #[test]
    fn a_spec_written_out_reads_back_the_same() {
        let declared = vec![DeclaredKind::parse("message", "none").unwrap()];
        let kinds = EventKinds::provisional(&declared);
        let mut text = DEFAULT_SPEC.to_owned();
        text.push_str("\n[[feature]]\nname = \"tenure_days\"\ntype = \"tenure\"\nunit = \"days\"\n\n[[feature]]\nname = \"active_90\"\ntype = \"active_days\"\nwindow_days = 90\n\n[[feature]]\nname = \"messages\"\ntype = \"active_days\"\nkinds = [\"message\"]\nwindow_days = \"all\"\nno_activity = \"unknown\"\n\n[[feature]]\nname = \"attr_plan\"\ntype = \"attribute\"\nattribute = \"tier \\\"gold\\\"\"\n");
        let spec = FeatureSpec::parse_with(&text, "x", &kinds).unwrap();
        let written = spec.to_toml();
        let again = FeatureSpec::parse_with(&written, "y", &kinds).unwrap();
        assert_eq!(again.features, spec.features);
        assert_eq!(
            (again.attributes, again.auto, again.max_levels),
            (spec.attributes, spec.auto, spec.max_levels)
        );
    }
}
