use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::model::{EncodedFeature, Encoding, Metrics, SolverReport, TrainingInfo};

fn feature(name: &str, coefficient: f64) -> EncodedFeature {
    EncodedFeature {
        name: name.into(),
        source: name.into(),
        encoding: Encoding::Numeric {
            mean: 0.0,
            std: 1.0,
        },
        coefficient,
    }
}

fn model() -> ModelArtifact {
    ModelArtifact {
        format: crate::model::FORMAT,
        version: "v1 <b>bold</b> & \"quoted\"".into(),
        created_at: DateTime::<Utc>::from_timestamp(1_750_000_000, 0).unwrap(),
        attune_version: "0.1.0".into(),
        training: TrainingInfo {
            source: "customers.csv".into(),
            rows: 80,
            positives: 24,
            fingerprint: "ab".repeat(32),
            holdout: Some(0.25),
            seed: Some(42),
            as_of: NaiveDate::from_ymd_opt(2025, 6, 30),
            feature_spec_hash: None,
            train_rows: Some(60),
            test_rows: Some(20),
            feature_spec: None,
            churn: None,
            left_out: Vec::new(),
            not_features: Vec::new(),
        },
        features: vec![
            feature("tenure_months", -0.9),
            feature("complaints_90d", 0.8),
            feature("<script>alert('x')</script>", 0.1),
            feature("contract=month_to_month", 1.25),
        ],
        dropped_features: vec!["region".into()],
        intercept: -1.5,
        solver: SolverReport {
            library: "linfa-logistic 0.8.1".into(),
            alpha: 1.0,
            max_iterations: 1000,
            iterations_allowed_used: 1000,
            gradient_norm: 3.2e-6,
            converged: true,
        },
        metrics: None,
        train_metrics: Metrics {
            rows: 60,
            positives: 18,
            auc: Some(0.91234),
            pr_auc: Some(0.8),
            log_loss: 0.4,
            brier: 0.12,
        },
        evaluation: None,
        profiles: Vec::new(),
        score_profile: Vec::new(),
        backtest: None,
    }
}

/// Twenty rows, probabilities 0.95 down to 0.00, churners at ranks 1, 2, 3, 5, 8, 13.
fn evaluation() -> Evaluation {
    let churners = [1, 2, 3, 5, 8, 13];
    let labels: Vec<bool> = (1..=20).map(|r| churners.contains(&r)).collect();
    let probs: Vec<f64> = (0..20).map(|i| (19 - i) as f64 / 20.0).collect();
    Evaluation::compute(&labels, &probs, &[5, 10])
}

#[test]
fn escape_replaces_markup_characters() {
    assert_eq!(
        escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
    );
    assert_eq!(escape("plain = 1.5, é"), "plain = 1.5, é");
    assert_eq!(escape("&amp;"), "&amp;amp;");
    assert_eq!(escape(""), "");
}

#[test]
fn fixed_rounds_and_never_shows_negative_zero() {
    assert_eq!(fixed(0.869_047, 4), "0.8690");
    assert_eq!(fixed(3.333_333, 2), "3.33");
    assert_eq!(fixed(-0.000_01, 4), "0.0000");
    assert_eq!(fixed(-0.25, 2), "-0.25");
    assert_eq!(fixed(f64::NAN, 2), "—");
    assert_eq!(num(0.869_047, 4), json!(0.869));
    assert_eq!(num(f64::INFINITY, 4), Value::Null);
}

#[test]
fn html_is_self_contained_with_four_plots_and_no_script() {
    let html = render_html(&model(), &evaluation(), "Churn model <report>");
    assert_eq!(html.matches("<svg").count(), 4, "exactly four plots");
    assert_eq!(html.matches("</svg>").count(), 4);
    assert!(!html.to_lowercase().contains("<script"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("src=") && !html.contains("<link"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    // Data strings are escaped wherever they appear: in the plots by `escape`, in the page
    // by the template (as askama escapes the desk's pages, with numeric references).
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("v1 &#60;b&#62;bold&#60;/b&#62; &#38; &#34;quoted&#34;"));
    assert!(!html.contains("<b>bold"));
    assert!(html.contains("<title>Churn model &#60;report&#62;</title>"));
    // Provenance.
    for s in [
        "2025-06-15T15:06:40Z",
        "customers.csv",
        "80 / 24",
        "0.25 / 42",
        "2025-06-30",
        &"ab".repeat(32),
        "linfa-logistic 0.8.1",
        "region",
    ] {
        assert!(html.contains(s), "{s} missing");
    }
    // Coefficient names in words, largest first.
    let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(pos(">contract: month to month<") < pos(">complaints 90d<"));
    assert!(pos(">complaints 90d<") < pos(">tenure months<"));
    assert!(!html.contains(">tenure_months<"));
}

#[test]
fn html_shows_json_numbers_formatted_the_same() {
    let (m, e) = (model(), evaluation());
    let json = report_json(&m, &e);
    let html = render_html(&m, &e, "report");
    let auc = json["metrics"]["auc"].as_f64().unwrap();
    assert_eq!(format!("{auc:.4}"), "0.8690"); // 73 / 84
    assert!(html.contains(&format!(">{auc:.4}<")), "auc {auc}");
    let lift = json["metrics"]["top_decile_lift"].as_f64().unwrap();
    assert_eq!(format!("{lift:.2}"), "3.33");
    assert!(html.contains(&format!(">{lift:.2}<")));
    let deciles = json["deciles"].as_array().unwrap();
    assert_eq!(deciles.len(), 10);
    for d in deciles {
        let lift = d["lift"].as_f64().unwrap();
        let cell = format!("<td>{lift:.2}</td>");
        assert!(html.contains(&cell), "decile {} lift {cell}", d["decile"]);
        let capture = d["cumulative_positives_share"].as_f64().unwrap();
        assert!(html.contains(&format!("<td>{capture:.3}</td>")));
    }
    for a in json["at_k"].as_array().unwrap() {
        let p = a["precision"].as_f64().unwrap();
        assert!(html.contains(&format!("<td>{p:.3}</td>")));
    }
    let brier = json["metrics"]["brier"].as_f64().unwrap();
    assert!(html.contains(&format!(">{brier:.4}<")));
}

#[test]
fn json_holds_rounded_tables_and_provenance() {
    let json = report_json(&model(), &evaluation());
    assert_eq!(json["model"]["version"], "v1 <b>bold</b> & \"quoted\"");
    assert_eq!(json["model"]["created_at"], "2025-06-15T15:06:40Z");
    assert_eq!(json["model"]["training"]["as_of"], "2025-06-30");
    assert_eq!(json["model"]["training"]["seed"], 42);
    assert_eq!(
        json["model"]["coefficients"][0],
        json!({"name": "contract=month_to_month", "coefficient": 1.25})
    );
    assert_eq!(json["metrics"]["rows"], 20);
    assert_eq!(json["metrics"]["positives"], 6);
    assert_eq!(json["metrics"]["base_rate"], 0.3);
    assert_eq!(json["metrics"]["top_decile_lift"], 3.33);
    assert_eq!(json["deciles"][1]["lift"], 1.67);
    assert_eq!(json["deciles"][0]["cumulative_positives_share"], 0.333);
    assert_eq!(json["calibration"][9]["mean_predicted"], 0.925);
    assert_eq!(
        json["at_k"][0],
        json!({"k": 5, "selected": 5, "positives": 4, "precision": 0.8, "recall": 0.667})
    );
    let roc = json["roc_curve"].as_array().unwrap();
    assert_eq!(roc.first().unwrap(), &json!([0.0, 0.0]));
    assert_eq!(roc.last().unwrap(), &json!([1.0, 1.0]));
    assert_eq!(roc[2], json!([0.0714, 0.5]));
}

#[test]
fn one_class_evaluation_still_renders() {
    let e = Evaluation::compute(&[false; 6], &[0.1, 0.2, 0.2, 0.5, 0.7, 0.9], &[3]);
    let html = render_html(&model(), &e, "one class");
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("Not available"));
    let json = report_json(&model(), &e);
    assert_eq!(json["metrics"]["auc"], Value::Null);
    assert_eq!(json["metrics"]["top_decile_lift"], Value::Null);
    let empty = Evaluation::compute(&[], &[], &[]);
    let html = render_html(&model(), &empty, "empty");
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(!html.contains("NaN") && !html.contains(">inf"));
}

/// Writes `/tmp/attune-report.html` (and `.json`) from a model fitted on the Telco
/// fixture, evaluated on its holdout rows, for a look in a browser:
/// `cargo test --lib report::tests::write_telco_report -- --ignored`.
#[test]
#[ignore = "writes /tmp/attune-report.html for a visual check"]
fn write_telco_report() {
    use crate::features::{Activity, FeatureSpec, compute};
    use crate::ingest::{CustomerPreset, Format, parse_customers};
    use crate::model::{FitOptions, fit, stratified_split};

    let today = NaiveDate::from_ymd_opt(2025, 6, 30).unwrap();
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/telco.csv"
    ))
    .unwrap();
    let parsed = parse_customers("telco", file, Format::Csv, CustomerPreset::Telco, today).unwrap();
    assert!(parsed.rejected.is_empty());
    let (none, spec) = (Activity::default(), FeatureSpec::default_spec());
    let (rows, labels): (Vec<_>, Vec<bool>) = parsed
        .rows
        .iter()
        .map(|(_, c)| (compute(&spec, c, &none, today), c.churned_on.is_some()))
        .unzip();
    let mut opts = FitOptions::new(
        "telco-report",
        DateTime::<Utc>::from_timestamp(1_751_284_800, 0).unwrap(),
        env!("CARGO_PKG_VERSION"),
        "telco.csv",
    );
    opts.holdout = Some(0.25);
    opts.seed = Some(42);
    opts.as_of = Some(today);
    let model = fit(&rows, &labels, &opts).unwrap();
    let (_, test) = stratified_split(&labels, 0.25, 42).unwrap();
    let test_labels: Vec<bool> = test.iter().map(|&i| labels[i]).collect();
    let test_probs: Vec<f64> = test
        .iter()
        .map(|&i| model.predict(&rows[i]).get())
        .collect();
    let eval = Evaluation::compute(&test_labels, &test_probs, &[50, 100, 176, 500]);
    // The fit evaluated the same holdout rows.
    let stored = model.metrics.as_ref().unwrap();
    assert_eq!(stored.rows, eval.metrics.rows);
    assert!((stored.auc.unwrap() - eval.metrics.auc.unwrap()).abs() < 1e-12);
    let html = render_html(&model, &eval, "Telco churn model — holdout evaluation");
    std::fs::write("/tmp/attune-report.html", &html).unwrap();
    let json = serde_json::to_string_pretty(&report_json(&model, &eval)).unwrap();
    std::fs::write("/tmp/attune-report.json", json).unwrap();
}
