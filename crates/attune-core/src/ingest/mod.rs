//! Ingest: reads the customer and activity files a business exports (CSV or NDJSON) into
//! domain values, and says exactly what is wrong with every row it cannot use.
//!
//! This module exists so that everything attune knows about customers enters through one
//! door with one set of rules, and so that the people who produced a file can fix it: every
//! refused row comes back as a [`RowError`] naming the file, the line, the column, what is
//! wrong and what would be accepted.
//!
//! **It must never drop a row silently.** Every non-blank data row ends up either in
//! [`Parsed::rows`] or in [`Parsed::rejected`], so `rows + rejected` always equals the
//! number of data rows. Problems with the file as a whole (unreadable, not UTF-8, a required
//! CSV column missing, an unsupported extension) are a [`FileError`] instead and nothing is
//! returned. Parsing is pure: no database, no clock (the caller passes `today`), and it never
//! panics, whatever the input.
//!
//! Conventions shared by both formats:
//! - CSV header names and NDJSON keys are the same; known names match case-insensitively.
//! - Values are trimmed; a blank value (or JSON `null`) is the same as an absent one.
//! - NDJSON values may be JSON strings or numbers interchangeably (`"12.5"` or `12.5`).
//! - NDJSON line numbers are physical lines; blank lines are skipped. CSV line numbers are
//!   those of the line the row starts on; the header is line 1.
//! - Columns attune does not know are kept in `attributes` as text (blank values are not
//!   stored). In NDJSON the entries of an `attributes` object are kept too; a top-level key
//!   wins over an `attributes` entry of the same name.
//! - A row with several problems is reported once, for the first problem found.

mod customers;
mod events;
pub mod mapping;
pub mod record;
pub mod table;

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::domain::{ActivityEvent, Customer, InvalidValue};

/// The file formats ingest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
}

impl Format {
    /// The extensions accepted by [`Format::from_path`].
    pub const EXTENSIONS: &'static str = ".csv, .ndjson, .jsonl, .json, each optionally .gz";

    /// `.csv` is CSV; `.ndjson`, `.jsonl` and `.json` are NDJSON (case-insensitive); any of
    /// them may end in `.gz` (gzip, read as it streams).
    pub fn from_path(path: &Path) -> Result<Format, FileError> {
        let inner = if is_gzip(path) {
            Path::new(path.file_stem().unwrap_or_default())
        } else {
            path
        };
        let ext = inner
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("ndjson" | "jsonl" | "json") => Ok(Format::Ndjson),
            _ => Err(FileError::UnsupportedExtension {
                file: path.display().to_string(),
                accepted: Self::EXTENSIONS,
            }),
        }
    }
}

/// Whether `path` names a gzip file (`.gz`).
pub fn is_gzip(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The name a file goes by without `.gz` and its format extension (`events-2026-01` for
/// `events-2026-01.csv.gz`): the default source of its events.
pub fn file_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let name = if is_gzip(path) {
        &name[..name.len() - 3]
    } else {
        name
    };
    Some(name.rsplit_once('.').map_or(name, |(stem, _)| stem))
}

/// Opens a data file for reading, decompressing a `.gz` one as it is read, with its
/// format.
pub fn open(path: &Path) -> Result<(Box<dyn Read + Send>, Format), FileError> {
    let format = Format::from_path(path)?;
    let file = std::fs::File::open(path).map_err(|e| FileError::Unreadable {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let reader: Box<dyn Read + Send> = if is_gzip(path) {
        Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::with_capacity(1 << 20, file),
        ))
    } else {
        Box::new(file)
    };
    Ok((reader, format))
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "CSV",
            Format::Ndjson => "NDJSON",
        })
    }
}

/// How a customer file's columns map onto [`Customer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomerPreset {
    /// attune's own columns: [`CUSTOMER_COLUMNS`].
    Standard,
    /// The IBM Telco customer churn CSV exactly as shipped: [`TELCO_COLUMNS`].
    Telco,
}

impl CustomerPreset {
    pub const ALL: &'static [CustomerPreset] = &[CustomerPreset::Standard, CustomerPreset::Telco];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomerPreset::Standard => "standard",
            CustomerPreset::Telco => "telco",
        }
    }
}

impl FromStr for CustomerPreset {
    type Err = InvalidValue;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let key = raw.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == key)
            .ok_or_else(|| {
                InvalidValue(format!(
                    "unknown customer preset {raw:?}; expected one of: {}",
                    Self::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

impl fmt::Display for CustomerPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file's display name.
    pub file: String,
    /// 1-based line number; the CSV header is line 1.
    pub line: u64,
    /// The column to blame, when one is.
    pub column: Option<String>,
    /// What is wrong and what is accepted.
    pub problem: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(
                f,
                "{}:{}: column {}: {}",
                self.file, self.line, c, self.problem
            ),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.problem),
        }
    }
}

impl std::error::Error for RowError {}

/// The outcome of parsing a file: the rows that were accepted (with their line numbers) and
/// the rows that were refused. Together they account for every data row.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    pub rows: Vec<(u64, T)>,
    pub rejected: Vec<RowError>,
}

/// A problem with a whole file; no rows are returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{file}: cannot read the file: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{file}: unsupported file extension; expected one of {accepted}")]
    UnsupportedExtension {
        file: String,
        accepted: &'static str,
    },
    #[error("{file}:{line}: not valid UTF-8; save the file as UTF-8")]
    NotUtf8 { file: String, line: u64 },
    #[error(
        "{file}: missing required column{s} {}; the file's columns are: {}",
        quote_list(missing),
        if found.is_empty() { "(none)".to_owned() } else { found.join(", ") },
        s = if missing.len() == 1 { "" } else { "s" }
    )]
    MissingColumns {
        file: String,
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error(
        "{file}: column {column:?} appears more than once in the header; each column may appear once"
    )]
    DuplicateColumn { file: String, column: String },
    #[error("{file}: the {preset} preset reads CSV only; this file is {format}")]
    PresetNeedsCsv {
        file: String,
        preset: CustomerPreset,
        format: Format,
    },
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The standard customer columns (CSV header names and NDJSON keys), for the README.
pub const CUSTOMER_COLUMNS: &[(&str, &str)] = &[
    (
        "customer_id",
        "Required. The customer's id in your own systems (at most 128 characters).",
    ),
    (
        "signup_date",
        "Required. The day the relationship began, YYYY-MM-DD; not in the future.",
    ),
    ("plan", "Required. The plan or tariff name, as text."),
    (
        "monthly_charge",
        "Required. The regular monthly charge: a number >= 0, e.g. 29.85.",
    ),
    (
        "contract_type",
        "Optional. month_to_month (default), one_year or two_year.",
    ),
    (
        "contract_end",
        "Optional. The day the current contract term ends, YYYY-MM-DD.",
    ),
    (
        "first_invoice_due",
        "Optional. The day the first invoice is due, YYYY-MM-DD.",
    ),
    (
        "churned_on",
        "Optional. The day the customer left, YYYY-MM-DD; not before signup_date.",
    ),
    (
        "preferred_channel",
        "Optional. email (default), sms, phone or post.",
    ),
    (
        "consent",
        "Optional. Channels the customer agreed to be contacted on, e.g. email;sms, or all/none. \
         Default none: a customer who gave no consent is sent nothing.",
    ),
    (
        "(any other column)",
        "Kept as a text attribute. In NDJSON an `attributes` object is kept too.",
    ),
];

/// The IBM Telco churn CSV columns read by [`CustomerPreset::Telco`] (all are required).
pub const TELCO_COLUMNS: &[(&str, &str)] = customers::TELCO_COLUMNS;

/// The activity event columns (CSV header names and NDJSON keys), for the README.
pub const EVENT_COLUMNS: &[(&str, &str)] = &[
    (
        "customer_id",
        "Required. The customer the event is about (their customer_id).",
    ),
    (
        "kind",
        "Required. usage, login, invoice_issued, payment_made, payment_failed, complaint_opened, \
         complaint_resolved, complaint_reopened, support_contact, meter_reading, plan_change, \
         contract_renewed, cancellation_requested or churned.",
    ),
    (
        "occurred_at",
        "Required. RFC 3339 (2025-03-01T09:30:00Z), or YYYY-MM-DD HH:MM:SS taken as UTC, or \
         YYYY-MM-DD meaning midnight UTC, or unix seconds.",
    ),
    (
        "value",
        "Optional number: usage amount, invoice or payment amount; for complaint_resolved the \
         customer's satisfaction, 1 to 5.",
    ),
    (
        "source",
        "Optional. The system the event came from; defaults to the import's source name.",
    ),
    (
        "source_event_id",
        "Optional. The event's id in that system. When absent, a stable id is derived from \
         customer_id, kind, occurred_at and value, so re-importing a file never duplicates \
         events (two identical events in one file count once).",
    ),
    (
        "(any other column)",
        "Kept as a text attribute. In NDJSON an `attributes` object is kept too.",
    ),
];

/// Parses a customer file. `file` is the name used in errors; `today` bounds signup dates
/// (and anchors the Telco preset's tenure).
pub fn parse_customers<R: Read>(
    file: &str,
    reader: R,
    format: Format,
    preset: CustomerPreset,
    today: NaiveDate,
) -> Result<Parsed<Customer>, FileError> {
    match preset {
        CustomerPreset::Standard => customers::parse_standard(file, reader, format, today),
        CustomerPreset::Telco => {
            if format != Format::Csv {
                return Err(FileError::PresetNeedsCsv {
                    file: file.to_owned(),
                    preset,
                    format,
                });
            }
            customers::parse_telco(file, reader, today)
        }
    }
}

/// Parses an activity event file. Events without a `source` get `default_source`.
pub fn parse_events<R: Read>(
    file: &str,
    reader: R,
    format: Format,
    default_source: &str,
) -> Result<Parsed<ActivityEvent>, FileError> {
    events::parse(file, reader, format, default_source)
}

/// Fuzzing entry point: runs every customer parser over `data` and ignores the result.
pub fn fuzz_customers(data: &[u8]) {
    let today = NaiveDate::from_ymd_opt(2025, 6, 30).unwrap_or_default();
    for format in [Format::Csv, Format::Ndjson] {
        for preset in CustomerPreset::ALL {
            let _ = parse_customers("fuzz", data, format, *preset, today);
        }
    }
}

/// Fuzzing entry point: runs the event parser over `data` in both formats and ignores the
/// result.
pub fn fuzz_events(data: &[u8]) {
    for format in [Format::Csv, Format::Ndjson] {
        let _ = parse_events("fuzz", data, format, "fuzz");
    }
}

#[cfg(test)]
mod tests;
