//! Any table a data team exports (CSV or NDJSON), read as a training set: one column is
//! the 0/1 target, every other column a feature. A column whose every value is a number
//! is numeric; any other column is categorical. Lets a model be tried before its features
//! exist in attune's own feature set.

use std::io::Read;

use crate::features::{FeatureRow, FeatureValue};
use crate::ingest::record::{Problem, parse_with};
use crate::ingest::{FileError, Format, Parsed};

/// A training table: rows with their labels, and how each column was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub parsed: Parsed<(FeatureRow, bool)>,
    pub numeric: Vec<String>,
    pub categorical: Vec<String>,
    /// Text columns left out because every row has its own value (an identifier).
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

pub fn parse_table<R: Read>(
    file: &str,
    reader: R,
    format: Format,
    target: &str,
    ignore: &[String],
) -> Result<Table, FileError> {
    let parsed = parse_with(file, reader, format, &[target], |record| {
        let label = parse_target(target, record.required(target, "the 0/1 target")?)?;
        let mut known: Vec<&str> = vec![target];
        known.extend(ignore.iter().map(String::as_str));
        let row: FeatureRow = record
            .others(&known)
            .into_iter()
            .map(|(k, v)| (k, FeatureValue::Cat(v)))
            .collect();
        Ok((row, label))
    })?;
    // A column is numeric when every value it has parses as a finite number.
    let mut columns: std::collections::BTreeMap<
        String,
        (bool, std::collections::HashSet<String>, usize),
    > = Default::default();
    for (_, (row, _)) in &parsed.rows {
        for (k, v) in row {
            let FeatureValue::Cat(s) = v else { continue };
            let e = columns
                .entry(k.clone())
                .or_insert((true, Default::default(), 0));
            e.0 &= s.parse::<f64>().is_ok_and(f64::is_finite);
            e.1.insert(s.clone());
            e.2 += 1;
        }
    }
    let mut table = Table {
        parsed,
        numeric: vec![],
        categorical: vec![],
        identifiers: vec![],
    };
    for (name, (numeric, distinct, count)) in &columns {
        if *numeric {
            table.numeric.push(name.clone());
        } else if distinct.len() == *count && *count > 20 {
            table.identifiers.push(name.clone());
        } else {
            table.categorical.push(name.clone());
        }
    }
    for (_, (row, _)) in &mut table.parsed.rows {
        for name in &table.identifiers {
            row.remove(name);
        }
        for name in &table.numeric {
            if let Some(FeatureValue::Cat(s)) = row.get(name) {
                let x = s.parse::<f64>().expect("checked numeric above");
                row.insert(name.clone(), FeatureValue::Num(x));
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_identifier_and_bad_target() {
        let mut csv = String::from("id,age,plan,churn\n");
        for i in 0..30 {
            csv.push_str(&format!(
                "u{i},{},{},{}\n",
                20 + i,
                if i % 2 == 0 { "a" } else { "b" },
                i % 3 == 0
            ));
        }
        csv.push_str("u99,40,a,maybe\n");
        let t = parse_table("t.csv", csv.as_bytes(), Format::Csv, "churn", &[]).unwrap();
        assert_eq!(t.numeric, vec!["age"]);
        assert_eq!(t.categorical, vec!["plan"]);
        assert_eq!(t.identifiers, vec!["id"]);
        assert_eq!(t.parsed.rows.len(), 30);
        assert_eq!(t.parsed.rejected.len(), 1);
        assert_eq!(t.parsed.rejected[0].line, 32);
        assert_eq!(t.parsed.rejected[0].column.as_deref(), Some("churn"));
        let (row, label) = &t.parsed.rows[0].1;
        assert_eq!(row["age"], FeatureValue::Num(20.0));
        assert!(*label);
    }

    #[test]
    fn missing_target_column_is_a_file_error() {
        let e =
            parse_table("t.csv", "a,b\n1,2\n".as_bytes(), Format::Csv, "churn", &[]).unwrap_err();
        assert!(e.to_string().contains("churn"), "{e}");
    }
}
