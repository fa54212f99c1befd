//! Framing: turns CSV or NDJSON bytes into [`Record`]s (one per data row) and the shared
//! value parsers (dates, numbers, timestamps) the customer and event mappers use.

use std::io::Read;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::{FileError, Format, Parsed, RowError};

/// One cell as read from the file, before interpretation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// CSV text, or a JSON string, number or boolean written as text.
    Text(String),
    /// JSON `null`: the same as an absent key.
    Null,
    /// A JSON array or object where a single value was expected; kept as JSON text.
    Complex { kind: &'static str, json: String },
}

/// One data row: its named cells in file order, plus the entries of an NDJSON
/// `attributes` object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    pub fields: Vec<(String, Cell)>,
    pub nested_attributes: Vec<(String, String)>,
}

/// What is wrong with one row: the column (if one is to blame) and the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub column: Option<String>,
    pub problem: String,
}

impl Problem {
    pub fn at(column: &str, problem: impl Into<String>) -> Self {
        Self {
            column: Some(column.to_owned()),
            problem: problem.into(),
        }
    }

    pub fn row(problem: impl Into<String>) -> Self {
        Self {
            column: None,
            problem: problem.into(),
        }
    }
}

impl Record {
    /// The cell for `name` (column names match case-insensitively).
    pub fn cell(&self, name: &str) -> Option<&Cell> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, c)| c)
    }

    /// The trimmed text of `name`; `None` when absent, null or blank.
    pub fn text(&self, name: &str) -> Result<Option<&str>, Problem> {
        match self.cell(name) {
            None | Some(Cell::Null) => Ok(None),
            Some(Cell::Text(s)) => {
                let s = s.trim();
                Ok(if s.is_empty() { None } else { Some(s) })
            }
            Some(Cell::Complex { kind, .. }) => Err(Problem::at(
                name,
                format!("found a JSON {kind}; expected text or a number"),
            )),
        }
    }

    /// Like [`Record::text`] but a missing value is a problem; `what` says what is expected.
    pub fn required(&self, name: &str, what: &str) -> Result<&str, Problem> {
        self.text(name)?
            .ok_or_else(|| Problem::at(name, format!("value is missing; expected {what}")))
    }

    /// Every field not named in `known` (case-insensitively), then the nested attributes,
    /// as trimmed text. Blank and null values are not returned. Top-level fields win over
    /// nested attributes with the same name.
    pub fn others(&self, known: &[&str]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, c) in &self.fields {
            if known.iter().any(|n| n.eq_ignore_ascii_case(k)) {
                continue;
            }
            let v = match c {
                Cell::Text(s) => s.trim().to_owned(),
                Cell::Null => continue,
                Cell::Complex { json, .. } => json.clone(),
            };
            if !v.is_empty() {
                out.push((k.clone(), v));
            }
        }
        for (k, v) in &self.nested_attributes {
            if !v.is_empty() && !out.iter().any(|(o, _)| o == k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }
}

/// Reads every row of the file and maps it with `map`. Rows that cannot be framed (wrong
/// number of CSV fields, a line that is not a JSON object) and rows `map` refuses become
/// [`RowError`]s; nothing is dropped. For CSV, `required` columns must be in the header.
pub(crate) fn parse_with<R: Read, T>(
    file: &str,
    reader: R,
    format: Format,
    required: &[&str],
    mut map: impl FnMut(&Record) -> Result<T, Problem>,
) -> Result<Parsed<T>, FileError> {
    let mut parsed = Parsed {
        rows: Vec::new(),
        rejected: Vec::new(),
    };
    let mut handle = |line: u64, framed: Result<Record, Problem>| match framed.and_then(|r| map(&r))
    {
        Ok(t) => parsed.rows.push((line, t)),
        Err(p) => parsed.rejected.push(RowError {
            file: file.to_owned(),
            line,
            column: p.column,
            problem: p.problem,
        }),
    };
    match format {
        Format::Csv => read_csv(file, reader, required, &mut handle)?,
        Format::Ndjson => read_ndjson(file, reader, &mut handle)?,
    }
    Ok(parsed)
}

fn unreadable(file: &str, reason: impl ToString) -> FileError {
    FileError::Unreadable {
        file: file.to_owned(),
        reason: reason.to_string(),
    }
}

fn read_csv<R: Read>(
    file: &str,
    mut reader: R,
    required: &[&str],
    handle: &mut impl FnMut(u64, Result<Record, Problem>),
) -> Result<(), FileError> {
    // The whole file is read first so that line numbers can be computed from byte offsets:
    // the csv crate's own line counter lags behind after CRLF endings and blank lines.
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(file, e))?;
    let lines = LineIndex::new(&bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut record = csv::ByteRecord::new();
    let csv_err = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(_) => unreadable(file, e),
        _ => unreadable(file, format!("not valid CSV: {e}")),
    };

    // The header.
    let mut headers: Vec<String> = Vec::new();
    if rdr.read_byte_record(&mut record).map_err(csv_err)? {
        let line = lines.line_of(&record);
        for (i, raw) in record.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| FileError::NotUtf8 {
                file: file.to_owned(),
                line,
            })?;
            let name = name.trim_start_matches('\u{feff}').trim();
            let name = if name.is_empty() {
                format!("column_{}", i + 1)
            } else {
                name.to_owned()
            };
            if headers.iter().any(|h| h.eq_ignore_ascii_case(&name)) {
                return Err(FileError::DuplicateColumn {
                    file: file.to_owned(),
                    column: name,
                });
            }
            headers.push(name);
        }
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|r| !headers.iter().any(|h| h.eq_ignore_ascii_case(r)))
        .map(|r| (*r).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(FileError::MissingColumns {
            file: file.to_owned(),
            missing,
            found: headers,
        });
    }

    while rdr.read_byte_record(&mut record).map_err(csv_err)? {
        let line = lines.line_of(&record);
        let mut values = Vec::with_capacity(record.len());
        for raw in record.iter() {
            let v = std::str::from_utf8(raw).map_err(|_| FileError::NotUtf8 {
                file: file.to_owned(),
                line,
            })?;
            values.push(v.to_owned());
        }
        // A line holding only whitespace is a blank line, not a row.
        if values.len() == 1 && values[0].trim().is_empty() {
            continue;
        }
        if values.len() != headers.len() {
            handle(
                line,
                Err(Problem::row(format!(
                    "row has {} fields but the header has {}; expected one value per column \
                     (quote values that contain commas)",
                    values.len(),
                    headers.len()
                ))),
            );
            continue;
        }
        let fields = headers
            .iter()
            .cloned()
            .zip(values.into_iter().map(Cell::Text))
            .collect::<Vec<_>>();
        handle(
            line,
            Ok(Record {
                fields,
                nested_attributes: Vec::new(),
            }),
        );
    }
    Ok(())
}

/// Maps byte offsets to 1-based line numbers. A line ends at `\n`, `\r\n` or a lone `\r`,
/// as in the csv crate.
struct LineIndex<'a> {
    bytes: &'a [u8],
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut starts = vec![0];
        for (i, b) in bytes.iter().enumerate() {
            let ends_line = *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if ends_line {
                starts.push(i + 1);
            }
        }
        Self { bytes, starts }
    }

    /// The line a record starts on. The csv crate reports the offset where it began
    /// reading, which may be before the line ending of the previous record or before
    /// skipped blank lines, so those are stepped over first.
    fn line_of(&self, record: &csv::ByteRecord) -> u64 {
        let mut offset = record.position().map_or(0, |p| p.byte()) as usize;
        while matches!(self.bytes.get(offset), Some(b'\r' | b'\n')) {
            offset += 1;
        }
        self.starts.partition_point(|s| *s <= offset) as u64
    }
}

fn read_ndjson<R: Read>(
    file: &str,
    mut reader: R,
    handle: &mut impl FnMut(u64, Result<Record, Problem>),
) -> Result<(), FileError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(file, e))?;
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let text = std::str::from_utf8(raw).map_err(|_| FileError::NotUtf8 {
            file: file.to_owned(),
            line,
        })?;
        let text = if i == 0 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        if text.trim().is_empty() {
            continue;
        }
        handle(line, ndjson_record(text));
    }
    Ok(())
}

fn ndjson_record(text: &str) -> Result<Record, Problem> {
    let value: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        Problem::row(format!(
            "not valid JSON ({e}); expected one JSON object per line"
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(Problem::row(format!(
            "line is a JSON {}, not an object; expected one JSON object per line",
            json_kind(&value)
        )));
    };
    let mut record = Record::default();
    for (k, v) in map {
        if k == "attributes" {
            match v {
                serde_json::Value::Object(attrs) => {
                    for (ak, av) in attrs {
                        if let Some(s) = json_to_text(&av) {
                            record.nested_attributes.push((ak, s.trim().to_owned()));
                        }
                    }
                }
                serde_json::Value::Null => {}
                other => {
                    return Err(Problem::at(
                        "attributes",
                        format!(
                            "found a JSON {}; expected an object of names to values",
                            json_kind(&other)
                        ),
                    ));
                }
            }
            continue;
        }
        let cell = match &v {
            serde_json::Value::Null => Cell::Null,
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => Cell::Complex {
                kind: json_kind(&v),
                json: v.to_string(),
            },
            _ => Cell::Text(json_to_text(&v).unwrap_or_default()),
        };
        record.fields.push((k, cell));
    }
    Ok(record)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A JSON value as text: strings as they are, numbers and booleans written out, arrays and
/// objects as JSON; `None` for null.
fn json_to_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

// ---- value parsers -------------------------------------------------------------------

pub(crate) fn parse_date(column: &str, raw: &str) -> Result<NaiveDate, Problem> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        Problem::at(
            column,
            format!("{raw:?} is not a date; expected YYYY-MM-DD"),
        )
    })
}

pub(crate) fn parse_optional_date(
    record: &Record,
    column: &str,
) -> Result<Option<NaiveDate>, Problem> {
    record
        .text(column)?
        .map(|raw| parse_date(column, raw))
        .transpose()
}

pub(crate) fn parse_number(column: &str, raw: &str) -> Result<f64, Problem> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Problem::at(
            column,
            format!("{raw:?} is not a number; expected a decimal number such as 12.50"),
        )),
    }
}

pub(crate) fn parse_non_negative(column: &str, raw: &str) -> Result<f64, Problem> {
    let v = parse_number(column, raw)?;
    if v < 0.0 {
        return Err(Problem::at(
            column,
            format!("{raw} is negative; expected a number >= 0"),
        ));
    }
    Ok(v)
}

pub(crate) fn parse_timestamp(column: &str, raw: &str) -> Result<DateTime<Utc>, Problem> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(Problem::at(
        column,
        format!(
            "{raw:?} is not a timestamp; expected RFC 3339 (2025-03-01T09:30:00Z), \
             YYYY-MM-DD HH:MM:SS (UTC) or YYYY-MM-DD (midnight UTC)"
        ),
    ))
}

/// 64-bit FNV-1a, written out so that derived event ids need no extra dependency and stay
/// stable across versions and platforms.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let want = "2025-03-01T09:30:00Z".parse::<DateTime<Utc>>().unwrap();
        for raw in [
            "2025-03-01T09:30:00Z",
            "2025-03-01T10:30:00+01:00",
            "2025-03-01 09:30:00",
            "2025-03-01T09:30:00",
        ] {
            assert_eq!(parse_timestamp("t", raw).unwrap(), want, "{raw}");
        }
        assert_eq!(
            parse_timestamp("t", "2025-03-01 09:30:00.250").unwrap(),
            want + chrono::Duration::milliseconds(250)
        );
        assert_eq!(
            parse_timestamp("t", "2025-03-01").unwrap(),
            "2025-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_timestamp("t", "2025-03-01 25:00:00").is_err());
        assert!(parse_timestamp("t", "yesterday").is_err());
    }

    #[test]
    fn numbers_must_be_finite() {
        assert_eq!(parse_number("n", "12.5").unwrap(), 12.5);
        assert!(parse_number("n", "NaN").is_err());
        assert!(parse_number("n", "inf").is_err());
        assert!(parse_non_negative("n", "-1").is_err());
        assert_eq!(
            parse_date("d", "2025-13-01").unwrap_err().problem,
            "\"2025-13-01\" is not a date; expected YYYY-MM-DD"
        );
    }
}
