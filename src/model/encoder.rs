//! Turns named feature values into the numeric columns the regression sees.
//!
//! Numbers are standardised with the training mean and population standard deviation
//! (computed over the rows where the value is known; a missing value becomes the mean,
//! i.e. 0 after standardising). Categories are one-hot encoded, one column per level seen
//! in training and not standardised, as scikit-learn's `OneHotEncoder` inside a
//! `ColumnTransformer` does: an unseen or missing level sets no column. Columns are in a
//! fixed order: by feature name, then by level.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::features::{FeatureRow, FeatureValue};

use super::ModelError;

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
        let mut numbers: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut categories: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for (i, row) in rows.iter().enumerate() {
            for (name, value) in row.borrow() {
                names.insert(name);
                match value {
                    FeatureValue::Num(x) if !x.is_finite() => {
                        return Err(ModelError::NonFinite {
                            feature: name.clone(),
                            row: i,
                        });
                    }
                    FeatureValue::Num(x) => numbers.entry(name).or_default().push(*x),
                    FeatureValue::Cat(c) => {
                        categories.entry(name).or_default().insert(c.clone());
                    }
                    FeatureValue::Missing => {}
                }
            }
        }
        let mut columns = Vec::new();
        let mut dropped = Vec::new();
        for name in names {
            if let Some(levels) = categories.get(name) {
                let mut levels = levels.clone();
                // Numbers mixed into a categorical feature become levels of their own.
                for x in numbers.get(name).into_iter().flatten() {
                    levels.insert(format!("{x}"));
                }
                if levels.len() < 2 {
                    dropped.push(name.to_owned());
                    continue;
                }
                for level in levels {
                    columns.push(Column {
                        name: format!("{name}={level}"),
                        source: name.to_owned(),
                        encoding: Encoding::OneHot { level },
                    });
                }
            } else if let Some(xs) = numbers.get(name) {
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
            } else {
                // Missing in every row.
                dropped.push(name.to_owned());
            }
        }
        Ok(Self { columns, dropped })
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
}

pub(crate) fn encode_with(columns: &[Column], row: &FeatureRow) -> Vec<f64> {
    columns
        .iter()
        .map(|c| c.encoding.apply(row.get(&c.source)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeatureValue::{Cat, Missing, Num};

    fn row(items: &[(&str, FeatureValue)]) -> FeatureRow {
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
