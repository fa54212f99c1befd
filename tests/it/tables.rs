//! Tables in, tables out: `train --csv` with the team's own split or groups, identifier
//! columns never features, honest row counts, and `predict` scoring any table.

use std::path::Path;

use attune::ingest::table::TableOptions;
use attune::jobs::train::{TrainOptions, train_from_table};

/// The Telco data with a `split` column: every fourth row, starting with the first, is
/// `test`; a blank TotalCharges reads as 0 (as `bench/split_column_vs_sklearn.py` writes it).
fn telco_with_split(dir: &Path) -> std::path::PathBuf {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/telco.csv"),
    )
    .unwrap();
    let mut lines = src.lines();
    let header = lines.next().unwrap();
    let total = header.split(',').position(|c| c == "TotalCharges").unwrap();
    let mut out = format!("{header},split\n");
    for (i, line) in lines.enumerate() {
        let mut cols: Vec<String> = line.split(',').map(str::to_owned).collect();
        if cols[total].trim().is_empty() {
            cols[total] = "0".into();
        }
        out.push_str(&cols.join(","));
        out.push_str(if i % 4 == 0 { ",test\n" } else { ",train\n" });
    }
    let path = dir.join("telco_split.csv");
    std::fs::write(&path, out).unwrap();
    path
}

fn options(split: Option<&str>, group: Option<&str>) -> TableOptions {
    TableOptions {
        target: "Churn".into(),
        ignore: vec![],
        split_column: split.map(str::to_owned),
        group_column: group.map(str::to_owned),
    }
}

/// scikit-learn 1.9.1 on the same file and split (`bench/split_column_vs_sklearn.py`):
/// one-hot categoricals, standardised numerics, LogisticRegression(C=1), customerID out.
const SKLEARN_SPLIT_AUC: f64 = 0.83894;

#[test]
fn split_column_matches_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let path = telco_with_split(dir.path());
    let m = train_from_table(
        &path,
        &options(Some("split"), None),
        &TrainOptions::default(),
    )
    .unwrap();
    let auc = m.metrics.as_ref().unwrap().auc.unwrap();
    assert!(
        (auc - SKLEARN_SPLIT_AUC).abs() < 0.002,
        "attune {auc} against scikit-learn {SKLEARN_SPLIT_AUC}"
    );
    // Honest counts: 7,043 rows, every fourth tested.
    let t = &m.training;
    assert_eq!(
        (t.rows, t.train_rows, t.test_rows),
        (7043, Some(5282), Some(1761))
    );
    assert_eq!(m.metrics.as_ref().unwrap().rows, 1761);
    // The split column and the identifier are not features.
    assert_eq!(t.not_features, ["Churn", "split", "customerID"]);
    assert!(
        m.features
            .iter()
            .all(|f| f.source != "customerID" && f.source != "split")
    );

    // Scored with `predict`: the identifier comes along, every row scored.
    let out = dir.path().join("scored.csv");
    let r = attune::jobs::predict::predict_table(&path, &m, &out, None).unwrap();
    assert_eq!((r.scored, r.rejected), (7043, 0));
    assert_eq!(r.id_columns, ["customerID"]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "customerID,churn_probability,driver_1,driver_2,driver_3"
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[0], "7590-VHVEG");
    let p: f64 = first[1].parse().unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[test]
fn groups_never_straddle_the_split_and_bad_input_says_where() {
    let dir = tempfile::tempdir().unwrap();
    // Four rows per account: a random split by row would put accounts on both sides.
    let mut csv = String::from("account,x,y,churn\n");
    for i in 0..800 {
        let a = i / 4;
        csv.push_str(&format!(
            "acct{a},{},{},{}\n",
            (i * 37 % 101) as f64 / 10.0,
            if a % 3 == 0 { "red" } else { "blue" },
            u8::from(a % 5 == 0 || i % 7 == 0)
        ));
    }
    let path = dir.path().join("grouped.csv");
    std::fs::write(&path, &csv).unwrap();
    let m = train_from_table(
        &path,
        &TableOptions {
            target: "churn".into(),
            group_column: Some("account".into()),
            ..Default::default()
        },
        &TrainOptions {
            holdout: Some(0.25),
            seed: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let (train, test) = (
        m.training.train_rows.unwrap(),
        m.training.test_rows.unwrap(),
    );
    assert_eq!(train + test, 800);
    assert_eq!(test % 4, 0, "whole accounts are held out: {test}");
    assert!(m.features.iter().all(|f| f.source != "account"));

    // A split column with a value other than train/test stops training, naming the row.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "x,split,churn\n1,train,1\n2,test,0\n3,holdout,1\n").unwrap();
    let e = train_from_table(
        &bad,
        &TableOptions {
            target: "churn".into(),
            split_column: Some("split".into()),
            ..Default::default()
        },
        &TrainOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("bad.csv:4: column split: \"holdout\" is not a side of the split"),
        "{e}"
    );
    // A split column that is not in the file.
    let e = train_from_table(
        &bad,
        &TableOptions {
            target: "churn".into(),
            split_column: Some("fold".into()),
            ..Default::default()
        },
        &TrainOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bad.csv") && e.contains("fold"), "{e}");
}

#[test]
fn predict_refuses_rows_it_cannot_read_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = telco_with_split(dir.path());
    let m = train_from_table(
        &path,
        &options(Some("split"), None),
        &TrainOptions::default(),
    )
    .unwrap();
    let table = dir.path().join("new.csv");
    let src = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = src.lines().take(4).map(str::to_owned).collect();
    // tenure is a number to the model.
    lines[2] = lines[2].replacen(",34,", ",thirty-four,", 1);
    std::fs::write(&table, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.csv");
    let r = attune::jobs::predict::predict_table(&table, &m, &out, Some("customerID")).unwrap();
    assert_eq!((r.scored, r.rejected), (2, 1));
    assert!(
        r.errors[0].contains(":3: column tenure: \"thirty-four\" is not a number"),
        "{:?}",
        r.errors
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
}
