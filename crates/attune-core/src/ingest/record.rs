//! Framing: turns CSV or NDJSON bytes into [`Record`]s (one per data row) and the shared
//! value parsers (dates, numbers, timestamps) the customer and event mappers use.

use std::io::Read;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::{FileError, Format, Parsed, RowError};

/// One cell as read from the file, before interpretation.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
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
pub struct Record {
    pub fields: Vec<(std::sync::Arc<str>, Cell)>,
    pub nested_attributes: Vec<(String, String)>,
}

/// What is wrong with one row: the column (if one is to blame) and the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub column: Option<String>,
    pub problem: String,
    /// The row's text, for a row that could not be read as fields (kept in quarantine).
    pub raw: Option<String>,
}

impl Problem {
    pub fn at(column: &str, problem: impl Into<String>) -> Self {
        Self {
            column: Some(column.to_owned()),
            problem: problem.into(),
            raw: None,
        }
    }

    pub fn row(problem: impl Into<String>) -> Self {
        Self {
            column: None,
            problem: problem.into(),
            raw: None,
        }
    }

    /// The same problem, remembering the row's text.
    pub fn with_raw(mut self, raw: impl Into<String>) -> Self {
        self.raw = Some(raw.into());
        self
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
                out.push((k.to_string(), v));
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
/// number of CSV fields, a line that is not a JSON object or not UTF-8) and rows `map`
/// refuses become [`RowError`]s; nothing is dropped. For CSV, `required` columns must be in
/// the header.
pub fn parse_with<R: Read, T>(
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
    let mut stream = RecordStream::open(file, std::io::BufReader::new(reader), format, required)?;
    loop {
        let batch = stream.next_batch(usize::MAX)?;
        if batch.is_empty() {
            break;
        }
        for (line, framed) in batch {
            match framed.and_then(|r| map(&r)) {
                Ok(t) => parsed.rows.push((line, t)),
                Err(p) => parsed.rejected.push(RowError {
                    file: file.to_owned(),
                    line,
                    column: p.column,
                    problem: p.problem,
                }),
            }
        }
    }
    Ok(parsed)
}

fn unreadable(file: &str, reason: impl ToString) -> FileError {
    FileError::Unreadable {
        file: file.to_owned(),
        reason: reason.to_string(),
    }
}

/// One framed row: its 1-based line number and the record, or why it could not be framed.
pub type Framed = (u64, Result<Record, Problem>);

/// Reads a CSV or NDJSON file a batch of rows at a time, so a file of any size is read in
/// bounded memory. CSV is cut into segments at line endings outside quotes, and each
/// segment is parsed whole, which keeps line numbers exact (the csv crate's own line
/// counter lags behind after CRLF endings and blank lines).
pub struct RecordStream<R> {
    file: String,
    format: Format,
    reader: R,
    headers: Vec<std::sync::Arc<str>>,
    /// Bytes read but not yet framed; always starts at a row boundary.
    carry: Vec<u8>,
    /// The line number of `carry`'s first byte.
    next_line: u64,
    eof: bool,
    pending: std::collections::VecDeque<Framed>,
    segment_bytes: usize,
}

/// Bytes read from a CSV file before a segment is framed.
const SEGMENT_BYTES: usize = 4 << 20;

impl<R: std::io::BufRead> RecordStream<R> {
    /// Opens a stream; for CSV, reads the header and checks the `required` columns.
    pub fn open(
        file: &str,
        reader: R,
        format: Format,
        required: &[&str],
    ) -> Result<Self, FileError> {
        let mut s = Self {
            file: file.to_owned(),
            format,
            reader,
            headers: Vec::new(),
            carry: Vec::new(),
            next_line: 1,
            eof: false,
            pending: Default::default(),
            segment_bytes: SEGMENT_BYTES,
        };
        if format == Format::Csv {
            s.read_header(required)?;
        }
        Ok(s)
    }

    #[cfg(test)]
    fn with_segment_bytes(mut self, n: usize) -> Self {
        self.segment_bytes = n;
        self
    }

    /// Up to `max` more rows; empty at the end of the file.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Framed>, FileError> {
        let mut out = Vec::new();
        while out.len() < max {
            if let Some(f) = self.pending.pop_front() {
                out.push(f);
                continue;
            }
            if self.eof && self.carry.is_empty() {
                break;
            }
            match self.format {
                Format::Csv => self.frame_csv_segment()?,
                Format::Ndjson => self.frame_ndjson_line()?,
            }
        }
        Ok(out)
    }

    /// Reads until `carry` holds at least `want` bytes or the file ends.
    fn fill(&mut self, want: usize) -> Result<(), FileError> {
        while !self.eof && self.carry.len() < want {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| unreadable(&self.file, e))?;
            if buf.is_empty() {
                self.eof = true;
                break;
            }
            let n = buf.len();
            self.carry.extend_from_slice(buf);
            self.reader.consume(n);
        }
        Ok(())
    }

    fn read_header(&mut self, required: &[&str]) -> Result<(), FileError> {
        // Blank lines before the header are skipped, as the csv crate does.
        loop {
            self.fill(1)?;
            match self.carry.first() {
                Some(b'\n') => {
                    self.carry.remove(0);
                    self.next_line += 1;
                }
                Some(b'\r') => {
                    self.fill(2)?;
                    let n = if self.carry.get(1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    self.carry.drain(..n);
                    self.next_line += 1;
                }
                _ => break,
            }
        }
        // The header ends at the first line ending outside quotes.
        let end = loop {
            if let Some(end) = first_row_end(&self.carry) {
                break end;
            }
            if self.eof {
                break self.carry.len();
            }
            let want = self.carry.len() + 64 * 1024;
            self.fill(want)?;
        };
        let head: Vec<u8> = self.carry.drain(..end).collect();
        let line_endings = count_line_endings(&head);
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(head.as_slice());
        let mut record = csv::ByteRecord::new();
        let file = self.file.clone();
        let got = rdr
            .read_byte_record(&mut record)
            .map_err(|e| unreadable(&file, format!("not valid CSV: {e}")))?;
        if got {
            let line = self.next_line;
            for (i, raw) in record.iter().enumerate() {
                let name = std::str::from_utf8(raw).map_err(|_| FileError::NotUtf8 {
                    file: file.clone(),
                    line,
                })?;
                let name = name.trim_start_matches('\u{feff}').trim();
                let name = if name.is_empty() {
                    format!("column_{}", i + 1)
                } else {
                    name.to_owned()
                };
                if self.headers.iter().any(|h| h.eq_ignore_ascii_case(&name)) {
                    return Err(FileError::DuplicateColumn { file, column: name });
                }
                self.headers.push(name.into());
            }
        }
        self.next_line += line_endings;
        let missing: Vec<String> = required
            .iter()
            .filter(|r| !self.headers.iter().any(|h| h.eq_ignore_ascii_case(r)))
            .map(|r| (*r).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(FileError::MissingColumns {
                file,
                missing,
                found: self.headers.iter().map(|h| h.to_string()).collect(),
            });
        }
        Ok(())
    }

    fn frame_csv_segment(&mut self) -> Result<(), FileError> {
        self.fill(self.segment_bytes)?;
        let split = if self.eof {
            self.carry.len()
        } else {
            match last_row_end(&self.carry) {
                Some(end) => end,
                None => {
                    // One row longer than a segment (or an unbalanced quote): read on,
                    // up to a bound past which a quote that never closed is the cause.
                    if self.carry.len() >= MAX_ROW_BYTES
                        && let Some((open, field)) = quote_fault(&self.carry)
                    {
                        let segment = std::mem::take(&mut self.carry);
                        let line = self.next_line;
                        self.next_line += count_line_endings(&segment);
                        self.reject_unclosed_quote(segment, line, open, field, line - 1);
                        return Ok(());
                    }
                    let want = self.carry.len() * 2;
                    self.fill(want)?;
                    return Ok(());
                }
            }
        };
        let segment: Vec<u8> = self.carry.drain(..split).collect();
        let base = self.next_line - 1;
        let mut lines = LineIndex::new(&segment);
        self.next_line += lines.line_endings();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(segment.as_slice());
        let mut record = csv::ByteRecord::new();
        loop {
            match rdr.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    return Err(match e.kind() {
                        csv::ErrorKind::Io(_) => unreadable(&self.file, e),
                        _ => unreadable(&self.file, format!("not valid CSV: {e}")),
                    });
                }
            }
            let line = base + lines.line_of(&record);
            // A quote that never closes would swallow the lines after it into one value:
            // its line is rejected and reading starts over on the next line.
            let start = record.position().map_or(0, |p| p.byte()) as usize;
            let end = rdr.position().byte() as usize;
            if memchr::memchr(b'"', &segment[start..end]).is_some()
                && let Some((open, field)) = quote_fault(&segment[start..end])
            {
                drop(rdr);
                drop(lines);
                self.reject_unclosed_quote(segment, line, start + open, field, base);
                return Ok(());
            }
            let Some(texts) = FieldTexts::of(&record) else {
                self.pending.push_back((
                    line,
                    Err(Problem::row(
                        "not valid UTF-8; save the file as UTF-8".to_owned(),
                    )),
                ));
                continue;
            };
            // A line holding only whitespace is a blank line, not a row.
            if record.len() == 1 && texts.get(0).trim().is_empty() {
                continue;
            }
            if record.len() != self.headers.len() {
                let raw = (0..record.len())
                    .map(|i| texts.get(i))
                    .collect::<Vec<_>>()
                    .join(",");
                self.pending.push_back((
                    line,
                    Err(Problem::row(format!(
                        "row has {} fields but the header has {}; expected one value per column \
                         (quote values that contain commas)",
                        record.len(),
                        self.headers.len()
                    ))
                    .with_raw(raw)),
                ));
                continue;
            }
            let fields = self
                .headers
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, h)| (h, Cell::Text(texts.get(i).to_owned())))
                .collect::<Vec<_>>();
            self.pending.push_back((
                line,
                Ok(Record {
                    fields,
                    nested_attributes: Vec::new(),
                }),
            ));
        }
        Ok(())
    }

    /// Rejects the row starting on `line` whose value `field` opens a quote at `open`
    /// (an offset in `segment`) that never closes properly, and puts what follows the
    /// physical line of that quote back to be read again as rows. `base` is the line
    /// before `segment`'s first; `next_line` counts all of `segment` on entry.
    fn reject_unclosed_quote(
        &mut self,
        segment: Vec<u8>,
        line: u64,
        open: usize,
        field: usize,
        base: u64,
    ) {
        let lines = LineIndex::new(&segment);
        let quote_line = base + lines.line_at(open);
        let resume = line_ends(&segment[open..])
            .next()
            .map_or(segment.len(), |e| open + e);
        let row_start = lines.starts[(line - base - 1) as usize].min(open);
        let raw = String::from_utf8_lossy(&segment[row_start..resume])
            .trim_end()
            .to_owned();
        let column = self.headers.get(field).map_or_else(
            || format!("value {}", field + 1),
            |h| format!("column `{h}`"),
        );
        self.pending.push_back((
            line,
            Err(Problem::row(format!(
                "a quote opened on line {quote_line} ({column}) is never closed (or text follows \
                 its closing quote); the row is rejected and reading goes on at line {}; \
                 write a quote inside a quoted value twice (\"\")",
                quote_line + 1
            ))
            .with_raw(raw)),
        ));
        let rest = &segment[resume..];
        self.carry.splice(0..0, rest.iter().copied());
        self.next_line = base + lines.line_at(resume);
    }

    fn frame_ndjson_line(&mut self) -> Result<(), FileError> {
        let mut raw = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| unreadable(&self.file, e))?;
        if n == 0 {
            self.eof = true;
            return Ok(());
        }
        let line = self.next_line;
        self.next_line += 1;
        let framed = match std::str::from_utf8(&raw) {
            Err(_) => Err(Problem::row(
                "not valid UTF-8; save the file as UTF-8".to_owned(),
            )),
            Ok(text) => {
                let text = if line == 1 {
                    text.trim_start_matches('\u{feff}')
                } else {
                    text
                };
                if text.trim().is_empty() {
                    return Ok(());
                }
                ndjson_record(text).map_err(|p| p.with_raw(text.trim_end()))
            }
        };
        self.pending.push_back((line, framed));
        Ok(())
    }
}

/// A CSV record's fields as text, checked as UTF-8 once for the whole record.
struct FieldTexts<'a> {
    record: &'a csv::ByteRecord,
    all: &'a str,
}

impl<'a> FieldTexts<'a> {
    /// `None` unless every field is UTF-8: the record's bytes are, and each field starts
    /// and ends on a character boundary (a field that holds half a character does not).
    fn of(record: &'a csv::ByteRecord) -> Option<Self> {
        let all = std::str::from_utf8(record.as_slice()).ok()?;
        let whole = (0..record.len()).all(|i| {
            record
                .range(i)
                .is_some_and(|r| all.is_char_boundary(r.start) && all.is_char_boundary(r.end))
        });
        whole.then_some(Self { record, all })
    }

    /// Field `i` (empty past the last field).
    fn get(&self, i: usize) -> &'a str {
        self.record
            .range(i)
            .and_then(|r| self.all.get(r))
            .unwrap_or_default()
    }
}

/// A row this long with no line ending outside quotes is a quote left open (or a value
/// longer than any field holds): the framing stops reading on for it.
const MAX_ROW_BYTES: usize = 16 << 20;

/// The first quoted value of the row at the start of `raw` that is not closed properly,
/// as (offset of its opening quote, index of the value): no closing quote before the end,
/// or something other than a comma or a line ending after it. `None` for a row whose
/// quoting is sound. A quote inside an unquoted value is text, as in the csv crate.
fn quote_fault(raw: &[u8]) -> Option<(usize, usize)> {
    let n = raw.len();
    // The csv crate may report a record from before the previous row's line ending.
    let mut i = raw.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let mut field = 0;
    loop {
        if raw.get(i) == Some(&b'"') {
            let open = i;
            i += 1;
            loop {
                let Some(k) = memchr::memchr(b'"', &raw[i..]) else {
                    return Some((open, field));
                };
                i += k + 1;
                if raw.get(i) == Some(&b'"') {
                    i += 1; // an escaped quote
                    continue;
                }
                break;
            }
            match raw.get(i) {
                None | Some(b'\r' | b'\n') => return None,
                Some(b',') => i += 1,
                Some(_) => return Some((open, field)),
            }
        } else {
            match memchr::memchr3(b',', b'\n', b'\r', &raw[i..]) {
                Some(k) if raw[i + k] == b',' => i += k + 1,
                _ => return None,
            }
        }
        field += 1;
        if i > n {
            return None;
        }
    }
}

/// Where the first row ends (just past its line ending) when the line ending is outside
/// quotes; `None` if no complete row is in `bytes` yet.
fn first_row_end(bytes: &[u8]) -> Option<usize> {
    let mut quoted = false;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => return Some(i + 1),
            b'\r' if !quoted => {
                return match bytes.get(i + 1) {
                    Some(b'\n') => Some(i + 2),
                    Some(_) => Some(i + 1),
                    None => None,
                };
            }
            _ => {}
        }
    }
    None
}

/// Just past the last line ending outside quotes, if any. A lone `\r` at the very end
/// is not taken: the next read may bring its `\n`.
fn last_row_end(bytes: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut last = None;
    // Only quotes and line endings matter; memchr finds them without a byte-by-byte loop.
    for i in memchr::memchr3_iter(b'"', b'\n', b'\r', bytes) {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => last = Some(i + 1),
            b'\r' if !quoted && i + 1 < bytes.len() && bytes[i + 1] != b'\n' => last = Some(i + 1),
            _ => {}
        }
    }
    last
}

/// Where each line ending in `bytes` ends (just past it): `\n`, `\r\n` or a lone `\r`,
/// as in the csv crate.
fn line_ends(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr2_iter(b'\n', b'\r', bytes)
        .filter(|&i| bytes[i] == b'\n' || bytes.get(i + 1) != Some(&b'\n'))
        .map(|i| i + 1)
}

/// Line endings in `bytes`: `\n`, `\r\n` or a lone `\r`, as in the csv crate.
fn count_line_endings(bytes: &[u8]) -> u64 {
    line_ends(bytes).count() as u64
}

/// Maps byte offsets to 1-based line numbers. A line ends at `\n`, `\r\n` or a lone `\r`,
/// as in the csv crate.
struct LineIndex<'a> {
    bytes: &'a [u8],
    starts: Vec<usize>,
    /// How many line starts the last record asked about came at or before it.
    passed: usize,
}

impl<'a> LineIndex<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut starts = vec![0];
        starts.extend(line_ends(bytes));
        Self {
            bytes,
            starts,
            passed: 0,
        }
    }

    /// The 1-based line of the byte at `offset`.
    fn line_at(&self, offset: usize) -> u64 {
        self.starts.partition_point(|s| *s <= offset) as u64
    }

    /// How many line endings `bytes` holds.
    fn line_endings(&self) -> u64 {
        (self.starts.len() - 1) as u64
    }

    /// The line a record starts on. The csv crate reports the offset where it began
    /// reading, which may be before the line ending of the previous record or before
    /// skipped blank lines, so those are stepped over first.
    fn line_of(&mut self, record: &csv::ByteRecord) -> u64 {
        let mut offset = record.position().map_or(0, |p| p.byte()) as usize;
        while matches!(self.bytes.get(offset), Some(b'\r' | b'\n')) {
            offset += 1;
        }
        // Records come in file order, so the count only grows: step on from the last one.
        if self.passed > 0 && self.starts[self.passed - 1] > offset {
            self.passed = self.starts.partition_point(|s| *s <= offset);
        }
        while self.starts.get(self.passed).is_some_and(|s| *s <= offset) {
            self.passed += 1;
        }
        self.passed as u64
    }
}

impl Record {
    /// A record of named text values (a row from a database); `None` is null.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (std::sync::Arc<str>, Option<String>)>,
    ) -> Self {
        Record {
            fields: pairs
                .into_iter()
                .map(|(k, v)| (k, v.map_or(Cell::Null, Cell::Text)))
                .collect(),
            nested_attributes: Vec::new(),
        }
    }

    /// A record from a JSON object (an HTTP item, a quarantined raw row).
    pub fn from_json(value: &serde_json::Value) -> Self {
        json_record(value.clone(), "item").unwrap_or_default()
    }
}

fn ndjson_record(text: &str) -> Result<Record, Problem> {
    let value: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        Problem::row(format!(
            "not valid JSON ({e}); expected one JSON object per line"
        ))
    })?;
    json_record(value, "line")
}

/// A JSON object as a record; anything else is a problem. `noun` names what held it
/// (a line, an item).
pub fn json_record(value: serde_json::Value, noun: &str) -> Result<Record, Problem> {
    let serde_json::Value::Object(map) = value else {
        return Err(Problem::row(format!(
            "{noun} is a JSON {}, not an object; expected one JSON object per {noun}",
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
        record.fields.push((k.into(), cell));
    }
    Ok(record)
}

pub fn json_kind(v: &serde_json::Value) -> &'static str {
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

pub fn parse_date(column: &str, raw: &str) -> Result<NaiveDate, Problem> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        Problem::at(
            column,
            format!("{raw:?} is not a date; expected YYYY-MM-DD"),
        )
    })
}

pub fn parse_optional_date(record: &Record, column: &str) -> Result<Option<NaiveDate>, Problem> {
    record
        .text(column)?
        .map(|raw| parse_date(column, raw))
        .transpose()
}

pub fn parse_number(column: &str, raw: &str) -> Result<f64, Problem> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Problem::at(
            column,
            format!("{raw:?} is not a number; expected a decimal number such as 12.50"),
        )),
    }
}

pub fn parse_non_negative(column: &str, raw: &str) -> Result<f64, Problem> {
    let v = parse_number(column, raw)?;
    if v < 0.0 {
        return Err(Problem::at(
            column,
            format!("{raw} is negative; expected a number >= 0"),
        ));
    }
    Ok(v)
}

pub fn parse_timestamp(column: &str, raw: &str) -> Result<DateTime<Utc>, Problem> {
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
    // Unix seconds, as databases and logs often export them.
    if !raw.is_empty()
        && raw.len() <= 12
        && raw.bytes().all(|b| b.is_ascii_digit())
        && let Some(t) = raw
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
    {
        return Ok(t);
    }
    Err(Problem::at(
        column,
        format!(
            "{raw:?} is not a timestamp; expected RFC 3339 (2025-03-01T09:30:00Z), \
             YYYY-MM-DD HH:MM:SS (UTC), YYYY-MM-DD (midnight UTC) or unix seconds"
        ),
    ))
}

/// 64-bit FNV-1a, written out so that derived event ids need no extra dependency and stay
/// stable across versions and platforms.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
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

    proptest::proptest! {
        /// The memchr scans find what a byte-by-byte walk finds, on any mix of quotes and
        /// line endings.
        #[test]
        fn scans_agree_with_a_byte_by_byte_walk(bytes in proptest::collection::vec(
            proptest::sample::select(vec![b'"', b'\n', b'\r', b'a', b',']), 0..200)
        ) {
            let mut quoted = false;
            let mut last = None;
            let mut ends = Vec::new();
            for (i, b) in bytes.iter().enumerate() {
                let next = bytes.get(i + 1);
                if *b == b'\n' || (*b == b'\r' && next != Some(&b'\n')) {
                    ends.push(i + 1);
                }
                match b {
                    b'"' => quoted = !quoted,
                    b'\n' if !quoted => last = Some(i + 1),
                    b'\r' if !quoted && next.is_some_and(|n| *n != b'\n') => last = Some(i + 1),
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(last_row_end(&bytes), last);
            proptest::prop_assert_eq!(line_ends(&bytes).collect::<Vec<_>>(), ends.clone());
            proptest::prop_assert_eq!(count_line_endings(&bytes), ends.len() as u64);
            proptest::prop_assert_eq!(LineIndex::new(&bytes).line_endings(), ends.len() as u64);
        }
    }

    /// A character split across two fields makes valid UTF-8 of the record's bytes joined,
    /// but neither field is text: the row is refused, and the rows around it are kept.
    #[test]
    fn a_character_split_between_fields_is_not_utf8() {
        let csv = b"a,b\nx\xC3,\xA9y\n\xC3\xA9,z\n";
        let mut s = RecordStream::open("f", &csv[..], Format::Csv, &["a"]).unwrap();
        let batch = s.next_batch(10).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].0, 2);
        let err = batch[0].1.as_ref().unwrap_err();
        assert!(err.problem.contains("not valid UTF-8"), "{err:?}");
        let r = batch[1].1.as_ref().unwrap();
        assert_eq!((batch[1].0, r.text("a").unwrap()), (3, Some("é")));
    }

    #[test]
    fn small_segments_cut_only_between_rows() {
        let mut csv = String::from("a,b\n");
        let (mut want, mut line) = (Vec::new(), 2);
        for i in 0..200u64 {
            want.push((line, i.to_string()));
            if i % 3 == 0 {
                // A quoted value over two lines.
                csv.push_str(&format!("{i},\"x\ny\"\r\n"));
                line += 2;
            } else {
                // A lone carriage return ends a line too.
                csv.push_str(&format!("{i},z\r"));
                line += 1;
            }
        }
        for seg in [1, 5, 64] {
            let mut s = RecordStream::open("f", csv.as_bytes(), Format::Csv, &["a"])
                .unwrap()
                .with_segment_bytes(seg);
            let mut got = Vec::new();
            loop {
                let batch = s.next_batch(7).unwrap();
                if batch.is_empty() {
                    break;
                }
                for (line, r) in batch {
                    let r = r.unwrap();
                    got.push((line, r.text("a").unwrap().unwrap().to_owned()));
                }
            }
            assert_eq!(got, want, "segments of {seg} bytes");
        }
    }

    /// Every row of `csv` as (line, Ok(value of `a`) or Err(problem)), read in segments.
    fn rows(csv: &str, seg: usize) -> Vec<(u64, Result<String, String>)> {
        let mut s = RecordStream::open("f", csv.as_bytes(), Format::Csv, &["a"])
            .unwrap()
            .with_segment_bytes(seg);
        let mut got = Vec::new();
        loop {
            let batch = s.next_batch(3).unwrap();
            if batch.is_empty() {
                return got;
            }
            for (line, r) in batch {
                got.push((
                    line,
                    r.map(|r| r.text("a").unwrap().unwrap_or_default().to_owned())
                        .map_err(|p| format!("{} | {}", p.problem, p.raw.unwrap_or_default())),
                ));
            }
        }
    }

    /// A quote that never closes is a rejection naming the line it opened on, and the
    /// lines after it are read as rows, not swallowed into its value (before: "2
    /// imported, 0 rejected" for four rows). Wherever the segments are cut.
    #[test]
    fn an_unclosed_quote_rejects_its_line_and_loses_no_other() {
        let at_end = "a,text\n1,ok\n2,\"never closed\n3,fine\n4,also fine\n";
        let later_quote = "a,text\n1,\"bad\n2,plain\n3,\"quoted, with comma\"\n4,x\n";
        let legit = "a,text\n1,\"two\nlines\"\n2,\"say \"\"hi\"\"\"\n";
        for seg in [1, 7, 64, 4096] {
            let got = rows(at_end, seg);
            let ok: Vec<_> = got
                .iter()
                .filter_map(|(l, r)| r.as_ref().ok().map(|v| (*l, v.as_str())))
                .collect();
            assert_eq!(
                ok,
                [(2, "1"), (4, "3"), (5, "4")],
                "segments of {seg}: {got:?}"
            );
            let bad: Vec<_> = got
                .iter()
                .filter_map(|(l, r)| r.as_ref().err().map(|e| (*l, e.as_str())))
                .collect();
            assert_eq!(bad.len(), 1, "{got:?}");
            assert_eq!(bad[0].0, 3);
            assert!(
                bad[0]
                    .1
                    .contains("a quote opened on line 3 (column `text`) is never closed"),
                "{}",
                bad[0].1
            );
            assert!(
                bad[0].1.ends_with("| 2,\"never closed"),
                "the row's text is kept: {}",
                bad[0].1
            );

            let got = rows(later_quote, seg);
            let ok: Vec<_> = got
                .iter()
                .filter_map(|(l, r)| r.as_ref().ok().map(|v| (*l, v.as_str())))
                .collect();
            assert_eq!(
                ok,
                [(3, "2"), (4, "3"), (5, "4")],
                "segments of {seg}: {got:?}"
            );
            assert_eq!(
                got.iter().filter(|(l, r)| *l == 2 && r.is_err()).count(),
                1,
                "{got:?}"
            );

            // Sound quoting over two lines, and escaped quotes, are values as before.
            let got = rows(legit, seg);
            assert_eq!(
                got,
                [(2, Ok("1".into())), (4, Ok("2".into()))],
                "segments of {seg}"
            );
        }
    }

    #[test]
    fn quote_faults_are_found_only_where_quoting_is_unsound() {
        assert_eq!(quote_fault(b"a,b,c\n"), None);
        assert_eq!(quote_fault(b"a,\"b,c\",d\n"), None);
        assert_eq!(quote_fault(b"\na,\"x\"\"y\"\r\n"), None);
        assert_eq!(
            quote_fault(b"a,he said \"hi\",c"),
            None,
            "a quote inside an unquoted value is text"
        );
        assert_eq!(quote_fault(b"a,\"open\nmore"), Some((2, 1)));
        assert_eq!(quote_fault(b"a,b,\"x\"y,c"), Some((4, 2)));
    }

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
