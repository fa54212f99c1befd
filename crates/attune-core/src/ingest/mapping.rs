//! How a source's rows become attune events: which of its columns holds each of attune's
//! fields, what its own kind names mean, and the checks every event must pass (a kind the
//! business records: attune's own or a declared one; a plausible timestamp; a value in the
//! range its meaning allows). A row that fails is a [`Rejection`] with a reason code, which
//! the store keeps in quarantine with the raw row.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::record::{Cell, Problem, Record, fnv1a64, parse_number, parse_timestamp};
use crate::domain::{ActivityEvent, CustomerId, EventKinds, KindDef, MAX_EVENT_VALUE, Meaning};

/// attune's event fields, as named in files, in mappings and in the README.
pub const EVENT_FIELDS: &[&str] = &[
    "customer_id",
    "kind",
    "occurred_at",
    "value",
    "source",
    "source_event_id",
];

/// How one source's rows map onto attune events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventMapping {
    /// The source's name: events that carry no `source` of their own get it.
    pub source: String,
    /// attune field -> the source's column for it. Unmapped fields are read from the
    /// column of the same name.
    pub columns: BTreeMap<String, String>,
    /// The source's own kind names (normalized: trimmed, lowercase, `-` and spaces as `_`)
    /// -> the name of the kind they are stored as. Names not listed are read as kinds of
    /// `catalog`, built-in aliases included.
    pub kinds: BTreeMap<String, String>,
    /// The kinds the business records, with their codes.
    pub catalog: Arc<EventKinds>,
    /// How long ids and text values may be (`[input]`).
    pub limits: InputLimits,
}

/// How long an event's ids and text values may be, in bytes (`[input]` in the config):
/// longer ones are refused (`too_long`, kept in quarantine), so one runaway field (a
/// 10 MB id) never lands in the database. Customer ids have their own fixed limit
/// ([`CustomerId::MAX_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputLimits {
    /// `source_event_id` and `source`.
    pub max_id_bytes: usize,
    /// Each attribute's value (columns beyond the event's own, NDJSON `attributes`).
    pub max_text_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_id_bytes: 256,
            max_text_bytes: 8192,
        }
    }
}

impl InputLimits {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(16..=65_536).contains(&self.max_id_bytes) {
            return Err((
                "input.max_id_bytes",
                format!("{} is outside 16 to 65536", self.max_id_bytes),
            ));
        }
        if !(64..=16 << 20).contains(&self.max_text_bytes) {
            return Err((
                "input.max_text_bytes",
                format!("{} is outside 64 to 16777216", self.max_text_bytes),
            ));
        }
        Ok(())
    }
}

impl EventMapping {
    /// attune's own column names and kinds.
    pub fn standard(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            ..Self::default()
        }
    }

    /// attune's own column names, and the kinds of `catalog`.
    pub fn standard_with(source: &str, catalog: Arc<EventKinds>) -> Self {
        Self {
            source: source.to_owned(),
            catalog,
            ..Self::default()
        }
    }

    /// The column that holds `field` in this source.
    pub fn column<'a>(&'a self, field: &'a str) -> &'a str {
        self.columns.get(field).map_or(field, String::as_str)
    }

    /// Source columns that are mapped onto attune fields (not kept as attributes).
    fn mapped_columns(&self) -> [&str; EVENT_FIELDS.len()] {
        std::array::from_fn(|i| self.column(EVENT_FIELDS[i]))
    }

    fn kind(&self, raw: &str) -> Result<&KindDef, Problem> {
        let key = crate::domain::kinds::normalize(raw);
        let name = self.kinds.get(&key).map_or(raw, String::as_str);
        self.catalog.accept(name).map_err(|e| {
            let mut msg = e.to_string();
            if !self.kinds.is_empty() {
                msg.push_str(&format!(
                    "; or one of this source's names: {}",
                    self.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            Problem::at(self.column("kind"), msg)
        })
    }
}

/// Why an event was not stored. The code is stable (it is stored and filtered on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The row could not be read: wrong number of CSV fields, not JSON, not UTF-8.
    Malformed,
    /// A required field is missing or blank.
    MissingField,
    UnknownKind,
    /// Not a timestamp, before 1970, or more than a day in the future.
    BadTimestamp,
    /// Not a number, or outside the range its kind allows.
    BadValue,
    /// Everything else about the event is fine; attune does not know its customer yet.
    UnknownCustomer,
    /// An id or text value longer than `[input]` allows.
    TooLong,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::MissingField => "missing_field",
            RejectCode::UnknownKind => "unknown_kind",
            RejectCode::BadTimestamp => "bad_timestamp",
            RejectCode::BadValue => "bad_value",
            RejectCode::UnknownCustomer => "unknown_customer",
            RejectCode::TooLong => "too_long",
        }
    }
}

/// One refused row: the reason code, the column to blame and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub column: Option<String>,
    pub problem: String,
    /// The row's text when it could not be read as fields.
    pub raw: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column {c}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl Rejection {
    /// A row that could not be framed.
    pub fn malformed(p: Problem) -> Self {
        Self {
            code: RejectCode::Malformed,
            column: p.column,
            problem: p.problem,
            raw: p.raw,
        }
    }

    fn new(code: RejectCode, p: Problem) -> Self {
        Self {
            code,
            column: p.column,
            problem: p.problem,
            raw: None,
        }
    }
}

/// How far ahead of `now` an event may claim to have happened (clock skew between
/// systems), before its timestamp counts as bad.
pub const FUTURE_TOLERANCE_SECS: i64 = 86_400;

/// Maps one row onto an event, checking it as it goes.
pub fn map_event(
    r: &Record,
    m: &EventMapping,
    now: DateTime<Utc>,
) -> Result<ActivityEvent, Rejection> {
    let missing = |p: Problem| Rejection::new(RejectCode::MissingField, p);
    let malformed = |p: Problem| Rejection::new(RejectCode::Malformed, p);
    let col = |f: &'static str| m.column(f);

    let customer_raw = r
        .required(col("customer_id"), "a customer id")
        .map_err(missing)?;
    let customer = CustomerId::parse(customer_raw)
        .map_err(|e| malformed(Problem::at(col("customer_id"), e.to_string())))?;
    let kind_raw = r
        .required(col("kind"), "an event kind such as login or payment_made")
        .map_err(missing)?;
    let kind = m
        .kind(kind_raw)
        .map_err(|p| Rejection::new(RejectCode::UnknownKind, p))?;
    let ts_raw = r
        .required(
            col("occurred_at"),
            "a timestamp such as 2025-03-01T09:30:00Z",
        )
        .map_err(missing)?;
    let occurred_at = parse_timestamp(col("occurred_at"), ts_raw)
        .map_err(|p| Rejection::new(RejectCode::BadTimestamp, p))?;
    if occurred_at.timestamp() < 0 {
        return Err(Rejection::new(
            RejectCode::BadTimestamp,
            Problem::at(
                col("occurred_at"),
                format!("{ts_raw:?} is before 1970; expected the time the event happened"),
            ),
        ));
    }
    if occurred_at.timestamp() > now.timestamp() + FUTURE_TOLERANCE_SECS {
        return Err(Rejection::new(
            RejectCode::BadTimestamp,
            Problem::at(
                col("occurred_at"),
                format!(
                    "{ts_raw:?} is more than a day in the future (now is {}); expected the time the event happened",
                    now.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
            ),
        ));
    }
    let value = r
        .text(col("value"))
        .map_err(malformed)?
        .map(|raw| {
            parse_number(col("value"), raw).map_err(|p| Rejection::new(RejectCode::BadValue, p))
        })
        .transpose()?;
    if let Some(v) = value {
        let (lo, hi, what) = kind.meaning.and_then(Meaning::value_range).unwrap_or((
            -MAX_EVENT_VALUE,
            MAX_EVENT_VALUE,
            "a number",
        ));
        if !(lo..=hi).contains(&v) {
            let name = &kind.name;
            let problem = if kind.meaning == Some(Meaning::ComplaintResolved) {
                format!("{v} is not a satisfaction score; expected 1 to 5 for {name}")
            } else {
                format!("{v} is out of range for {name}; expected {what} (at most {hi:e})")
            };
            return Err(Rejection::new(
                RejectCode::BadValue,
                Problem::at(col("value"), problem),
            ));
        }
    }
    let source = r
        .text(col("source"))
        .map_err(malformed)?
        .unwrap_or(&m.source)
        .to_owned();
    let source_event_id = match r.text(col("source_event_id")).map_err(malformed)? {
        Some(id) => id.to_owned(),
        None => derived_event_id(&customer, &kind.name, occurred_at, value),
    };
    let too_long = |column: &str, what: &str, len: usize, max: usize, key: &str| {
        Rejection::new(
            RejectCode::TooLong,
            Problem::at(
                column,
                format!("{what} is {len} bytes long; at most {max} are allowed ([input] {key})"),
            ),
        )
    };
    let max_id = m.limits.max_id_bytes;
    if source_event_id.len() > max_id {
        let len = source_event_id.len();
        return Err(too_long(
            col("source_event_id"),
            "the event id",
            len,
            max_id,
            "max_id_bytes",
        ));
    }
    if source.len() > max_id {
        return Err(too_long(
            col("source"),
            "the source",
            source.len(),
            max_id,
            "max_id_bytes",
        ));
    }
    let attributes = r.others(&m.mapped_columns());
    let max_text = m.limits.max_text_bytes;
    if let Some((k, v)) = attributes
        .iter()
        .find(|(k, v)| v.len() > max_text || k.len() > max_id)
    {
        return Err(if k.len() > max_id {
            too_long(k, "the attribute's name", k.len(), max_id, "max_id_bytes")
        } else {
            too_long(k, "the value", v.len(), max_text, "max_text_bytes")
        });
    }
    Ok(ActivityEvent {
        customer,
        kind: kind.code,
        occurred_at,
        value,
        attributes: attributes.into_iter().collect(),
        source,
        source_event_id,
    })
}

/// A stable id for an event its source gave none: `h:` and 16 hex digits of the FNV-1a
/// hash of the customer, the kind, the time and the value as parsed, so `2025-03-01` and
/// `2025-03-01 00:00:00` (or `12.5` and `12.50`) give the same id and a re-import never
/// duplicates. Events of one input that share all four get `#1`, `#2`, ... after the first
/// ([`Repeats`]): two purchases in the same second stay two events.
pub fn derived_event_id(
    customer: &CustomerId,
    kind: &str,
    occurred_at: DateTime<Utc>,
    value: Option<f64>,
) -> String {
    let occurred_text = occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let value_text = value.map(|v| v.to_string()).unwrap_or_default();
    let key = [customer.as_str(), kind, &occurred_text, &value_text].join("\u{1f}");
    format!("h:{:016x}", fnv1a64(key.as_bytes()))
}

/// Events of one input (a file, a request, a batch of a query) whose ids were derived,
/// counted by id, so that the n-th event alike in customer, kind, time and value gets
/// `#n` (the first keeps the plain id). The same input sent again gives the same ids in
/// the same order, so it is a duplicate; a file resumed after a crash counts the rows it
/// had committed again before going on.
#[derive(Debug, Default)]
pub struct Repeats {
    seen: HashMap<u64, u32, foldhash::fast::FixedState>,
}

impl Repeats {
    /// Gives `event` its place among the events alike before it, if its id was derived
    /// (`derived`).
    pub fn number(&mut self, event: &mut ActivityEvent, derived: bool) {
        if !derived {
            return;
        }
        let n = self
            .seen
            .entry(fnv1a64(event.source_event_id.as_bytes()))
            .or_insert(0);
        if *n > 0 {
            event.source_event_id = format!("{}#{n}", event.source_event_id);
        }
        *n += 1;
    }
}

/// Whether the row's event id is derived (the row names none).
pub fn derives_id(r: &Record, m: &EventMapping) -> bool {
    !matches!(r.text(m.column("source_event_id")), Ok(Some(_)))
}

/// The row as received, as a JSON object of column -> text (null for JSON null), kept in
/// quarantine so a retry can map it again.
pub fn raw_json(r: &Record) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, c) in &r.fields {
        let v = match c {
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Null => serde_json::Value::Null,
            Cell::Complex { json, .. } => {
                serde_json::from_str(json).unwrap_or(serde_json::Value::String(json.clone()))
            }
        };
        map.insert(k.to_string(), v);
    }
    if !r.nested_attributes.is_empty() {
        let attrs: serde_json::Map<String, serde_json::Value> = r
            .nested_attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        map.insert("attributes".into(), serde_json::Value::Object(attrs));
    }
    serde_json::Value::Object(map)
}

/// The identity under which a refused row is quarantined: the source's event id when the
/// row has one, else one derived from the raw row, so reading the same file twice
/// quarantines a bad row once.
pub fn quarantine_id(r: &Record, m: &EventMapping) -> String {
    if let Ok(Some(id)) = r.text(m.column("source_event_id")) {
        return id.to_owned();
    }
    format!("raw:{:016x}", fnv1a64(raw_json(r).to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::Record;

    fn rec(pairs: &[(&str, &str)]) -> Record {
        Record {
            fields: pairs
                .iter()
                .map(|(k, v)| ((*k).into(), Cell::Text((*v).to_owned())))
                .collect(),
            nested_attributes: vec![],
        }
    }

    /// Before: a 10 MB `source_event_id` was stored. Ids and values past `[input]`'s
    /// limits are refused with `too_long`, naming the column; at the limit they pass.
    #[test]
    fn ids_and_text_past_the_limits_are_refused() {
        let mut m = EventMapping::standard("s");
        m.limits = InputLimits {
            max_id_bytes: 16,
            max_text_bytes: 64,
        };
        let now = chrono::Utc::now();
        let row = |id: &str, note: &str| {
            rec(&[
                ("customer_id", "c"),
                ("kind", "login"),
                ("occurred_at", "2026-01-01"),
                ("source_event_id", id),
                ("note", note),
            ])
        };
        assert!(map_event(&row(&"a".repeat(16), &"n".repeat(64)), &m, now).is_ok());
        let e = map_event(&row(&"a".repeat(17), "fine"), &m, now).unwrap_err();
        assert_eq!(
            (e.code, e.column.as_deref()),
            (RejectCode::TooLong, Some("source_event_id"))
        );
        assert!(
            e.problem.contains("17 bytes long; at most 16"),
            "{}",
            e.problem
        );
        let e = map_event(&row("id", &"n".repeat(65)), &m, now).unwrap_err();
        assert_eq!(
            (e.code, e.column.as_deref()),
            (RejectCode::TooLong, Some("note"))
        );
        assert!(e.problem.contains("max_text_bytes"), "{}", e.problem);
        // The default limits refuse the 10 MB id of the report.
        let m = EventMapping::standard("s");
        let e = map_event(&row(&"x".repeat(10 << 20), "fine"), &m, now).unwrap_err();
        assert_eq!(e.code, RejectCode::TooLong);
    }

    fn now() -> DateTime<Utc> {
        "2026-01-10T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_sources_own_columns_and_kind_names_map_on() {
        let m = EventMapping {
            source: "billing".into(),
            columns: [
                ("customer_id", "acct"),
                ("kind", "type"),
                ("occurred_at", "ts"),
                ("value", "amount"),
                ("source_event_id", "id"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
            kinds: [("bill".to_owned(), "invoice_issued".to_owned())].into(),
            catalog: Default::default(),
            limits: Default::default(),
        };
        let r = rec(&[
            ("id", "991"),
            ("acct", "c1"),
            ("type", " bill "),
            ("ts", "1767225600"),
            ("amount", "40.5"),
            ("branch", "north"),
        ]);
        let e = map_event(&r, &m, now()).unwrap();
        assert_eq!(e.kind, Meaning::InvoiceIssued.code());
        assert_eq!(e.customer.as_str(), "c1");
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(e.value, Some(40.5));
        assert_eq!(
            (e.source.as_str(), e.source_event_id.as_str()),
            ("billing", "991")
        );
        assert_eq!(e.attributes.len(), 1);
        assert_eq!(e.attributes["branch"], "north");
        // Names the source did not map are read as attune's vocabulary.
        let r = rec(&[("acct", "c1"), ("type", "payment"), ("ts", "2026-01-02")]);
        assert_eq!(
            map_event(&r, &m, now()).unwrap().kind,
            Meaning::PaymentMade.code()
        );
    }

    #[test]
    fn each_kind_of_rejection_has_its_code_and_column() {
        let m = EventMapping::standard("s");
        type Case<'a> = (&'a [(&'a str, &'a str)], RejectCode, &'a str);
        let cases: &[Case] = &[
            (
                &[("kind", "login"), ("occurred_at", "2026-01-01")],
                RejectCode::MissingField,
                "customer_id",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "fax"),
                    ("occurred_at", "2026-01-01"),
                ],
                RejectCode::UnknownKind,
                "kind",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "login"),
                    ("occurred_at", "soon"),
                ],
                RejectCode::BadTimestamp,
                "occurred_at",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "login"),
                    ("occurred_at", "2026-01-12"),
                ],
                RejectCode::BadTimestamp,
                "occurred_at",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "usage"),
                    ("occurred_at", "2026-01-01"),
                    ("value", "-3"),
                ],
                RejectCode::BadValue,
                "value",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "usage"),
                    ("occurred_at", "2026-01-01"),
                    ("value", "1e13"),
                ],
                RejectCode::BadValue,
                "value",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "complaint_resolved"),
                    ("occurred_at", "2026-01-01"),
                    ("value", "6"),
                ],
                RejectCode::BadValue,
                "value",
            ),
            (
                &[
                    ("customer_id", "c"),
                    ("kind", "usage"),
                    ("occurred_at", "2026-01-01"),
                    ("value", "lots"),
                ],
                RejectCode::BadValue,
                "value",
            ),
        ];
        for (pairs, code, column) in cases {
            let err = map_event(&rec(pairs), &m, now()).unwrap_err();
            assert_eq!(
                (err.code, err.column.as_deref()),
                (*code, Some(*column)),
                "{pairs:?}: {err}"
            );
        }
        // A day ahead is tolerated (clock skew); a usage value of 0 is fine.
        let ok = rec(&[
            ("customer_id", "c"),
            ("kind", "usage"),
            ("occurred_at", "2026-01-10T23:00:00Z"),
            ("value", "0"),
        ]);
        assert!(map_event(&ok, &m, now()).is_ok());
    }

    #[test]
    fn quarantine_ids_are_stable_for_the_same_raw_row() {
        let m = EventMapping::standard("s");
        let a = rec(&[("customer_id", "c"), ("kind", "fax")]);
        let b = rec(&[("customer_id", "c"), ("kind", "fax")]);
        let c = rec(&[("customer_id", "d"), ("kind", "fax")]);
        assert_eq!(quarantine_id(&a, &m), quarantine_id(&b, &m));
        assert_ne!(quarantine_id(&a, &m), quarantine_id(&c, &m));
        let with_id = rec(&[("source_event_id", "e-1"), ("kind", "fax")]);
        assert_eq!(quarantine_id(&with_id, &m), "e-1");
    }
}
