//! Any table a data team exports (CSV or NDJSON), read as a training set: one column is
//! the 0/1 target, every other column a feature. A column whose every value is a number
//! is numeric; any other column is categorical. Lets a model be tried before its features
//! exist in attune's own feature set.
//!
//! Columns that are not features never become one: the target, the team's own split
//! column (`train`/`test`), a group column (rows of one group stay on one side of a random
//! split), columns asked to be ignored, and identifiers: a text column with a different
//! value in every row, or a column of whole numbers nearly all different that is named
//! like an id or counts up like one.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};

use crate::ingest::record::{Problem, parse_with};
use crate::ingest::{FileError, Format, RowError};
use crate::model::frame::{Column, Frame, Level, LevelIndex, MISSING, Values};

/// How to read a table: which column is the target, and which are not features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableOptions {
    pub target: String,
    pub ignore: Vec<String>,
    /// A column of `train`/`test` saying which side each row is on.
    pub split_column: Option<String>,
    /// A column grouping rows (a customer): no group on both sides of a random split.
    pub group_column: Option<String>,
}

/// A training table by column: the features as a [`Frame`], each row's label, side and
/// group, the rows refused, and how each column was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The feature columns: numeric and categorical, never identifiers.
    pub frame: Frame,
    pub labels: Vec<bool>,
    /// From the split column: `true` for a test row.
    pub test: Option<Vec<bool>>,
    /// From the group column.
    pub groups: Option<Vec<String>>,
    /// Rows that could not be read; a table with any is not trained on.
    pub rejected: Vec<RowError>,
    pub numeric: Vec<String>,
    pub categorical: Vec<String>,
    /// Columns left out because they identify a row (an id), not describe it.
    pub identifiers: Vec<String>,
}

fn parse_target(column: &str, raw: &str) -> Result<bool, Problem> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "y" => Ok(true),
        "0" | "0.0" | "false" | "no" | "n" => Ok(false),
        _ => Err(Problem::at(
            column,
            format!("{raw:?} is not a 0/1 target; use 1/0, true/false or yes/no"),
        )),
    }
}

fn parse_side(column: &str, raw: &str) -> Result<bool, Problem> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "train" | "training" => Ok(false),
        "test" | "testing" => Ok(true),
        _ => Err(Problem::at(
            column,
            format!("{raw:?} is not a side of the split; the split column holds train or test"),
        )),
    }
}

/// Whether a column's name says it identifies something (`id`, `user_id`, `customerID`,
/// `crm_number`).
pub fn named_like_an_id(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id"
        || n.ends_with("_id")
        || n.ends_with("-id")
        || name.ends_with("ID")
        || name.ends_with("Id")
        || n.ends_with("_number")
        || n.ends_with("_no")
        || n.ends_with("uuid")
        || n.ends_with("_key")
}

/// Reads the table at `path`: a plain CSV file (no quotes, no lone carriage returns, every line
/// with the header's number of fields, every target given) is read by column on every core
/// ([`read_plain_csv`]); anything else (NDJSON, gzip, quoted fields, a row to refuse) goes
/// through the streamed reader ([`parse_table`]), which says what is wrong and where. Both
/// give the same table.
pub fn read_table(path: &std::path::Path, opts: &TableOptions) -> Result<Table, FileError> {
    let name = path.display().to_string();
    if Format::from_path(path)? == Format::Csv && !super::is_gzip(path) {
        let file = std::fs::File::open(path).map_err(|e| FileError::Unreadable {
            file: name.clone(),
            reason: e.to_string(),
        })?;
        if let Some(table) = read_plain_csv(&name, file, opts)? {
            return Ok(table);
        }
    }
    let (reader, format) = super::open(path)?;
    parse_table(&name, reader, format, opts)
}

/// One row as the streamed reader gives it.
struct RowIn {
    features: Vec<(String, String)>,
    label: bool,
    test: Option<bool>,
    group: Option<String>,
}

/// Reads any table (CSV or NDJSON) a row at a time, refusing rows with a reason and line.
pub fn parse_table<R: Read>(
    file: &str,
    reader: R,
    format: Format,
    opts: &TableOptions,
) -> Result<Table, FileError> {
    let target = opts.target.as_str();
    let mut required = vec![target];
    required.extend(opts.split_column.as_deref());
    required.extend(opts.group_column.as_deref());
    let mut known: Vec<&str> = required.clone();
    known.extend(opts.ignore.iter().map(String::as_str));
    let parsed = parse_with(file, reader, format, &required, |record| {
        let label = parse_target(target, record.required(target, "the 0/1 target")?)?;
        let test = match opts.split_column.as_deref() {
            Some(c) => Some(parse_side(c, record.required(c, "train or test")?)?),
            None => None,
        };
        let group = match opts.group_column.as_deref() {
            Some(c) => Some(record.required(c, "the row's group")?.to_owned()),
            None => None,
        };
        Ok(RowIn {
            features: record.others(&known),
            label,
            test,
            group,
        })
    })?;
    let rows: Vec<RowIn> = parsed.rows.into_iter().map(|(_, r)| r).collect();
    let n = rows.len();
    // A column is numeric when every value it has is a finite number.
    let mut numeric: BTreeMap<&str, bool> = BTreeMap::new();
    for r in &rows {
        for (k, v) in &r.features {
            *numeric.entry(k).or_insert(true) &= number(v).is_some();
        }
    }
    let slot: HashMap<&str, usize> = numeric.keys().enumerate().map(|(j, k)| (*k, j)).collect();
    let mut columns: Vec<Building> = numeric.values().map(|&num| Building::new(num, n)).collect();
    for (i, r) in rows.iter().enumerate() {
        for (k, v) in &r.features {
            columns[slot[k.as_str()]].set(i, v);
        }
    }
    let named = numeric
        .keys()
        .zip(columns)
        .map(|(k, b)| ((*k).to_owned(), b.finish()))
        .collect();
    Ok(assemble(
        n,
        rows.iter().map(|r| r.label).collect(),
        opts.split_column
            .as_ref()
            .map(|_| rows.iter().map(|r| r.test == Some(true)).collect()),
        opts.group_column.as_ref().map(|_| {
            rows.iter()
                .map(|r| r.group.clone().unwrap_or_default())
                .collect()
        }),
        named,
        parsed.rejected,
    ))
}

/// A value as a number, when it is a finite one.
fn number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A column while rows are read into it.
enum Building {
    Num(Vec<f64>),
    Text {
        codes: Vec<u32>,
        levels: Vec<Level>,
        index: LevelIndex,
    },
}

impl Building {
    fn new(numeric: bool, n: usize) -> Self {
        if numeric {
            Building::Num(vec![f64::NAN; n])
        } else {
            Building::Text {
                codes: vec![MISSING; n],
                levels: Vec::new(),
                index: LevelIndex::default(),
            }
        }
    }

    fn set(&mut self, i: usize, v: &str) {
        match self {
            Building::Num(xs) => xs[i] = number(v).expect("a numeric column's values are numbers"),
            Building::Text {
                codes,
                levels,
                index,
            } => codes[i] = index.text_code(v, levels),
        }
    }

    fn finish(self) -> Values {
        match self {
            Building::Num(xs) => Values::Num(xs),
            Building::Text { codes, levels, .. } => Values::Cat { codes, levels },
        }
    }
}

/// The table from its columns: each column read as numeric, categorical or an identifier
/// (the one rule both readers share), identifiers and columns never given left out.
fn assemble(
    n: usize,
    labels: Vec<bool>,
    test: Option<Vec<bool>>,
    groups: Option<Vec<String>>,
    columns: Vec<(String, Values)>,
    rejected: Vec<RowError>,
) -> Table {
    let mut table = Table {
        frame: Frame::default(),
        labels,
        test,
        groups,
        rejected,
        numeric: vec![],
        categorical: vec![],
        identifiers: vec![],
    };
    let mut kept = Vec::new();
    for (name, values) in columns {
        match &values {
            Values::Num(xs) => {
                // One pass over the known values; a copy only to count distinct ones.
                let known = || xs.iter().copied().filter(|x| !x.is_nan());
                let (mut count, mut integers) = (0usize, true);
                let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
                for x in known() {
                    count += 1;
                    integers &= x.fract() == 0.0;
                    min = min.min(x);
                    max = max.max(x);
                }
                if count == 0 {
                    continue;
                }
                // Whole numbers counting up like row ids: their range is about their number.
                let counts_up = integers && (max - min + 1.0) <= 2.0 * count as f64;
                let id_like = integers && count > 20 && (named_like_an_id(&name) || counts_up);
                if id_like && distinct_numbers(known().collect()) as f64 >= 0.9 * count as f64 {
                    table.identifiers.push(name);
                    continue;
                }
                table.numeric.push(name.clone());
            }
            Values::Cat { codes, levels } => {
                let count = codes.iter().filter(|&&c| c != MISSING).count();
                if count == 0 {
                    continue;
                }
                let distinct = levels.len();
                let all_distinct = distinct == count && count > 20;
                let nearly_distinct = count > 20 && distinct as f64 >= 0.9 * count as f64;
                if all_distinct || (nearly_distinct && named_like_an_id(&name)) {
                    table.identifiers.push(name);
                    continue;
                }
                table.categorical.push(name.clone());
            }
        }
        kept.push(Column { name, values });
    }
    table.numeric.sort();
    table.categorical.sort();
    table.identifiers.sort();
    table.frame = Frame::new(n, kept);
    table
}

/// How many different values `xs` holds.
fn distinct_numbers(mut xs: Vec<f64>) -> usize {
    xs.sort_unstable_by(f64::total_cmp);
    xs.dedup();
    xs.len()
}

/// Bytes read from the file per step of [`read_plain_csv`].
const BLOCK_BYTES: usize = 16 << 20;

/// What one column of the file is to the reader.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Target,
    Split,
    Group,
    Ignored,
    Feature(usize),
}

/// How one attempt at a plain file ended.
enum Attempt {
    Done(Table),
    /// Not a plain file: the streamed reader takes it.
    NotPlain,
    /// These feature columns hold text: read again with them as text.
    Text(Vec<usize>),
}

/// Reads a plain CSV file by column, each block of rows split between the cores. `None`
/// when the file is not plain (a quote, a carriage return not before a line end, a blank
/// line, a line with
/// another number of fields, text that is not UTF-8, a header with a duplicate, a required
/// column missing, a row to refuse): the streamed reader then reads it and says what is
/// wrong. A column is read as numbers until a value says otherwise, and then the file is
/// read again with that column as text.
pub fn read_plain_csv<R: Read + Seek>(
    file: &str,
    reader: R,
    opts: &TableOptions,
) -> Result<Option<Table>, FileError> {
    read_plain_csv_in_blocks(file, reader, opts, BLOCK_BYTES)
}

fn read_plain_csv_in_blocks<R: Read + Seek>(
    file: &str,
    mut reader: R,
    opts: &TableOptions,
    block_bytes: usize,
) -> Result<Option<Table>, FileError> {
    let mut text: Vec<bool> = Vec::new();
    let len = reader
        .seek(SeekFrom::End(0))
        .map_err(|e| unreadable(file, e))?;
    loop {
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| unreadable(file, e))?;
        match attempt(file, &mut reader, opts, &text, (block_bytes, len))? {
            Attempt::Done(t) => return Ok(Some(t)),
            Attempt::NotPlain => return Ok(None),
            Attempt::Text(columns) => {
                for j in columns {
                    if text.len() <= j {
                        text.resize(j + 1, false);
                    }
                    text[j] = true;
                }
            }
        }
    }
}

fn unreadable(file: &str, e: impl ToString) -> FileError {
    FileError::Unreadable {
        file: file.to_owned(),
        reason: e.to_string(),
    }
}

/// Reads until `buf` holds `want` bytes or the file ends; false at the end.
fn fill<R: Read>(
    file: &str,
    reader: &mut R,
    buf: &mut Vec<u8>,
    want: usize,
) -> Result<bool, FileError> {
    let need = want.saturating_sub(buf.len());
    let got = reader
        .take(need as u64)
        .read_to_end(buf)
        .map_err(|e| unreadable(file, e))?;
    Ok(got == need)
}

/// One read of the file (`len` bytes) in blocks of `block_bytes`.
fn attempt<R: Read>(
    file: &str,
    reader: &mut R,
    opts: &TableOptions,
    text: &[bool],
    (block_bytes, len): (usize, u64),
) -> Result<Attempt, FileError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut more = fill(file, reader, &mut buf, block_bytes)?;
    let Some(end) = memchr::memchr(b'\n', &buf) else {
        return Ok(Attempt::NotPlain);
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Ok(Attempt::NotPlain);
    };
    if head.contains('"') || !carriage_returns_end_lines(&buf[..end + 1]) {
        return Ok(Attempt::NotPlain);
    }
    let names: Vec<String> = head
        .split(',')
        .enumerate()
        .map(|(i, n)| {
            let n = n.trim_start_matches('\u{feff}').trim();
            if n.is_empty() {
                format!("column_{}", i + 1)
            } else {
                n.to_owned()
            }
        })
        .collect();
    let is = |name: &str, want: &str| name.eq_ignore_ascii_case(want);
    let mut roles = Vec::with_capacity(names.len());
    let mut features: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if names[..i].iter().any(|m| is(m, name)) {
            return Ok(Attempt::NotPlain);
        }
        roles.push(if is(name, &opts.target) {
            Role::Target
        } else if opts.split_column.as_deref().is_some_and(|c| is(name, c)) {
            Role::Split
        } else if opts.group_column.as_deref().is_some_and(|c| is(name, c)) {
            Role::Group
        } else if opts.ignore.iter().any(|c| is(name, c)) {
            Role::Ignored
        } else {
            features.push(name.clone());
            Role::Feature(features.len() - 1)
        });
    }
    let has = |r: Role| roles.contains(&r);
    if !has(Role::Target)
        || (opts.split_column.is_some() && !has(Role::Split))
        || (opts.group_column.is_some() && !has(Role::Group))
    {
        return Ok(Attempt::NotPlain);
    }
    let is_text = |k: usize| text.get(k).copied().unwrap_or(false);
    let mut labels = Vec::new();
    let mut test = opts.split_column.as_ref().map(|_| Vec::new());
    let mut groups = opts.group_column.as_ref().map(|_| Vec::new());
    let mut columns: Vec<Building> = (0..features.len())
        .map(|k| Building::new(!is_text(k), 0))
        .collect();
    let threads = crate::model::frame::threads();
    let mut start = end + 1;
    loop {
        // The block: every whole line read so far (the rest of the file at its end).
        let stop = if more {
            match memchr::memrchr(b'\n', &buf[start..]) {
                Some(p) => start + p + 1,
                None => {
                    let want = buf.len() + block_bytes;
                    more = fill(file, reader, &mut buf, want)?;
                    continue;
                }
            }
        } else {
            buf.len()
        };
        let block = &buf[start..stop];
        if memchr::memchr(b'"', block).is_some() || !carriage_returns_end_lines(block) {
            return Ok(Attempt::NotPlain);
        }
        let Ok(block) = std::str::from_utf8(block) else {
            return Ok(Attempt::NotPlain);
        };
        let pieces = split_lines(block, threads);
        let counts: Vec<usize> = pieces.iter().map(|p| rows_in(p)).collect();
        let (before, added) = (labels.len(), counts.iter().sum::<usize>());
        if before == 0 && more {
            // Room for the whole file's rows at the first block's bytes per row, so the
            // columns are not copied as they grow.
            let per_row = (block.len() / added.max(1)).max(1) as u64;
            let expect = (len / per_row) as usize + added / 50;
            labels.reserve(expect);
            for c in &mut columns {
                c.reserve(expect);
            }
        }
        // Each piece writes its rows into its own part of the columns' new rows.
        labels.resize(before + added, false);
        for c in &mut columns {
            c.grow(before + added);
        }
        let mut label_parts = split_mut(&mut labels[before..], &counts);
        let mut column_parts: Vec<Vec<Slot>> = counts.iter().map(|_| Vec::new()).collect();
        for c in &mut columns {
            for (k, slot) in c.tail_parts(before, &counts).into_iter().enumerate() {
                column_parts[k].push(slot);
            }
        }
        let results: Vec<Option<Piece>> = std::thread::scope(|s| {
            let handles: Vec<_> = pieces
                .iter()
                .zip(label_parts.iter_mut())
                .zip(column_parts.iter_mut())
                .map(|((p, labels), slots)| {
                    let roles = &roles;
                    s.spawn(move || read_piece(p, roles, labels, slots))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a reader thread panicked"))
                .collect()
        });
        drop(column_parts);
        let mut flipped = vec![false; features.len()];
        for piece in &results {
            let Some(piece) = piece else {
                return Ok(Attempt::NotPlain);
            };
            for (f, p) in flipped.iter_mut().zip(&piece.flipped) {
                *f |= p;
            }
        }
        if flipped.contains(&true) {
            let columns = (0..features.len()).filter(|&k| flipped[k]).collect();
            return Ok(Attempt::Text(columns));
        }
        let mut at = before;
        for (piece, rows) in results.into_iter().flatten().zip(&counts) {
            if let Some(t) = &mut test {
                t.extend(piece.test);
            }
            if let Some(g) = &mut groups {
                g.extend(piece.groups);
            }
            for (c, levels) in columns.iter_mut().zip(piece.levels) {
                c.recode(at..at + rows, &levels);
            }
            at += rows;
        }
        if !more {
            break;
        }
        buf.drain(..stop);
        start = 0;
        more = fill(file, reader, &mut buf, block_bytes)?;
    }
    let n = labels.len();
    let named = features
        .into_iter()
        .zip(columns)
        .map(|(k, b)| (k, b.finish()))
        .collect();
    Ok(Attempt::Done(assemble(
        n,
        labels,
        test,
        groups,
        named,
        Vec::new(),
    )))
}

/// Whether every carriage return in `bytes` ends a line (CRLF); a lone one ends a row for
/// the CSV reader but not here.
fn carriage_returns_end_lines(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', bytes)
        .all(|i| bytes.get(i + 1) == Some(&b'\n') || i + 1 == bytes.len())
}

/// `block` cut into up to `parts` pieces at line ends.
fn split_lines(block: &str, parts: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(parts);
    let mut rest = block;
    for k in (1..=parts).rev() {
        if k == 1 || rest.len() < 1 << 12 {
            out.push(rest);
            break;
        }
        let at = rest.len() / k;
        let cut = match memchr::memchr(b'\n', &rest.as_bytes()[at..]) {
            Some(p) => at + p + 1,
            None => rest.len(),
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// The rows of a piece: lines, as [`str::lines`] gives them (a blank line is one).
fn rows_in(piece: &str) -> usize {
    memchr::memchr_iter(b'\n', piece.as_bytes()).count()
        + usize::from(!piece.is_empty() && !piece.ends_with('\n'))
}

/// `all` cut into consecutive parts of `counts` lengths.
fn split_mut<'a, T>(mut all: &'a mut [T], counts: &[usize]) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(counts.len());
    for &n in counts {
        let (head, rest) = std::mem::take(&mut all).split_at_mut(n);
        out.push(head);
        all = rest;
    }
    out
}

/// Where a piece writes one column's values: numbers, or codes of the piece's own levels
/// (made the column's after the block, [`Building::recode`]).
enum Slot<'a> {
    Num(&'a mut [f64]),
    Text(&'a mut [u32]),
}

impl Building {
    fn reserve(&mut self, rows: usize) {
        match self {
            Building::Num(xs) => xs.reserve(rows),
            Building::Text { codes, .. } => codes.reserve(rows),
        }
    }

    /// Adds missing values up to `rows`.
    fn grow(&mut self, rows: usize) {
        match self {
            Building::Num(xs) => xs.resize(rows, f64::NAN),
            Building::Text { codes, .. } => codes.resize(rows, MISSING),
        }
    }

    /// The rows from `from` on, in parts of `counts` lengths.
    fn tail_parts(&mut self, from: usize, counts: &[usize]) -> Vec<Slot<'_>> {
        match self {
            Building::Num(xs) => split_mut(&mut xs[from..], counts)
                .into_iter()
                .map(Slot::Num)
                .collect(),
            Building::Text { codes, .. } => split_mut(&mut codes[from..], counts)
                .into_iter()
                .map(Slot::Text)
                .collect(),
        }
    }

    /// Turns a piece's codes of its own `local` levels in `rows` into this column's codes.
    fn recode(&mut self, rows: std::ops::Range<usize>, local: &[&str]) {
        if let Building::Text {
            codes,
            levels,
            index,
        } = self
        {
            let to: Vec<u32> = local.iter().map(|l| index.text_code(l, levels)).collect();
            for c in &mut codes[rows] {
                if *c != MISSING {
                    *c = to[*c as usize];
                }
            }
        }
    }
}

/// What a piece gives back besides the values it wrote.
struct Piece<'a> {
    test: Vec<bool>,
    groups: Vec<String>,
    /// Per feature column: the piece's levels, in the order of its codes (empty for numbers).
    levels: Vec<Vec<&'a str>>,
    /// Numeric columns that met text, by feature.
    flipped: Vec<bool>,
}

/// The comma-separated fields of a line: [`str::split`] with a plain byte loop, faster
/// for fields of a few bytes.
struct Fields<'a> {
    line: &'a str,
    /// Where the next field starts; `None` after the last.
    at: Option<usize>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.at?;
        let bytes = self.line.as_bytes();
        let mut end = start;
        while end < bytes.len() && bytes[end] != b',' {
            end += 1;
        }
        self.at = (end < bytes.len()).then_some(end + 1);
        // Cut at ASCII commas, so on character boundaries.
        Some(&self.line[start..end])
    }
}

/// `v` trimmed as [`str::trim`] does, without its call when both ends are plain ASCII.
fn trimmed(v: &str) -> &str {
    // Above the space and ASCII: no character `trim` removes starts there.
    let plain = |b: Option<&u8>| b.is_none_or(|&b| b > b' ' && b.is_ascii());
    let b = v.as_bytes();
    if plain(b.first()) && plain(b.last()) {
        v
    } else {
        v.trim()
    }
}

/// Reads one piece into its slots; `None` when a line is not plain or a row would be
/// refused.
fn read_piece<'a>(
    piece: &'a str,
    roles: &[Role],
    labels: &mut [bool],
    slots: &mut [Slot],
) -> Option<Piece<'a>> {
    let mut out = Piece {
        test: Vec::new(),
        groups: Vec::new(),
        levels: slots.iter().map(|_| Vec::new()).collect(),
        flipped: vec![false; slots.len()],
    };
    let mut index: Vec<HashMap<&'a str, u32>> = slots.iter().map(|_| HashMap::new()).collect();
    for (r, line) in piece.lines().enumerate() {
        if line.is_empty() {
            return None;
        }
        let mut fields = Fields { line, at: Some(0) };
        for role in roles {
            let v = trimmed(fields.next()?);
            match *role {
                Role::Feature(_) if v.is_empty() => {}
                Role::Feature(k) => match &mut slots[k] {
                    Slot::Num(xs) => match number(v) {
                        Some(x) => xs[r] = x,
                        None => out.flipped[k] = true,
                    },
                    Slot::Text(codes) => {
                        let levels = &mut out.levels[k];
                        codes[r] = *index[k].entry(v).or_insert_with(|| {
                            levels.push(v);
                            levels.len() as u32 - 1
                        });
                    }
                },
                Role::Target => labels[r] = parse_target("", v).ok()?,
                Role::Split if v.is_empty() => return None,
                Role::Split => out.test.push(parse_side("", v).ok()?),
                Role::Group if v.is_empty() => return None,
                Role::Group => out.groups.push(v.to_owned()),
                Role::Ignored => {}
            }
        }
        if fields.next().is_some() {
            return None;
        }
    }
    Some(out)
}

/// A random split that keeps each group on one side: a group is on the test side when a
/// hash of it with the seed falls below `share`. Returns (train, test) row indices.
pub fn group_split(groups: &[&str], share: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, g) in groups.iter().enumerate() {
        // FNV-1a, then SplitMix64's finaliser: short ids differ in their last bytes only.
        let mut h = crate::ingest::record::fnv1a64(format!("{seed}\u{1f}{g}").as_bytes());
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
        // The top 53 bits as a fraction.
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        if u < share {
            test.push(i);
        } else {
            train.push(i);
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureValue;
    use std::collections::HashSet;

    fn opts(target: &str) -> TableOptions {
        TableOptions {
            target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn numeric_text_identifier_and_bad_target() {
        let mut csv = String::from("id,user_id,age,plan,churn\n");
        for i in 0..30 {
            csv.push_str(&format!(
                "u{i},{},{},{},{}\n",
                1000 + i,
                20 + i % 7,
                if i % 2 == 0 { "a" } else { "b" },
                i % 3 == 0
            ));
        }
        csv.push_str("u99,2000,40,a,maybe\n");
        let t = parse_table("t.csv", csv.as_bytes(), Format::Csv, &opts("churn")).unwrap();
        assert_eq!(t.numeric, vec!["age"]);
        assert_eq!(t.categorical, vec!["plan"]);
        assert_eq!(t.identifiers, vec!["id", "user_id"]);
        assert_eq!(t.frame.rows(), 30);
        assert_eq!(t.rejected.len(), 1);
        assert_eq!(t.rejected[0].line, 32);
        assert_eq!(t.rejected[0].column.as_deref(), Some("churn"));
        let row = t.frame.row(0);
        assert_eq!(row["age"], FeatureValue::Num(20.0));
        assert!(!row.contains_key("user_id"));
        assert!(t.labels[0]);
        // A row to refuse: the plain reader leaves the file to the streamed one.
        let plain = read_plain_csv(
            "t.csv",
            std::io::Cursor::new(csv.as_bytes()),
            &opts("churn"),
        );
        assert_eq!(plain, Ok(None));
    }

    #[test]
    fn a_numeric_feature_with_distinct_values_is_not_an_identifier() {
        let mut csv = String::from("spend,visits,churn\n");
        for i in 0..100 {
            csv.push_str(&format!("{:.2},{},{}\n", i as f64 * 3.17, i * 37, i % 2));
        }
        let t = parse_table("t.csv", csv.as_bytes(), Format::Csv, &opts("churn")).unwrap();
        assert_eq!(t.numeric, vec!["spend", "visits"]);
        assert!(t.identifiers.is_empty());
    }

    #[test]
    fn split_and_group_columns_are_read_not_features() {
        let csv = "customer,x,split,churn\nc1,1.5,train,1\nc1,2.5,TEST,0\nc2,0.5,validate,1\n";
        let o = TableOptions {
            split_column: Some("split".into()),
            group_column: Some("customer".into()),
            ..opts("churn")
        };
        let t = parse_table("t.csv", csv.as_bytes(), Format::Csv, &o).unwrap();
        assert_eq!(t.frame.rows(), 2);
        assert_eq!(t.test, Some(vec![false, true]));
        assert_eq!(t.groups.as_deref().unwrap()[0], "c1");
        assert_eq!(t.frame.row(0).keys().collect::<Vec<_>>(), ["x"]);
        let e = &t.rejected[0];
        assert_eq!((e.line, e.column.as_deref()), (4, Some("split")));
        assert!(
            e.problem
                .contains("\"validate\" is not a side of the split"),
            "{e}"
        );
    }

    #[test]
    fn group_splits_never_divide_a_group() {
        let groups: Vec<String> = (0..2000).map(|i| format!("g{}", i / 4)).collect();
        let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
        let (train, test) = group_split(&refs, 0.25, 7);
        let test_groups: HashSet<&str> = test.iter().map(|&i| refs[i]).collect();
        assert!(train.iter().all(|&i| !test_groups.contains(refs[i])));
        let share = test.len() as f64 / refs.len() as f64;
        assert!((share - 0.25).abs() < 0.05, "{share}");
    }

    #[test]
    fn missing_target_column_is_a_file_error() {
        let e = parse_table(
            "t.csv",
            "a,b\n1,2\n".as_bytes(),
            Format::Csv,
            &opts("churn"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("churn"), "{e}");
    }

    /// A plain CSV of up to eight columns: numbers (some blank), whole numbers counting
    /// up, text, numbers with a little text among them, padded values, and a target.
    fn plain_csv() -> impl proptest::strategy::Strategy<Value = (String, TableOptions)> {
        use proptest::prelude::*;
        let cell = prop_oneof![
            4 => (-300i32..300).prop_map(|x| format!("{}", x as f64 / 8.0)),
            1 => Just(String::new()),
            1 => (0u8..3).prop_map(|c| format!(" t{c} ")),
            1 => Just("1e3".to_owned()),
            1 => Just("NaN".to_owned()),
        ];
        let kind = 0u8..4;
        (
            proptest::collection::vec(kind, 1..8),
            1usize..80,
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(proptest::collection::vec(cell, 8), 80),
            proptest::collection::vec(any::<bool>(), 80),
        )
            .prop_map(|(kinds, rows, crlf, ignore_first, cells, labels)| {
                let mut out = String::new();
                let names: Vec<String> = (0..kinds.len()).map(|j| format!("c{j}")).collect();
                out.push_str(&names.join(","));
                out.push_str(",Churn");
                let end = if crlf { "\r\n" } else { "\n" };
                out.push_str(end);
                for i in 0..rows {
                    for (j, k) in kinds.iter().enumerate() {
                        let v = match k {
                            0 => cells[i][j].clone(),
                            1 => format!("{}", 1000 + i),
                            2 => format!("p{}", (i * 7 + j) % 3),
                            _ if i % 5 == 4 => format!("{}", i % 2),
                            _ => "gold".to_owned(),
                        };
                        out.push_str(&v);
                        out.push(',');
                    }
                    out.push_str(if labels[i] { "1" } else { "0" });
                    out.push_str(end);
                }
                let mut o = opts("churn");
                if ignore_first {
                    o.ignore.push("C0".into());
                }
                (out, o)
            })
    }

    proptest::proptest! {
        /// The plain reader and the streamed reader give the same table.
        #[test]
        fn both_readers_give_the_same_table((csv, o) in plain_csv()) {
            let streamed = parse_table("t.csv", csv.as_bytes(), Format::Csv, &o).unwrap();
            let plain = read_plain_csv("t.csv", std::io::Cursor::new(csv.as_bytes()), &o)
                .unwrap()
                .expect("a plain file");
            // The frame a table arrives in is the frame its rows would make: the history
            // path's way in (`Frame::from_rows`).
            let rows: Vec<_> = (0..plain.frame.rows()).map(|i| plain.frame.row(i)).collect();
            proptest::prop_assert_eq!(&Frame::from_rows(&rows), &plain.frame);
            proptest::prop_assert_eq!(plain, streamed);
        }
    }

    #[test]
    fn the_plain_reader_reads_columns_across_blocks_and_threads() {
        // Text first seen far into the file, in a later block, and levels met in another
        // order by each piece.
        let mut csv = String::from("amount,plan,late,y\n");
        for i in 0..200_000 {
            let late = if i == 199_000 {
                "vip".to_owned()
            } else {
                format!("{}", i % 9)
            };
            csv.push_str(&format!(
                "{}.5,p{},{late},{}\n",
                i % 1000,
                (i * 13) % 17,
                i % 3 == 0
            ));
        }
        let o = opts("y");
        let streamed = parse_table("t.csv", csv.as_bytes(), Format::Csv, &o).unwrap();
        // Blocks of 256 KiB: about fifteen of them, the text in the last.
        let plain =
            read_plain_csv_in_blocks("t.csv", std::io::Cursor::new(csv.as_bytes()), &o, 1 << 18)
                .unwrap()
                .unwrap();
        assert_eq!(plain.categorical, ["late", "plan"]);
        assert_eq!(plain, streamed);
    }

    #[test]
    fn trimmed_is_trim() {
        for v in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\u{b}a\u{b}",
            "\u{a0}a",
            "a\u{3000}",
            "é",
            "\ta\t",
        ] {
            assert_eq!(trimmed(v), v.trim(), "{v:?}");
        }
    }

    #[test]
    fn fields_split_as_str_split_does() {
        for line in ["", ",", "a", "a,", ",b", "a,b,,c", " é ,ü,"] {
            let ours: Vec<&str> = Fields { line, at: Some(0) }.collect();
            assert_eq!(ours, line.split(',').collect::<Vec<_>>(), "{line:?}");
        }
    }

    #[test]
    fn files_that_are_not_plain_go_to_the_streamed_reader() {
        let o = opts("y");
        for csv in [
            "a,y\n\"1\",1\n",
            "a,y\n1,1\n\n2,0\n",
            "a,y\n1,1,3\n",
            "a,y\n1\n",
            "a,y\n1,\n",
            "a,y\n1\r2,1\n",
            "a,A,y\n1,2,1\n",
            "a,b\n1,1\n",
        ] {
            let plain = read_plain_csv("t.csv", std::io::Cursor::new(csv.as_bytes()), &o);
            assert_eq!(plain, Ok(None), "{csv:?}");
        }
    }
}
