//! Turns named feature values into the numeric columns the regression sees.
//!
//! Numbers are standardised with the training mean and population standard deviation
//! (computed over the rows where the value is known; a missing value becomes the mean,
//! i.e. 0 after standardising). Categories are one-hot encoded, one column per level seen
//! in training and not standardised, as scikit-learn's `OneHotEncoder` inside a
//! `ColumnTransformer` does: an unseen or missing level sets no column. Columns are in a
//! fixed order: by feature name, then by level.

use std::borrow::Borrow;
use std::collections::BTreeSet;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::features::{FeatureRow, FeatureValue};

use super::ModelError;
use super::frame::{Column as FrameColumn, Frame, Level, MISSING, Values};

/// How one column is computed from its source feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Encoding {
    /// `(value - mean) / std`; missing or non-numeric values give 0.
    Numeric { mean: f64, std: f64 },
    /// 1 when the source feature's category is `level`, else 0.
    OneHot { level: String },
}

impl Encoding {
    /// This column's value for `value`.
    pub fn apply(&self, value: Option<&FeatureValue>) -> f64 {
        match (self, value) {
            (Encoding::Numeric { mean, std }, Some(FeatureValue::Num(x))) => (x - mean) / std,
            (Encoding::Numeric { .. }, _) => 0.0,
            // Compared without allocating: this runs for every column of every row scored.
            (Encoding::OneHot { level }, Some(FeatureValue::Cat(c))) if c == level => 1.0,
            (Encoding::OneHot { level }, Some(v @ FeatureValue::Num(_)))
                if category_of(v).as_deref() == Some(level) =>
            {
                1.0
            }
            (Encoding::OneHot { .. }, _) => 0.0,
        }
    }
}

/// The category a value stands for in a one-hot feature. A number in a feature that is
/// otherwise categorical (a free-form attribute holding "12" for some customers and
/// "gold" for others) counts as the level spelled by its decimal form.
fn category_of(value: &FeatureValue) -> Option<String> {
    match value {
        FeatureValue::Cat(c) => Some(c.clone()),
        FeatureValue::Num(x) => Some(format!("{x}")),
        FeatureValue::Missing => None,
    }
}

/// One encoded column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// `monthly_charge` for a number, `contract=month_to_month` for a one-hot level.
    pub name: String,
    /// The `FeatureRow` key the column is computed from.
    pub source: String,
    pub encoding: Encoding,
}

/// The columns fitted on a set of training rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    columns: Vec<Column>,
    dropped: Vec<String>,
}

impl Encoder {
    /// Learns the columns from `rows`. A key absent from a row counts as `Missing`.
    /// Numbers that never vary, categories with a single level, and features never known
    /// are dropped (see [`Encoder::dropped`]). Fails on a non-finite number.
    pub fn fit<R: Borrow<FeatureRow>>(rows: &[R]) -> Result<Self, ModelError> {
        check_finite(rows)?;
        let frame = Frame::from_rows(rows);
        let all: Vec<usize> = (0..frame.rows()).collect();
        Ok(Self::fit_frame(&frame, &all))
    }

    /// Learns the columns from the rows `rows` of `frame` (see [`Encoder::fit`]). A
    /// categorical column whose values in these rows are all numbers is a number here.
    pub fn fit_frame(frame: &Frame, rows: &[usize]) -> Self {
        let mut columns = Vec::new();
        let mut dropped = Vec::new();
        for column in frame.columns() {
            let name = column.name.as_str();
            match seen(column, rows) {
                Seen::Levels(levels) if levels.len() >= 2 => {
                    for level in levels {
                        columns.push(Column {
                            name: format!("{name}={level}"),
                            source: name.to_owned(),
                            encoding: Encoding::OneHot { level },
                        });
                    }
                }
                Seen::Numbers(xs) if !xs.is_empty() => {
                    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let n = xs.len() as f64;
                    let mean = xs.iter().sum::<f64>() / n;
                    let std = (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
                    if min == max || !(std.is_finite() && std > 0.0 && mean.is_finite()) {
                        dropped.push(name.to_owned());
                        continue;
                    }
                    columns.push(Column {
                        name: name.to_owned(),
                        source: name.to_owned(),
                        encoding: Encoding::Numeric { mean, std },
                    });
                }
                // A single level, or never known.
                _ => dropped.push(name.to_owned()),
            }
        }
        Self { columns, dropped }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Source features that produced no column, sorted by name.
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }

    /// The encoded values of one row, in column order.
    pub fn encode_row(&self, row: &FeatureRow) -> Vec<f64> {
        encode_with(&self.columns, row)
    }

    /// The design matrix of `rows`: one line per row, one column per encoded column.
    pub fn encode<R: Borrow<FeatureRow>>(&self, rows: &[R]) -> Array2<f64> {
        let mut x = Array2::zeros((rows.len(), self.columns.len()));
        for (i, row) in rows.iter().enumerate() {
            let row = row.borrow();
            for (j, column) in self.columns.iter().enumerate() {
                x[[i, j]] = column.encoding.apply(row.get(&column.source));
            }
        }
        x
    }

    /// The design matrix of the rows `rows` of `frame`, filled on every core; the same
    /// values [`Encoder::encode`] gives for those rows.
    pub fn encode_frame(&self, frame: &Frame, rows: &[usize]) -> Array2<f64> {
        let readers: Vec<Reader> = self
            .columns
            .iter()
            .map(|c| Reader::new(&c.encoding, frame.column(&c.source)))
            .collect();
        let width = self.columns.len();
        let mut x = Array2::zeros((rows.len(), width));
        let threads = super::frame::threads();
        let size = rows.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (part, mut block) in rows
                .chunks(size)
                .zip(x.axis_chunks_iter_mut(ndarray::Axis(0), size))
            {
                let readers = &readers;
                s.spawn(move || {
                    // A tile of rows at a time, column by column: one dispatch per column
                    // and tile, and the tile stays in cache.
                    let mut values = Vec::with_capacity(TILE);
                    for (t, tile) in part.chunks(TILE).enumerate() {
                        for (j, reader) in readers.iter().enumerate() {
                            reader.values(tile, &mut values);
                            for (r, v) in values.iter().enumerate() {
                                block[[t * TILE + r, j]] = *v;
                            }
                        }
                    }
                });
            }
        });
        x
    }
}

/// Rows read together by [`Encoder::encode_frame`] and predictions.
pub const TILE: usize = 512;

/// A frame's non-finite numbers are missing values, but training refuses them: the first
/// one, by row and then name, is the error.
pub fn check_finite<R: Borrow<FeatureRow>>(rows: &[R]) -> Result<(), ModelError> {
    for (i, row) in rows.iter().enumerate() {
        if let Some((name, _)) = row
            .borrow()
            .iter()
            .find(|(_, v)| matches!(v, FeatureValue::Num(x) if !x.is_finite()))
        {
            return Err(ModelError::NonFinite {
                feature: name.clone(),
                row: i,
            });
        }
    }
    Ok(())
}

/// What a column holds in some rows: categories (any text; numbers spelled as levels,
/// sorted, each once) or numbers (known values in row order).
pub enum Seen {
    Levels(BTreeSet<String>),
    Numbers(Vec<f64>),
}

pub fn seen(column: &FrameColumn, rows: &[usize]) -> Seen {
    match &column.values {
        Values::Num(xs) => Seen::Numbers(
            rows.iter()
                .map(|&i| xs[i])
                .filter(|x| !x.is_nan())
                .collect(),
        ),
        Values::Cat { codes, levels } => {
            let mut used = vec![false; levels.len()];
            for &i in rows {
                if codes[i] != MISSING {
                    used[codes[i] as usize] = true;
                }
            }
            let text = levels
                .iter()
                .zip(&used)
                .any(|(l, &u)| u && matches!(l, Level::Text(_)));
            if text {
                Seen::Levels(
                    levels
                        .iter()
                        .zip(&used)
                        .filter(|(_, u)| **u)
                        .map(|(l, _)| l.spelled())
                        .collect(),
                )
            } else {
                Seen::Numbers(
                    rows.iter()
                        .filter(|&&i| codes[i] != MISSING)
                        .map(|&i| match levels[codes[i] as usize] {
                            Level::Num(x) => x,
                            Level::Text(_) => unreachable!("no text in these rows"),
                        })
                        .collect(),
                )
            }
        }
    }
}

/// One encoded column read from a frame's column: [`Encoding::apply`] of each row's value.
pub enum Reader<'a> {
    Zero,
    Standardised {
        xs: &'a [f64],
        mean: f64,
        std: f64,
    },
    /// The encoded value of each level; missing gives 0.
    ByCode {
        codes: &'a [u32],
        table: Vec<f64>,
    },
    /// A one-hot level over a numeric column: a number's decimal form against the level.
    Spelled {
        xs: &'a [f64],
        level: &'a str,
    },
}

impl<'a> Reader<'a> {
    pub fn new(encoding: &'a Encoding, column: Option<&'a FrameColumn>) -> Self {
        let Some(column) = column else {
            return Reader::Zero;
        };
        match (&column.values, encoding) {
            (Values::Num(xs), Encoding::Numeric { mean, std }) => Reader::Standardised {
                xs,
                mean: *mean,
                std: *std,
            },
            (Values::Num(xs), Encoding::OneHot { level }) => Reader::Spelled { xs, level },
            (Values::Cat { codes, levels }, _) => Reader::ByCode {
                codes,
                table: levels
                    .iter()
                    .map(|l| {
                        encoding.apply(Some(&match l {
                            Level::Text(s) => FeatureValue::Cat(s.clone()),
                            Level::Num(x) => FeatureValue::Num(*x),
                        }))
                    })
                    .collect(),
            },
        }
    }

    /// The values of `rows` into `out` (cleared first).
    pub fn values(&self, rows: &[usize], out: &mut Vec<f64>) {
        out.clear();
        match self {
            Reader::Zero => out.resize(rows.len(), 0.0),
            Reader::Standardised { xs, mean, std } => out.extend(rows.iter().map(|&i| {
                let x = xs[i];
                if x.is_nan() { 0.0 } else { (x - mean) / std }
            })),
            Reader::ByCode { codes, table } => out.extend(rows.iter().map(|&i| match codes[i] {
                MISSING => 0.0,
                c => table[c as usize],
            })),
            Reader::Spelled { .. } => out.extend(rows.iter().map(|&i| self.value(i))),
        }
    }

    pub fn value(&self, i: usize) -> f64 {
        match self {
            Reader::Zero => 0.0,
            Reader::Standardised { xs, mean, std } => {
                let x = xs[i];
                if x.is_nan() { 0.0 } else { (x - mean) / std }
            }
            Reader::ByCode { codes, table } => match codes[i] {
                MISSING => 0.0,
                c => table[c as usize],
            },
            Reader::Spelled { xs, level } => {
                let x = xs[i];
                if !x.is_nan() && format!("{x}") == *level {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

pub fn encode_with(columns: &[Column], row: &FeatureRow) -> Vec<f64> {
    columns
        .iter()
        .map(|c| c.encoding.apply(row.get(&c.source)))
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use FeatureValue::{Cat, Missing, Num};

    /// A row from names and values (the model's tests share it).
    pub fn row(items: &[(&str, FeatureValue)]) -> FeatureRow {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn standardises_numbers_with_population_std() {
        let rows = vec![
            row(&[("charge", Num(10.0))]),
            row(&[("charge", Num(20.0))]),
            row(&[("charge", Num(30.0))]),
            row(&[("charge", Missing)]),
        ];
        let enc = Encoder::fit(&rows).unwrap();
        let std = (200.0f64 / 3.0).sqrt();
        assert_eq!(
            enc.columns(),
            &[Column {
                name: "charge".into(),
                source: "charge".into(),
                encoding: Encoding::Numeric { mean: 20.0, std },
            }]
        );
        let x = enc.encode(&rows);
        assert!((x[[0, 0]] + 10.0 / std).abs() < 1e-12);
        assert_eq!(x[[1, 0]], 0.0);
        assert!((x[[2, 0]] - 10.0 / std).abs() < 1e-12);
        assert_eq!(x[[3, 0]], 0.0, "missing becomes the mean");
        assert_eq!(
            enc.encode_row(&FeatureRow::new()),
            vec![0.0],
            "absent key is missing"
        );
    }

    #[test]
    fn one_hot_columns_sorted_and_unstandardised() {
        let rows = vec![
            row(&[("contract", Cat("two_year".into())), ("age", Num(30.0))]),
            row(&[
                ("contract", Cat("month_to_month".into())),
                ("age", Num(40.0)),
            ]),
            row(&[("contract", Cat("one_year".into())), ("age", Num(50.0))]),
            row(&[("contract", Missing), ("age", Num(60.0))]),
        ];
        let enc = Encoder::fit(&rows).unwrap();
        let names: Vec<_> = enc.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "age",
                "contract=month_to_month",
                "contract=one_year",
                "contract=two_year"
            ]
        );
        let x = enc.encode(&rows);
        assert_eq!(x.row(0).to_vec()[1..], [0.0, 0.0, 1.0]);
        assert_eq!(x.row(1).to_vec()[1..], [1.0, 0.0, 0.0]);
        assert_eq!(
            x.row(3).to_vec()[1..],
            [0.0, 0.0, 0.0],
            "missing sets no level"
        );
        let unseen = row(&[("contract", Cat("lifetime".into())), ("age", Num(45.0))]);
        assert_eq!(
            enc.encode_row(&unseen)[1..],
            [0.0, 0.0, 0.0],
            "unseen level sets none"
        );
    }

    #[test]
    fn drops_constant_and_single_level_features() {
        let rows = vec![
            row(&[
                ("c", Num(0.1)),
                ("p", Cat("fibre".into())),
                ("x", Num(1.0)),
                ("m", Missing),
            ]),
            row(&[
                ("c", Num(0.1)),
                ("p", Cat("fibre".into())),
                ("x", Num(2.0)),
                ("m", Missing),
            ]),
        ];
        let enc = Encoder::fit(&rows).unwrap();
        assert_eq!(enc.dropped(), ["c", "m", "p"]);
        assert_eq!(enc.columns().len(), 1);
        assert_eq!(enc.columns()[0].name, "x");
    }

    #[test]
    fn mixed_feature_is_categorical() {
        let rows = vec![
            row(&[("attr.tier", Num(12.0))]),
            row(&[("attr.tier", Cat("gold".into()))]),
        ];
        let enc = Encoder::fit(&rows).unwrap();
        let names: Vec<_> = enc.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["attr.tier=12", "attr.tier=gold"]);
        assert_eq!(enc.encode_row(&rows[0]), vec![1.0, 0.0]);
    }

    #[test]
    fn non_finite_names_the_feature() {
        let rows = vec![row(&[("ok", Num(1.0))]), row(&[("bad", Num(f64::NAN))])];
        match Encoder::fit(&rows) {
            Err(ModelError::NonFinite { feature, row }) => {
                assert_eq!((feature.as_str(), row), ("bad", 1))
            }
            other => panic!("{other:?}"),
        }
    }
}
