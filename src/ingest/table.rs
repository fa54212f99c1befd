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

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use crate::features::{FeatureRow, FeatureValue};
use crate::ingest::record::{Problem, parse_with};
use crate::ingest::{FileError, Format, Parsed};

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

/// One row of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub features: FeatureRow,
    pub label: bool,
    /// From the split column: `Some(true)` for a test row.
    pub test: Option<bool>,
    /// From the group column.
    pub group: Option<String>,
}

/// A training table: rows with their labels, and how each column was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub parsed: Parsed<TableRow>,
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
        let features: FeatureRow = record
            .others(&known)
            .into_iter()
            .map(|(k, v)| (k, FeatureValue::Cat(v)))
            .collect();
        Ok(TableRow {
            features,
            label,
            test,
            group,
        })
    })?;
    // A column is numeric when every value it has parses as a finite number.
    struct Col {
        numeric: bool,
        integers: bool,
        distinct: HashSet<String>,
        count: usize,
        min: f64,
        max: f64,
    }
    let mut columns: BTreeMap<String, Col> = Default::default();
    for (_, row) in &parsed.rows {
        for (k, v) in &row.features {
            let FeatureValue::Cat(s) = v else { continue };
            let e = columns.entry(k.clone()).or_insert(Col {
                numeric: true,
                integers: true,
                distinct: Default::default(),
                count: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            });
            match s.parse::<f64>() {
                Ok(x) if x.is_finite() => {
                    e.integers &= x.fract() == 0.0;
                    e.min = e.min.min(x);
                    e.max = e.max.max(x);
                }
                _ => {
                    e.numeric = false;
                    e.integers = false;
                }
            }
            e.distinct.insert(s.clone());
            e.count += 1;
        }
    }
    let mut table = Table {
        parsed,
        numeric: vec![],
        categorical: vec![],
        identifiers: vec![],
    };
    for (name, c) in &columns {
        let all_distinct = c.distinct.len() == c.count && c.count > 20;
        let nearly_distinct = c.count > 20 && c.distinct.len() as f64 >= 0.9 * c.count as f64;
        // Whole numbers counting up like row ids: their range is about their number.
        let counts_up = c.integers && (c.max - c.min + 1.0) <= 2.0 * c.count as f64;
        if c.numeric {
            if c.integers && nearly_distinct && (named_like_an_id(name) || counts_up) {
                table.identifiers.push(name.clone());
            } else {
                table.numeric.push(name.clone());
            }
        } else if all_distinct || (nearly_distinct && named_like_an_id(name)) {
            table.identifiers.push(name.clone());
        } else {
            table.categorical.push(name.clone());
        }
    }
    for (_, row) in &mut table.parsed.rows {
        for name in &table.identifiers {
            row.features.remove(name);
        }
        for name in &table.numeric {
            if let Some(FeatureValue::Cat(s)) = row.features.get(name) {
                let x = s.parse::<f64>().expect("checked numeric above");
                row.features.insert(name.clone(), FeatureValue::Num(x));
            }
        }
    }
    Ok(table)
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
        assert_eq!(t.parsed.rows.len(), 30);
        assert_eq!(t.parsed.rejected.len(), 1);
        assert_eq!(t.parsed.rejected[0].line, 32);
        assert_eq!(t.parsed.rejected[0].column.as_deref(), Some("churn"));
        let row = &t.parsed.rows[0].1;
        assert_eq!(row.features["age"], FeatureValue::Num(20.0));
        assert!(!row.features.contains_key("user_id"));
        assert!(row.label);
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
        assert_eq!(t.parsed.rows.len(), 2);
        let (a, b) = (&t.parsed.rows[0].1, &t.parsed.rows[1].1);
        assert_eq!((a.test, b.test), (Some(false), Some(true)));
        assert_eq!(a.group.as_deref(), Some("c1"));
        assert_eq!(a.features.keys().collect::<Vec<_>>(), ["x"]);
        let e = &t.parsed.rejected[0];
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
}
