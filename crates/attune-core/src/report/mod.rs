//! The model report: one self-contained HTML page (inline CSS and SVG, no JavaScript,
//! nothing fetched) and the same numbers as JSON, for a data team reviewing a model.
//!
//! Pure: callers pass a [`ModelArtifact`] and its [`Evaluation`] and write the result
//! wherever they like. Numbers shown in both outputs are rounded once, by [`fixed`], so
//! the page and the JSON always agree digit for digit.

pub mod svg;

use chrono::SecondsFormat;
use serde_json::{Value, json};

use crate::model::ModelArtifact;
use crate::model::evaluation::Evaluation;

/// Decimals of ROC AUC, PR AUC, log loss and Brier score.
pub const METRIC_DP: usize = 4;
/// Decimals of lift.
pub const LIFT_DP: usize = 2;
/// Decimals of rates and probabilities (churn rate, precision, recall, capture).
pub const RATE_DP: usize = 3;
/// Decimals of coefficients and the intercept.
pub const COEF_DP: usize = 3;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `x` with `dp` decimals (never `-0.000`); an em dash when `x` is not finite.
pub fn fixed(x: f64, dp: usize) -> String {
    if !x.is_finite() {
        return "—".to_owned();
    }
    let s = format!("{x:.dp$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_owned(),
        _ => s,
    }
}

fn fixed_opt(x: Option<f64>, dp: usize) -> String {
    x.map_or_else(|| "—".to_owned(), |x| fixed(x, dp))
}

/// The JSON number written as [`fixed`] shows it; null when not finite or absent.
fn num(x: f64, dp: usize) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    fixed(x, dp)
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn num_opt(x: Option<f64>, dp: usize) -> Value {
    x.map_or(Value::Null, |x| num(x, dp))
}

fn base_rate(eval: &Evaluation) -> Option<f64> {
    let m = &eval.metrics;
    (m.rows > 0).then(|| m.positives as f64 / m.rows as f64)
}

/// Coefficients by name, largest first (ties by name).
/// A feature's name as the page shows it: `contract=month_to_month` -> `contract: month to
/// month`, `attr.SeniorCitizen` -> `SeniorCitizen` (the JSON keeps the names).
fn feature_words(name: &str) -> String {
    let name = name.strip_prefix("attr.").unwrap_or(name);
    match name.split_once('=') {
        Some((feature, level)) => {
            format!("{}: {}", feature.replace('_', " "), level.replace('_', " "))
        }
        None => name.replace('_', " "),
    }
}

fn sorted_coefficients(model: &ModelArtifact) -> Vec<(String, f64)> {
    let mut c: Vec<(String, f64)> = model
        .features
        .iter()
        .map(|f| (f.name.clone(), f.coefficient))
        .collect();
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    c
}

fn created_at(model: &ModelArtifact) -> String {
    model.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The report's numbers as JSON, rounded exactly as [`render_html`] shows them.
pub fn report_json(model: &ModelArtifact, eval: &Evaluation) -> Value {
    let t = &model.training;
    let m = &eval.metrics;
    let tm = &model.train_metrics;
    json!({
        "model": {
            "version": model.version,
            "created_at": created_at(model),
            "attune_version": model.attune_version,
            "training": {
                "source": t.source,
                "rows": t.rows,
                "train_rows": t.train_rows,
                "test_rows": t.test_rows,
                "churn": t.churn,
                "left_out": t.left_out,
                "not_features": t.not_features,
                "positives": t.positives,
                "holdout": t.holdout,
                "seed": t.seed,
                "fingerprint": t.fingerprint,
                "as_of": t.as_of.map(|d| d.to_string()),
            },
            "solver": {
                "library": model.solver.library,
                "alpha": model.solver.alpha,
                "max_iterations": model.solver.max_iterations,
                "iterations_allowed_used": model.solver.iterations_allowed_used,
                "gradient_norm": model.solver.gradient_norm,
                "converged": model.solver.converged,
            },
            "intercept": num(model.intercept, COEF_DP),
            "coefficients": sorted_coefficients(model)
                .iter()
                .map(|(name, c)| json!({"name": name, "coefficient": num(*c, COEF_DP)}))
                .collect::<Vec<_>>(),
            "dropped_features": model.dropped_features,
            "backtest": model.backtest.as_ref().map(backtest_json),
            "train_metrics": {
                "rows": tm.rows,
                "positives": tm.positives,
                "auc": num_opt(tm.auc, METRIC_DP),
                "pr_auc": num_opt(tm.pr_auc, METRIC_DP),
                "log_loss": num(tm.log_loss, METRIC_DP),
                "brier": num(tm.brier, METRIC_DP),
            },
        },
        "metrics": {
            "rows": m.rows,
            "positives": m.positives,
            "base_rate": num_opt(base_rate(eval), RATE_DP),
            "auc": num_opt(m.auc, METRIC_DP),
            "pr_auc": num_opt(m.pr_auc, METRIC_DP),
            "log_loss": num(m.log_loss, METRIC_DP),
            "brier": num(m.brier, METRIC_DP),
            "top_decile_lift": num_opt(eval.top_decile_lift, LIFT_DP),
        },
        "calibration": eval.calibration.iter().map(|b| json!({
            "lower": num(b.lower, 1),
            "upper": num(b.upper, 1),
            "count": b.count,
            "positives": b.positives,
            "mean_predicted": num_opt(b.mean_predicted, RATE_DP),
            "observed_rate": num_opt(b.observed_rate, RATE_DP),
        })).collect::<Vec<_>>(),
        "deciles": eval.deciles.iter().map(|d| json!({
            "decile": d.decile,
            "count": d.count,
            "positives": d.positives,
            "min_probability": num_opt(d.min_probability, RATE_DP),
            "max_probability": num_opt(d.max_probability, RATE_DP),
            "churn_rate": num_opt(d.churn_rate, RATE_DP),
            "lift": num_opt(d.lift, LIFT_DP),
            "cumulative_positives_share": num_opt(d.cumulative_positives_share, RATE_DP),
        })).collect::<Vec<_>>(),
        "at_k": eval.at_k.iter().map(|a| json!({
            "k": a.k,
            "selected": a.selected,
            "positives": a.positives,
            "precision": num_opt(a.precision, RATE_DP),
            "recall": num_opt(a.recall, RATE_DP),
        })).collect::<Vec<_>>(),
        "roc_curve": eval.roc_curve.iter()
            .map(|&(x, y)| json!([num(x, METRIC_DP), num(y, METRIC_DP)]))
            .collect::<Vec<_>>(),
    })
}

const CSS: &str = "\
:root{--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--soft:#f9fafb;--accent:#2563eb;--bad:#dc2626}
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:var(--ink);font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
header h1{margin:0 0 4px;font-size:26px;letter-spacing:-.01em}
.sub{color:var(--muted);margin:0 0 18px}
.sub code{color:var(--ink)}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 4px}
h2.next{margin-top:26px}
.note{color:var(--muted);font-size:13px;margin:0 0 12px}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px 24px;margin:0}
dl.facts div{min-width:0}
dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
dd{margin:0;font-weight:600;overflow-wrap:anywhere}
.full{grid-column:1/-1}
.mono dd{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-weight:500;font-size:12.5px}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:0 0 16px}
.card{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:700;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:18px}
.grid section{margin:0}
.grid table{font-size:13px}
.grid th,.grid td{padding:4px 7px}
figure{margin:0}
svg{display:block;max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom;font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em;background:var(--soft)}
th:first-child,td:first-child{text-align:left}
tbody tr:nth-child(even){background:#fcfcfd}
.ok{color:#15803d}.warn{color:var(--bad)}
footer{color:var(--muted);font-size:12px;text-align:center}
@media (max-width:900px){.grid{grid-template-columns:1fr}.cards{grid-template-columns:repeat(2,1fr)}}
";

/// The report as one self-contained HTML page.
fn interval(i: Option<crate::model::backtest::Interval>, dp: usize) -> Value {
    i.map_or(Value::Null, |i| json!([num(i.low, dp), num(i.high, dp)]))
}

fn interval_text(i: Option<crate::model::backtest::Interval>, dp: usize) -> String {
    i.map_or(String::new(), |i| {
        format!(" [{}, {}]", fixed(i.low, dp), fixed(i.high, dp))
    })
}

fn backtest_json(b: &crate::model::backtest::Backtest) -> Value {
    json!({
        "design": b.design,
        "warning": b.warning,
        "min_test_churners": b.min_test_churners,
        "resamples": b.resamples,
        "pooled": {
            "test_rows": b.pooled.test_rows,
            "test_customers": b.pooled.test_customers,
            "test_churners": b.pooled.test_churners,
            "auc": num_opt(b.pooled.auc, METRIC_DP),
            "auc_interval": interval(b.pooled.auc_interval, METRIC_DP),
            "top_decile_lift": num_opt(b.pooled.top_decile_lift, LIFT_DP),
            "lift_interval": interval(b.pooled.lift_interval, LIFT_DP),
        },
        "origins": b.origins.iter().map(|o| json!({
            "day": o.day.to_string(),
            "trained_on_days": o.trained_on.len(),
            "train_rows": o.train_rows,
            "test_rows": o.test_rows,
            "test_churners": o.test_churners,
            "auc": num_opt(o.auc, METRIC_DP),
            "auc_interval": interval(o.auc_interval, METRIC_DP),
            "top_decile_lift": num_opt(o.top_decile_lift, LIFT_DP),
        })).collect::<Vec<_>>(),
    })
}

/// One labelled fact; `class` is empty, `full` (a whole row) or `full mono`; `value_class`
/// colours the value (`ok`, `warn`) or is empty.
struct Fact {
    label: String,
    value: String,
    class: &'static str,
    value_class: &'static str,
}

fn fact(label: impl Into<String>, value: impl Into<String>, class: &'static str) -> Fact {
    Fact {
        label: label.into(),
        value: value.into(),
        class,
        value_class: "",
    }
}

struct Table {
    head: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

/// A label and its figure.
type Card = (&'static str, String);

struct BacktestView {
    design: String,
    resamples: usize,
    /// Escaped already: the setting it names is set as code.
    warning: Option<String>,
    cards: Vec<Card>,
    origins: Table,
}

/// The page `templates/report.html` renders: every figure already in words and digits.
#[derive(askama::Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    title: &'a str,
    css: &'static str,
    version: &'a str,
    created: String,
    attune_version: &'a str,
    facts: Vec<Fact>,
    backtest: Option<BacktestView>,
    rows: usize,
    positives: usize,
    base_rate: String,
    metric_cards: Vec<Card>,
    metrics: Table,
    roc: String,
    calibration: String,
    lift: String,
    deciles: Table,
    at_k: Option<Table>,
    bins: Table,
    intercept: String,
    coefficients: String,
    generated_by: &'static str,
}

/// The backtest section: rolling origins with intervals, and the warning in words.
fn backtest_view(b: &crate::model::backtest::Backtest) -> BacktestView {
    BacktestView {
        design: b.design.clone(),
        resamples: b.resamples,
        // The setting to change is set as code: a name to type, not a label.
        warning: b
            .warning
            .as_ref()
            .map(|w| escape(w).replace("min_test_churners", "<code>min_test_churners</code>")),
        cards: vec![
            (
                "Pooled ROC AUC",
                format!(
                    "{}{}",
                    fixed_opt(b.pooled.auc, METRIC_DP),
                    interval_text(b.pooled.auc_interval, METRIC_DP)
                ),
            ),
            (
                "Pooled top-decile lift",
                format!(
                    "{}{}",
                    fixed_opt(b.pooled.top_decile_lift, LIFT_DP),
                    interval_text(b.pooled.lift_interval, LIFT_DP)
                ),
            ),
            (
                "Test rows / customers / churners",
                format!(
                    "{} / {} / {}",
                    b.pooled.test_rows, b.pooled.test_customers, b.pooled.test_churners
                ),
            ),
        ],
        origins: Table {
            head: &[
                "Tested day",
                "Trained on",
                "Test rows",
                "Churners",
                "ROC AUC [95%]",
                "Top-decile lift",
            ],
            rows: b
                .origins
                .iter()
                .map(|o| {
                    vec![
                        o.day.to_string(),
                        format!("{} rows of {} days", o.train_rows, o.trained_on.len()),
                        o.test_rows.to_string(),
                        o.test_churners.to_string(),
                        format!(
                            "{}{}",
                            fixed_opt(o.auc, METRIC_DP),
                            interval_text(o.auc_interval, METRIC_DP)
                        ),
                        fixed_opt(o.top_decile_lift, LIFT_DP),
                    ]
                })
                .collect(),
        },
    }
}

/// Where the model came from and how the solver did.
fn model_facts(model: &ModelArtifact) -> Vec<Fact> {
    let t = &model.training;
    let s = &model.solver;
    let mut facts = vec![
        fact("Version", &model.version, ""),
        fact("Created at", created_at(model), ""),
        fact("attune version", &model.attune_version, ""),
        fact("Training source", &t.source, ""),
        fact(
            "Rows fitted on / tested on",
            format!(
                "{} / {}",
                t.train_rows.unwrap_or(t.rows),
                t.test_rows.map_or("none".into(), |n| n.to_string())
            ),
            "",
        ),
        fact(
            "Rows supplied / churners",
            format!(
                "{} / {} ({})",
                t.rows,
                t.positives,
                if t.rows > 0 {
                    fixed(t.positives as f64 / t.rows as f64, RATE_DP)
                } else {
                    "—".into()
                }
            ),
            "",
        ),
    ];
    if let Some(c) = &t.churn {
        facts.push(fact("Churn means", c, ""));
    }
    facts.extend([
        fact(
            "Holdout / seed",
            format!(
                "{} / {}",
                t.holdout.map_or("none".into(), |x| x.to_string()),
                t.seed.map_or("none".into(), |x| x.to_string())
            ),
            "",
        ),
        fact(
            "Features as of",
            t.as_of.map_or("—".into(), |d| d.to_string()),
            "",
        ),
        fact("Solver", &s.library, ""),
        fact(
            "Alpha / max iterations",
            format!("{} / {}", s.alpha, s.max_iterations),
            "",
        ),
        Fact {
            value_class: if s.converged { "ok" } else { "warn" },
            ..fact(
                "Converged",
                format!(
                    "{} (gradient {:.2e}, {} iterations)",
                    if s.converged { "yes" } else { "no" },
                    s.gradient_norm,
                    s.iterations_allowed_used
                ),
                "",
            )
        },
        fact(
            "Features used / dropped",
            format!(
                "{} / {}",
                model.features.len(),
                model.dropped_features.len()
            ),
            "",
        ),
        fact("Intercept", fixed(model.intercept, COEF_DP), ""),
        fact(
            "Training fingerprint (SHA-256)",
            &t.fingerprint,
            "full mono",
        ),
    ]);
    if !model.dropped_features.is_empty() {
        facts.push(fact(
            "Dropped features (no information in training)",
            model.dropped_features.join(", "),
            "full",
        ));
    }
    if !t.not_features.is_empty() {
        facts.push(fact(
            "Columns that are not features",
            t.not_features.join(", "),
            "full",
        ));
    }
    for l in &t.left_out {
        facts.push(fact(
            format!("Attribute {} left out", l.attribute),
            &l.why,
            "full",
        ));
    }
    facts
}

/// The report as one self-contained HTML page.
pub fn render_html(model: &ModelArtifact, eval: &Evaluation, title: &str) -> String {
    use askama::Template as _;
    let m = &eval.metrics;
    let tm = &model.train_metrics;
    let page = ReportPage {
        title,
        css: CSS,
        version: &model.version,
        created: created_at(model),
        attune_version: &model.attune_version,
        facts: model_facts(model),
        backtest: model.backtest.as_ref().map(backtest_view),
        rows: m.rows,
        positives: m.positives,
        base_rate: fixed_opt(base_rate(eval), RATE_DP),
        metric_cards: vec![
            ("ROC AUC", fixed_opt(m.auc, METRIC_DP)),
            ("PR AUC", fixed_opt(m.pr_auc, METRIC_DP)),
            ("Log loss", fixed(m.log_loss, METRIC_DP)),
            ("Brier score", fixed(m.brier, METRIC_DP)),
            ("Top-decile lift", fixed_opt(eval.top_decile_lift, LIFT_DP)),
        ],
        metrics: Table {
            head: &["Metric", "Evaluation", "Training"],
            rows: vec![
                vec![
                    "ROC AUC (higher is better)".to_owned(),
                    fixed_opt(m.auc, METRIC_DP),
                    fixed_opt(tm.auc, METRIC_DP),
                ],
                vec![
                    "PR AUC / average precision (higher is better)".to_owned(),
                    fixed_opt(m.pr_auc, METRIC_DP),
                    fixed_opt(tm.pr_auc, METRIC_DP),
                ],
                vec![
                    "Log loss (lower is better)".to_owned(),
                    fixed(m.log_loss, METRIC_DP),
                    fixed(tm.log_loss, METRIC_DP),
                ],
                vec![
                    "Brier score (lower is better)".to_owned(),
                    fixed(m.brier, METRIC_DP),
                    fixed(tm.brier, METRIC_DP),
                ],
                vec![
                    "Top-decile lift".to_owned(),
                    fixed_opt(eval.top_decile_lift, LIFT_DP),
                    "—".to_owned(),
                ],
                vec![
                    "Rows / churners".to_owned(),
                    format!("{} / {}", m.rows, m.positives),
                    format!("{} / {}", tm.rows, tm.positives),
                ],
            ],
        },
        roc: svg::roc_chart(&eval.roc_curve, m.auc),
        calibration: svg::calibration_chart(&eval.calibration),
        lift: svg::lift_chart(&eval.deciles),
        deciles: Table {
            head: &[
                "Decile",
                "Rows",
                "Churners",
                "Probabilities",
                "Churn rate",
                "Lift",
                "Capture",
            ],
            rows: eval
                .deciles
                .iter()
                .map(|d| {
                    vec![
                        d.decile.to_string(),
                        d.count.to_string(),
                        d.positives.to_string(),
                        match (d.min_probability, d.max_probability) {
                            (Some(lo), Some(hi)) => {
                                format!("{} – {}", fixed(lo, RATE_DP), fixed(hi, RATE_DP))
                            }
                            _ => "—".to_owned(),
                        },
                        fixed_opt(d.churn_rate, RATE_DP),
                        fixed_opt(d.lift, LIFT_DP),
                        fixed_opt(d.cumulative_positives_share, RATE_DP),
                    ]
                })
                .collect(),
        },
        at_k: (!eval.at_k.is_empty()).then(|| Table {
            head: &["k", "Selected", "Churners", "Precision", "Recall"],
            rows: eval
                .at_k
                .iter()
                .map(|a| {
                    vec![
                        a.k.to_string(),
                        a.selected.to_string(),
                        a.positives.to_string(),
                        fixed_opt(a.precision, RATE_DP),
                        fixed_opt(a.recall, RATE_DP),
                    ]
                })
                .collect(),
        }),
        bins: Table {
            head: &[
                "Predicted",
                "Rows",
                "Churners",
                "Mean predicted",
                "Observed rate",
            ],
            rows: eval
                .calibration
                .iter()
                .map(|b| {
                    vec![
                        format!("{} – {}", fixed(b.lower, 1), fixed(b.upper, 1)),
                        b.count.to_string(),
                        b.positives.to_string(),
                        fixed_opt(b.mean_predicted, RATE_DP),
                        fixed_opt(b.observed_rate, RATE_DP),
                    ]
                })
                .collect(),
        },
        intercept: fixed(model.intercept, COEF_DP),
        coefficients: svg::coefficient_chart(
            &sorted_coefficients(model)
                .into_iter()
                .map(|(name, c)| (feature_words(&name), c))
                .collect::<Vec<_>>(),
        ),
        generated_by: env!("CARGO_PKG_VERSION"),
    };
    let mut html = page
        .render()
        .expect("the report's template renders from plain fields");
    html.push('\n');
    html
}

#[cfg(test)]
mod tests;
