//! The training set by column: what the encoder, the drift profile, the fingerprint and
//! the evaluation read. A table read from a file arrives in this shape directly
//! (`ingest::table`), without a name-to-value map per row; rows computed from history are
//! turned into it once ([`Frame::from_rows`]). Either way the model is fitted by one code
//! path, so the two cannot disagree.

use std::collections::HashMap;

use crate::features::{FeatureRow, FeatureValue};

/// The code of a missing value in a categorical column.
pub const MISSING: u32 = u32::MAX;

/// One level of a categorical column: text, or a number found in a column that also holds
/// text (a free-form attribute with "12" for some customers and "gold" for others).
#[derive(Debug, Clone)]
pub enum Level {
    Text(String),
    Num(f64),
}

impl Level {
    /// The category the level stands for: a number counts as its decimal form (as
    /// [`super::encoder::Encoding::apply`] reads a number in a one-hot feature).
    pub fn spelled(&self) -> String {
        match self {
            Level::Text(s) => s.clone(),
            Level::Num(x) => format!("{x}"),
        }
    }
}

/// The values of one column, one per row.
#[derive(Debug, Clone)]
pub enum Values {
    /// Finite numbers; NaN marks a missing value.
    Num(Vec<f64>),
    /// A code per row into `levels` ([`MISSING`] when missing); levels in order of first
    /// appearance, each once.
    Cat { codes: Vec<u32>, levels: Vec<Level> },
}

/// Numbers are equal when their bits are, so missing values (NaN) are equal.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

impl PartialEq for Level {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Level::Text(a), Level::Text(b)) => a == b,
            (Level::Num(a), Level::Num(b)) => same(*a, *b),
            _ => false,
        }
    }
}

impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Values::Num(a), Values::Num(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(*x, *y))
            }
            (
                Values::Cat { codes, levels },
                Values::Cat {
                    codes: c2,
                    levels: l2,
                },
            ) => codes == c2 && levels == l2,
            _ => false,
        }
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// Columns of equal length, sorted by name, names unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    rows: usize,
    columns: Vec<Column>,
}

impl Frame {
    /// A frame of `rows` rows from `columns` (sorted here). Panics when a column's length
    /// differs or a name repeats: the callers build columns row by row.
    pub fn new(rows: usize, mut columns: Vec<Column>) -> Self {
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        for c in &columns {
            let len = match &c.values {
                Values::Num(v) => v.len(),
                Values::Cat { codes, .. } => codes.len(),
            };
            assert_eq!(
                len, rows,
                "column {} has {len} values for {rows} rows",
                c.name
            );
        }
        assert!(
            columns.windows(2).all(|w| w[0].name != w[1].name),
            "column names repeat"
        );
        Self { rows, columns }
    }

    /// The frame of named rows: a column per name any row has. A feature with any text
    /// value is categorical (its numbers become levels of their own); otherwise numeric. A
    /// key absent from a row, a `Missing` value and a non-finite number are all missing.
    pub fn from_rows<R: std::borrow::Borrow<FeatureRow>>(rows: &[R]) -> Self {
        let mut b = FrameBuilder::default();
        for r in rows {
            b.push(r.borrow());
        }
        b.finish()
    }

    /// The rows `order` of this frame, in that order. Column by column, each old column
    /// freed as its new one is made: at most one column more than the frame is held, not
    /// two frames (training from history reorders 1.9M observations at 1M customers).
    pub fn gather(mut self, order: &[usize]) -> Self {
        for c in &mut self.columns {
            c.values = match std::mem::replace(&mut c.values, Values::Num(Vec::new())) {
                Values::Num(xs) => Values::Num(order.iter().map(|&i| xs[i]).collect()),
                Values::Cat { codes, levels } => Values::Cat {
                    codes: order.iter().map(|&i| codes[i]).collect(),
                    levels,
                },
            };
        }
        self.rows = order.len();
        self
    }

    /// Drops the columns whose names `keep` refuses.
    pub fn retain_columns(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.columns.retain(|c| keep(&c.name));
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.columns[i])
    }

    /// Row `i` as named values (missing values left out): for tests and for a row's drivers.
    pub fn row(&self, i: usize) -> FeatureRow {
        let mut row = FeatureRow::new();
        for c in &self.columns {
            match &c.values {
                Values::Num(xs) if !xs[i].is_nan() => {
                    row.insert(c.name.clone(), FeatureValue::Num(xs[i]));
                }
                Values::Cat { codes, levels } if codes[i] != MISSING => {
                    let v = match &levels[codes[i] as usize] {
                        Level::Text(s) => FeatureValue::Cat(s.clone()),
                        Level::Num(x) => FeatureValue::Num(*x),
                    };
                    row.insert(c.name.clone(), v);
                }
                _ => {}
            }
        }
        row
    }
}

/// What takes a row's entries, a name and its value at a time, in name order.
pub type Put<'a> = dyn FnMut(&str, &FeatureValue) + 'a;

/// A frame built a row at a time, so rows need not be held ([`Frame::from_rows`] is this
/// over a slice): a column appears with the first row that names it (missing in the rows
/// before), and a numeric column meeting text becomes categorical, its numbers levels of
/// their own in the order they came.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    rows: usize,
    slot: HashMap<String, usize>,
    columns: Vec<(String, Values, LevelIndex)>,
}

impl FrameBuilder {
    pub fn push(&mut self, row: &FeatureRow) {
        self.push_entries(&mut |put| {
            for (k, v) in row {
                put(k, v)
            }
        })
    }

    /// [`FrameBuilder::push`] of a row given as its entries in name order
    /// ([`crate::features::NamedOrder`]), without a map.
    pub fn push_entries(&mut self, entries: &mut dyn FnMut(&mut Put<'_>)) {
        let i = self.rows;
        self.rows += 1;
        for c in &mut self.columns {
            match &mut c.1 {
                Values::Num(xs) => xs.push(f64::NAN),
                Values::Cat { codes, .. } => codes.push(MISSING),
            }
        }
        entries(&mut |k, v| self.put(i, k, v));
    }

    fn put(&mut self, i: usize, k: &str, v: &FeatureValue) {
        let j = match self.slot.get(k) {
            Some(&j) => j,
            None => {
                self.slot.insert(k.to_owned(), self.columns.len());
                self.columns.push((
                    k.to_owned(),
                    Values::Num(vec![f64::NAN; i + 1]),
                    LevelIndex::default(),
                ));
                self.columns.len() - 1
            }
        };
        let (_, values, index) = &mut self.columns[j];
        if let (Values::Num(xs), FeatureValue::Cat(_)) = (&*values, v) {
            // Text in a numeric column: its numbers become levels, first seen first.
            let mut levels = Vec::new();
            let codes = xs
                .iter()
                .map(|&x| {
                    if x.is_nan() {
                        MISSING
                    } else {
                        index.code(Level::Num(x), &mut levels)
                    }
                })
                .collect();
            *values = Values::Cat { codes, levels };
        }
        match values {
            Values::Num(xs) => {
                if let FeatureValue::Num(x) = v
                    && x.is_finite()
                {
                    xs[i] = *x;
                }
            }
            Values::Cat { codes, levels } => {
                if let Some(code) = match v {
                    FeatureValue::Cat(s) => Some(index.text_code(s, levels)),
                    FeatureValue::Num(x) if x.is_finite() => {
                        Some(index.code(Level::Num(*x), levels))
                    }
                    _ => None,
                } {
                    codes[i] = code;
                }
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn finish(self) -> Frame {
        let columns = self
            .columns
            .into_iter()
            .map(|(name, values, _)| Column { name, values })
            .collect();
        Frame::new(self.rows, columns)
    }
}

/// Codes of levels by their value, for building a categorical column.
#[derive(Debug, Default)]
pub struct LevelIndex {
    text: HashMap<String, u32>,
    /// Numbers by their bits (+0 for -0).
    num: HashMap<u64, u32>,
}

impl LevelIndex {
    /// The code of `level`, added to `levels` when new.
    pub fn code(&mut self, level: Level, levels: &mut Vec<Level>) -> u32 {
        let next = levels.len() as u32;
        let code = match &level {
            Level::Text(s) => {
                if let Some(&c) = self.text.get(s.as_str()) {
                    return c;
                }
                self.text.insert(s.clone(), next);
                next
            }
            Level::Num(x) => *self
                .num
                .entry(if *x == 0.0 { 0 } else { x.to_bits() })
                .or_insert(next),
        };
        if code == next {
            levels.push(level);
        }
        code
    }

    /// The code of the text `s`, added when new (no allocation when known).
    pub fn text_code(&mut self, s: &str, levels: &mut Vec<Level>) -> u32 {
        match self.text.get(s) {
            Some(&c) => c,
            None => self.code(Level::Text(s.to_owned()), levels),
        }
    }
}

/// Runs `f` over `0..n` in contiguous chunks on up to `threads` threads and returns the
/// chunks' results in order.
pub fn in_chunks<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return vec![f(0..n)];
    }
    let size = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                let range = (t * size).min(n)..((t + 1) * size).min(n);
                s.spawn(move || f(range))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// The threads the batch work uses: the cores available.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeatureValue::{Cat, Missing, Num};

    use crate::model::encoder::tests::row;

    #[test]
    fn gather_puts_rows_in_the_order_given_and_keeps_their_values() {
        let rows = vec![
            row(&[("a", Num(1.0)), ("b", Cat("x".into()))]),
            row(&[("a", Num(2.0)), ("b", Num(12.0))]),
            row(&[("b", Cat("y".into()))]),
            row(&[("a", Num(-0.0))]),
        ];
        let frame = Frame::from_rows(&rows);
        let order = [3, 0, 2, 0, 1];
        let gathered = frame.clone().gather(&order);
        assert_eq!(gathered.rows(), order.len());
        for (k, &i) in order.iter().enumerate() {
            assert_eq!(gathered.row(k), frame.row(i), "row {k} is row {i}");
        }
        assert_eq!(frame.clone().gather(&[0, 1, 2, 3]), frame);
        assert_eq!(frame.gather(&[]).rows(), 0);
    }

    #[test]
    fn rows_become_columns_and_back() {
        let rows = vec![
            row(&[("a", Num(1.0)), ("b", Cat("x".into())), ("c", Num(2.0))]),
            row(&[("b", Num(12.0)), ("c", Missing)]),
            row(&[("a", Num(f64::NAN)), ("b", Cat("x".into()))]),
            row(&[("b", Num(-0.0)), ("d", Missing)]),
            row(&[("b", Num(0.0))]),
        ];
        let f = Frame::from_rows(&rows);
        let names: Vec<&str> = f.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(
            f.column("b").unwrap().values,
            Values::Cat {
                codes: vec![0, 1, 0, 2, 2],
                levels: vec![Level::Text("x".into()), Level::Num(12.0), Level::Num(-0.0)],
            }
        );
        // Back to rows: missing and non-finite values are left out.
        assert_eq!(f.row(0), rows[0]);
        assert_eq!(f.row(1), row(&[("b", Num(12.0))]));
        assert_eq!(f.row(2), row(&[("b", Cat("x".into()))]));
        assert_eq!(f.row(4), row(&[("b", Num(-0.0))]), "0 and -0 are one level");
    }

    #[test]
    fn chunks_cover_the_range_in_order() {
        for n in [0, 1, 2, 7, 100] {
            for t in 1..4 {
                let parts = in_chunks(n, t, |r| r.collect::<Vec<_>>());
                assert_eq!(parts.concat(), (0..n).collect::<Vec<_>>());
            }
        }
    }
}
