//! Training: encode, fit with attune's fused L-BFGS ([`super::optim::FastLogistic`]),
//! check convergence, evaluate.
//!
//! linfa-logistic stays as the cross-check: the tests below fit the same data with both
//! and require the same coefficients and holdout AUC.

use std::borrow::Borrow;

use chrono::{DateTime, NaiveDate, Utc};
use linfa::DatasetBase;
use linfa::traits::Fit;
use ndarray::{Array1, Array2};
use sha2::{Digest, Sha256};

use crate::features::FeatureRow;

use super::ModelError;
use super::artifact::{EncodedFeature, FORMAT, ModelArtifact, SolverReport, TrainingInfo};
use super::encoder::{Encoder, check_finite};
use super::evaluation::Evaluation;
use super::frame::{Frame, Level, MISSING, Values, in_chunks, threads};
use super::metrics::Metrics;
use super::optim::{ClassWeight, FastLogistic};
use super::split::stratified_split;

/// The solver recorded in artifacts, followed by ` (fused, N threads)`.
pub const SOLVER_LIBRARY: &str = "attune L-BFGS";

/// linfa-logistic as recorded in artifacts it fitted.
pub const LINFA_LIBRARY: &str = "linfa-logistic 0.8.1";

/// Which solver fits the coefficients: attune's fused L-BFGS (the default), or
/// linfa-logistic as it is, for a team that wants the reference implementation. Both
/// minimise the same penalised log-loss; linfa-logistic has no sample weights, is single
/// threaded, and at a million rows about fifty times slower (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Solver {
    #[default]
    Attune,
    LinfaLogistic,
}

impl Solver {
    /// The names `attune train --solver` takes.
    pub const NAMES: [&str; 2] = ["attune", "linfa-logistic"];

    pub fn parse(name: &str) -> Option<Solver> {
        match name {
            "attune" => Some(Solver::Attune),
            "linfa-logistic" => Some(Solver::LinfaLogistic),
            _ => None,
        }
    }
}

/// Each rerun after a non-converged run gets this many times the previous budget...
const BUDGET_GROWTH: u64 = 4;
/// ...until a run's budget would exceed `max_iterations` times this.
const BUDGET_CAP_FACTOR: u64 = 16;

/// How to train, and the provenance to record in the artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// L2 penalty on the summed log-loss; 1.0 matches scikit-learn's `C = 1`.
    pub alpha: f64,
    /// Iteration budget of the first solver run.
    pub max_iterations: u64,
    /// Converged when the largest absolute gradient component, divided by the number of
    /// training rows, is at most this. scikit-learn's `tol` for lbfgs is 1e-4; attune's default
    /// is 1e-5, which on the Telco data is what it takes to match scikit-learn's holdout AUC.
    pub gradient_tolerance: f64,
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub attune_version: String,
    pub source: String,
    /// Fraction of rows to hold out for evaluation; `None` trains on everything.
    pub holdout: Option<f64>,
    /// Seed of the holdout split (0 when a holdout is asked for without one).
    pub seed: Option<u64>,
    pub as_of: Option<NaiveDate>,
    /// Per-class sample weights (`Balanced` is scikit-learn's `class_weight="balanced"`).
    pub class_weight: ClassWeight,
    /// Top-k sizes at which the evaluation reports precision and recall.
    pub capacities: Vec<usize>,
    /// The rows to measure on, given (a team's own split, a split by group): nothing else
    /// is held out, and `holdout` is not used.
    pub test_rows: Option<Vec<usize>>,
    pub solver: Solver,
}

impl FitOptions {
    /// Defaults: alpha 1.0, 1000 iterations, tolerance 1e-5, no holdout.
    pub fn new(
        version: impl Into<String>,
        created_at: DateTime<Utc>,
        attune_version: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            alpha: 1.0,
            max_iterations: 1000,
            gradient_tolerance: 1e-5,
            version: version.into(),
            created_at,
            attune_version: attune_version.into(),
            source: source.into(),
            holdout: None,
            seed: None,
            as_of: None,
            class_weight: ClassWeight::None,
            capacities: vec![100, 500, 1000],
            test_rows: None,
            solver: Solver::Attune,
        }
    }
}

/// SHA-256 (hex) of rows and labels, independent of the order of rows: each row is
/// written canonically (keys in order, missing values left out, numbers by their bits)
/// with its label and hashed; the sorted row hashes are hashed together with the count.
pub fn fingerprint<R: Borrow<FeatureRow>>(rows: &[R], labels: &[bool]) -> String {
    let all: Vec<usize> = (0..rows.len()).collect();
    fingerprint_frame(&Frame::from_rows(rows), &all, labels)
}

/// [`fingerprint`] of the rows `rows` of a frame (`labels` theirs), hashed on every core.
pub fn fingerprint_frame(frame: &Frame, rows: &[usize], labels: &[bool]) -> String {
    let columns = frame.columns();
    let parts = in_chunks(rows.len(), threads(), |range| {
        range
            .map(|p| {
                let i = rows[p];
                let mut h = Sha256::new();
                for c in columns {
                    let (tag, value): (u8, Result<f64, &str>) = match &c.values {
                        Values::Num(xs) if xs[i].is_nan() => continue,
                        Values::Num(xs) => (b'n', Ok(xs[i])),
                        Values::Cat { codes, .. } if codes[i] == MISSING => continue,
                        Values::Cat { codes, levels } => match &levels[codes[i] as usize] {
                            Level::Num(x) => (b'n', Ok(*x)),
                            Level::Text(t) => (b'c', Err(t.as_str())),
                        },
                    };
                    h.update((c.name.len() as u64).to_le_bytes());
                    h.update(c.name.as_bytes());
                    h.update([tag]);
                    match value {
                        Ok(x) => {
                            let x = if x == 0.0 { 0.0f64 } else { x };
                            h.update(x.to_bits().to_le_bytes());
                        }
                        Err(t) => {
                            h.update((t.len() as u64).to_le_bytes());
                            h.update(t.as_bytes());
                        }
                    }
                }
                h.update([b'y', labels[p] as u8]);
                h.finalize().into()
            })
            .collect::<Vec<[u8; 32]>>()
    });
    let mut digests: Vec<[u8; 32]> = parts.concat();
    // In byte order, compared as four big-endian words (no call per comparison).
    digests.sort_unstable_by_key(|d| {
        let word = |k: usize| u64::from_be_bytes(d[8 * k..8 * k + 8].try_into().expect("8 bytes"));
        [word(0), word(1), word(2), word(3)]
    });
    let mut h = Sha256::new();
    h.update(b"attune-training-rows-v1");
    h.update((digests.len() as u64).to_le_bytes());
    for d in &digests {
        h.update(d);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Trains a churn model on `rows` and their outcomes (`true` = churned).
///
/// With `opts.holdout`, a stratified part of the rows is held out: the model is fitted
/// on the rest and `metrics` reports how it does on the held-out part.
///
/// The solver reports the gradient at the point it returns; if that is not small enough
/// it is rerun from where it stopped with four times the budget, up to 16 x
/// `max_iterations` in one run, before giving up with [`ModelError::NotConverged`].
pub fn fit<R: Borrow<FeatureRow>>(
    rows: &[R],
    labels: &[bool],
    opts: &FitOptions,
) -> Result<ModelArtifact, ModelError> {
    // The frame's checks come first, as they did; a non-finite number is the rows' own.
    check_options(opts)?;
    if rows.len() == labels.len() && !rows.is_empty() {
        check_finite(rows)?;
    }
    fit_frame(&Frame::from_rows(rows), labels, opts)
}

/// [`fit`] on a training set held by column: the one code path both reach.
pub fn fit_frame(
    frame: &Frame,
    labels: &[bool],
    opts: &FitOptions,
) -> Result<ModelArtifact, ModelError> {
    let all: Vec<usize> = (0..frame.rows()).collect();
    fit_frame_rows(frame, &all, labels, opts)
}

/// [`fit`] on the rows `rows` of a frame, `labels` theirs (a test row named in
/// `opts.test_rows` is a position in `rows`).
pub fn fit_frame_rows(
    frame: &Frame,
    rows: &[usize],
    labels: &[bool],
    opts: &FitOptions,
) -> Result<ModelArtifact, ModelError> {
    check_options(opts)?;
    if rows.len() != labels.len() {
        return Err(ModelError::LengthMismatch {
            rows: rows.len(),
            labels: labels.len(),
        });
    }
    if labels.is_empty() {
        return Err(ModelError::Empty);
    }
    let n = labels.len();
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == labels.len() {
        return Err(ModelError::OneClass {
            class: positives > 0,
            rows: n,
        });
    }

    let (train, test, seed) = match (&opts.test_rows, opts.holdout) {
        (Some(test), _) => {
            let mut is_test = vec![false; n];
            for &i in test {
                if i >= n {
                    return Err(ModelError::InvalidOption(format!(
                        "test row {i} of {} rows does not exist",
                        n
                    )));
                }
                is_test[i] = true;
            }
            let train: Vec<usize> = (0..n).filter(|&i| !is_test[i]).collect();
            let test: Vec<usize> = (0..n).filter(|&i| is_test[i]).collect();
            (train, Some(test), opts.seed)
        }
        (None, Some(h)) => {
            let seed = opts.seed.unwrap_or(0);
            let (train, test) = stratified_split(labels, h, seed)?;
            (train, Some(test), Some(seed))
        }
        (None, None) => ((0..n).collect(), None, opts.seed),
    };
    let labels_of = |idx: &[usize]| -> Vec<bool> { idx.iter().map(|&i| labels[i]).collect() };
    let train_labels = labels_of(&train);
    let train_pos = train_labels.iter().filter(|&&y| y).count();
    let split = match &opts.test_rows {
        Some(t) => format!("the given split ({} test rows)", t.len()),
        None => format!("holdout {:?}", opts.holdout),
    };
    if train_pos == 0 || train_pos == train_labels.len() {
        return Err(ModelError::InvalidOption(format!(
            "{split} leaves only one class in the {} training rows; use a smaller holdout or more data",
            train.len()
        )));
    }
    if let Some(test) = &test
        && test.is_empty()
    {
        return Err(ModelError::InvalidOption(format!(
            "{split} of {} rows holds out no rows; use a larger holdout or more data",
            n
        )));
    }

    // Positions in `rows` to the frame's rows.
    let in_frame = |pos: &[usize]| -> Vec<usize> { pos.iter().map(|&p| rows[p]).collect() };
    let (train_at, test_at) = (in_frame(&train), test.as_deref().map(in_frame));
    let encoder = Encoder::fit_frame(frame, &train_at);
    if encoder.columns().is_empty() {
        return Err(ModelError::NoFeatures {
            dropped: encoder.dropped().to_vec(),
        });
    }
    let x = encoder.encode_frame(frame, &train_at);
    let y = Array1::from(train_labels.clone());
    let solution = solve(&x, &y, opts)?;
    drop(x);

    let mut artifact = ModelArtifact {
        format: FORMAT,
        version: opts.version.clone(),
        created_at: opts.created_at,
        attune_version: opts.attune_version.clone(),
        training: TrainingInfo {
            source: opts.source.clone(),
            rows: n,
            train_rows: Some(train.len()),
            test_rows: test.as_ref().map(Vec::len),
            positives,
            fingerprint: fingerprint_frame(frame, rows, labels),
            holdout: opts.holdout,
            seed,
            as_of: opts.as_of,
            feature_spec_hash: None,
            feature_spec: None,
            churn: None,
            left_out: Vec::new(),
            not_features: Vec::new(),
        },
        features: encoder
            .columns()
            .iter()
            .zip(&solution.coefficients)
            .map(|(c, &coefficient)| EncodedFeature {
                name: c.name.clone(),
                source: c.source.clone(),
                encoding: c.encoding.clone(),
                coefficient,
            })
            .collect(),
        dropped_features: encoder.dropped().to_vec(),
        intercept: solution.intercept,
        solver: SolverReport {
            library: match opts.solver {
                Solver::Attune => format!(
                    "{SOLVER_LIBRARY} (fused, {} thread{})",
                    solution.threads,
                    if solution.threads == 1 { "" } else { "s" }
                ),
                Solver::LinfaLogistic => LINFA_LIBRARY.to_owned(),
            },
            alpha: opts.alpha,
            max_iterations: opts.max_iterations,
            iterations_allowed_used: solution.iterations,
            gradient_norm: solution.gradient_norm,
            converged: true,
        },
        metrics: None,
        train_metrics: evaluate_placeholder(),
        evaluation: None,
        profiles: super::drift::profile_frame(frame, &train_at),
        score_profile: Vec::new(),
        backtest: None,
    };
    let train_probs = artifact.predict_frame(frame, &train_at);
    artifact.train_metrics = Metrics::compute(&train_labels, &train_probs);
    artifact.score_profile = super::drift::score_profile(&train_probs);
    if let (Some(test), Some(test_at)) = (&test, &test_at) {
        let evaluation = Evaluation::compute(
            &labels_of(test),
            &artifact.predict_frame(frame, test_at),
            &opts.capacities,
        );
        artifact.metrics = Some(evaluation.metrics.clone());
        artifact.evaluation = Some(evaluation);
    }
    Ok(artifact)
}

fn evaluate_placeholder() -> Metrics {
    Metrics {
        rows: 0,
        positives: 0,
        auc: None,
        pr_auc: None,
        log_loss: 0.0,
        brier: 0.0,
    }
}

fn check_options(opts: &FitOptions) -> Result<(), ModelError> {
    if !(opts.alpha.is_finite() && opts.alpha >= 0.0) {
        return Err(ModelError::InvalidOption(format!(
            "alpha {} must be a finite number >= 0 (1.0 is scikit-learn's default)",
            opts.alpha
        )));
    }
    if opts.max_iterations == 0 {
        return Err(ModelError::InvalidOption(
            "max_iterations must be at least 1".into(),
        ));
    }
    if !(opts.gradient_tolerance.is_finite() && opts.gradient_tolerance > 0.0) {
        return Err(ModelError::InvalidOption(format!(
            "gradient_tolerance {} must be a positive number (e.g. 1e-4)",
            opts.gradient_tolerance
        )));
    }
    Ok(())
}

/// Coefficients giving the log-odds of churn = true.
#[derive(Debug, Clone)]
pub struct Solution {
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    /// Iterations used across runs.
    pub iterations: u64,
    /// Max |gradient| / rows at the solution.
    pub gradient_norm: f64,
    /// Threads the last run used.
    pub threads: usize,
}

/// linfa-logistic's fit of the same objective: one run with the whole budget (it cannot be
/// warm-started through its own iteration count), the gradient then measured by attune
/// independently of it, and the same convergence test as attune's solver.
fn solve_linfa(
    x: &Array2<f64>,
    y: &Array1<bool>,
    opts: &FitOptions,
) -> Result<Solution, ModelError> {
    if opts.class_weight != ClassWeight::None {
        return Err(ModelError::Solver(
            "linfa-logistic has no class weights; train with --solver attune, or without class weights".into(),
        ));
    }
    let budget = opts.max_iterations.saturating_mul(BUDGET_CAP_FACTOR);
    let rows = x.nrows() as f64;
    // linfa's tolerance is on its summed gradient; attune's is per row.
    let fitted = linfa_logistic::LogisticRegression::default()
        .alpha(opts.alpha)
        .max_iterations(budget)
        .gradient_tolerance(opts.gradient_tolerance * rows)
        .fit(&DatasetBase::new(x.view(), y.view()))
        .map_err(|e| ModelError::Solver(format!("linfa-logistic: {e}")))?;
    // linfa makes the majority class its positive one: turn its parameters into the
    // log-odds of churn.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let w: Array1<f64> = fitted.params().mapv(|v| v * sign);
    let b = fitted.intercept() * sign;
    let gradient_norm = relative_gradient(x, y, opts.alpha, &w, b);
    if gradient_norm.is_nan() || gradient_norm > opts.gradient_tolerance {
        return Err(ModelError::NotConverged {
            iterations: budget,
            gradient_norm,
        });
    }
    Ok(Solution {
        coefficients: w.to_vec(),
        intercept: b,
        // linfa-logistic does not report its iterations: the budget it was allowed.
        iterations: budget,
        gradient_norm,
        threads: 1,
    })
}

/// Runs [`FastLogistic`], rerunning from where it stopped with a larger budget until it
/// converges or the budget cap is reached.
pub fn solve(x: &Array2<f64>, y: &Array1<bool>, opts: &FitOptions) -> Result<Solution, ModelError> {
    if opts.solver == Solver::LinfaLogistic {
        return solve_linfa(x, y, opts);
    }
    let cap = opts.max_iterations.saturating_mul(BUDGET_CAP_FACTOR);
    let mut budget = opts.max_iterations;
    let mut total = 0u64;
    let mut warm: Option<Array1<f64>> = None;
    // Views: the solver reads the encoded matrix in place.
    let data = DatasetBase::new(x.view(), y.view());
    loop {
        let mut params = FastLogistic::default()
            .alpha(opts.alpha)
            .max_iterations(budget)
            .tolerance(opts.gradient_tolerance)
            .class_weight(opts.class_weight);
        if let Some(init) = warm.take() {
            params = params.initial_params(init);
        }
        let fitted = params.fit(&data)?;
        total = total.saturating_add(fitted.iterations);
        if fitted.converged {
            return Ok(Solution {
                coefficients: fitted.coefficients.to_vec(),
                intercept: fitted.intercept,
                iterations: total,
                gradient_norm: fitted.gradient_norm,
                threads: fitted.threads,
            });
        }
        let next = budget.saturating_mul(BUDGET_GROWTH);
        if next > cap {
            return Err(ModelError::NotConverged {
                iterations: total,
                gradient_norm: fitted.gradient_norm,
            });
        }
        budget = next;
        warm = Some(fitted.params());
    }
}

/// One linfa-logistic run (the cross-check). Returns its parameters (coefficients then
/// intercept) in linfa's own sign convention, which depends only on the data, and whether
/// that convention's positive class is churn = true (linfa makes the majority class
/// positive).
#[cfg(test)]
fn run_linfa(
    x: &Array2<f64>,
    y: &Array1<bool>,
    alpha: f64,
    max_iterations: u64,
    linfa_tolerance: f64,
    init: Option<Array1<f64>>,
) -> Result<(Array1<f64>, bool), ModelError> {
    let mut params = linfa_logistic::LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(max_iterations)
        .gradient_tolerance(linfa_tolerance);
    if let Some(init) = init {
        params = params.initial_params(init);
    }
    let dataset = linfa::Dataset::new(x.clone(), y.clone());
    let fitted = params
        .fit(&dataset)
        .map_err(|e| ModelError::Solver(e.to_string()))?;
    let raw: Array1<f64> = fitted
        .params()
        .iter()
        .copied()
        .chain([fitted.intercept()])
        .collect();
    Ok((raw, fitted.labels().pos.class))
}

/// Max |gradient| / rows of `sum log-loss + alpha/2 |w|^2` (intercept not penalised) at
/// `(w, b)`, with `w` and `b` giving the log-odds of `y = true`, computed independently
/// of the solver.
pub fn relative_gradient(
    x: &Array2<f64>,
    y: &Array1<bool>,
    alpha: f64,
    w: &Array1<f64>,
    b: f64,
) -> f64 {
    let z = x.dot(w) + b;
    let residual: Array1<f64> = z
        .iter()
        .zip(y)
        .map(|(&z, &yi)| {
            crate::domain::Probability::from_logit(z).get() - if yi { 1.0 } else { 0.0 }
        })
        .collect();
    let gw = x.t().dot(&residual) + w * alpha;
    let gb = residual.sum();
    let max = gw.iter().fold(gb.abs(), |m, g| m.max(g.abs()));
    max / x.nrows() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureValue::{Cat, Num};
    use crate::model::metrics::roc_auc;
    use linfa::traits::Predict;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn opts() -> FitOptions {
        FitOptions::new(
            "test-1",
            DateTime::<Utc>::from_timestamp(1_750_000_000, 0).unwrap(),
            "0.1.0",
            "synthetic",
        )
    }

    fn sigmoid(z: f64) -> f64 {
        1.0 / (1.0 + (-z).exp())
    }

    /// Churn log-odds = intercept + 1.5 x1 - 1.0 x2 + 1.0 [plan = c].
    fn synthetic(n: usize, intercept: f64, seed: u64) -> (Vec<FeatureRow>, Vec<bool>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let plans = ["a", "b", "c"];
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let x1: f64 = rng.gen_range(-2.0..2.0);
            let x2: f64 = rng.gen_range(-2.0..2.0);
            let plan = plans[rng.gen_range(0..3)];
            let z = intercept + 1.5 * x1 - 1.0 * x2 + if plan == "c" { 1.0 } else { 0.0 };
            labels.push(rng.r#gen::<f64>() < sigmoid(z));
            let mut row = FeatureRow::new();
            row.insert("x1".into(), Num(x1));
            row.insert("x2".into(), Num(x2));
            row.insert("plan".into(), Cat(plan.into()));
            row.insert("constant".into(), Num(3.0));
            rows.push(row);
        }
        (rows, labels)
    }

    fn coef(a: &ModelArtifact, name: &str) -> f64 {
        a.features
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .coefficient
    }

    /// The relative gradient recomputed from the artifact alone.
    fn artifact_gradient(a: &ModelArtifact, rows: &[FeatureRow], labels: &[bool]) -> f64 {
        let mut g = vec![0.0; a.features.len()];
        let mut gb = 0.0;
        for (row, &y) in rows.iter().zip(labels) {
            let r = a.predict(row).get() - if y { 1.0 } else { 0.0 };
            gb += r;
            for (j, f) in a.features.iter().enumerate() {
                g[j] += r * f.encoding.apply(row.get(&f.source));
            }
        }
        let mut max = gb.abs();
        for (j, f) in a.features.iter().enumerate() {
            max = max.max((g[j] + a.solver.alpha * f.coefficient).abs());
        }
        max / rows.len() as f64
    }

    #[test]
    fn predictions_by_column_are_the_row_predictions() {
        let (mut rows, labels) = synthetic(3000, -0.5, 11);
        for (i, r) in rows.iter_mut().enumerate() {
            match i % 4 {
                0 => {
                    r.insert("plan".into(), Cat(format!("p{}", i % 3)));
                }
                1 => {
                    r.insert("plan".into(), Num((i % 2) as f64));
                }
                2 => {
                    r.remove("x2");
                }
                _ => {}
            }
        }
        let mut o = opts();
        o.holdout = Some(0.3);
        let a = fit(&rows, &labels, &o).unwrap();
        assert!(
            a.features.iter().any(|f| f.name == "plan=p1"),
            "{:?}",
            a.features
        );
        let frame = Frame::from_rows(&rows);
        let all: Vec<usize> = (0..rows.len()).rev().collect();
        let by_column = a.predict_frame(&frame, &all);
        for (k, &i) in all.iter().enumerate() {
            assert_eq!(by_column[k], a.predict(&rows[i]).get(), "row {i}");
        }
        // The design matrix by column is the one by row.
        let enc = Encoder::fit(&rows).unwrap();
        assert_eq!(
            enc.encode_frame(&frame, &all),
            enc.encode(&all.iter().map(|&i| &rows[i]).collect::<Vec<_>>())
        );
    }

    #[test]
    fn recovers_coefficient_signs() {
        let (rows, labels) = synthetic(2000, -0.5, 1);
        let a = fit(&rows, &labels, &opts()).unwrap();
        let names: Vec<_> = a.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["plan=a", "plan=b", "plan=c", "x1", "x2"]);
        assert_eq!(a.dropped_features, ["constant"]);
        assert!(coef(&a, "x1") > 0.5, "{a:#?}");
        assert!(coef(&a, "x2") < -0.3);
        assert!(coef(&a, "plan=c") > coef(&a, "plan=a") + 0.5);
        assert!(a.solver.converged && a.solver.gradient_norm <= 1e-4);
        assert!(a.train_metrics.auc.unwrap() > 0.75);
        assert!(a.validate().is_ok());
        // x1 is standardised: its coefficient is per standard deviation of U(-2, 2) ~ 1.155.
        let x1_std = match a.features[3].encoding {
            crate::model::Encoding::Numeric { std, .. } => std,
            _ => unreachable!(),
        };
        assert!(
            (coef(&a, "x1") / x1_std - 1.5).abs() < 0.3,
            "{}",
            coef(&a, "x1") / x1_std
        );
    }

    #[test]
    fn churn_probability_is_right_whether_churners_are_minority_or_majority() {
        for (intercept, minority) in [(-2.5, true), (2.5, false)] {
            let (rows, labels) = synthetic(1500, intercept, 2);
            let rate = labels.iter().filter(|&&y| y).count() as f64 / labels.len() as f64;
            assert_eq!(rate < 0.5, minority, "rate {rate}");
            let a = fit(&rows, &labels, &opts()).unwrap();
            assert!(coef(&a, "x1") > 0.0, "intercept {intercept}: {a:#?}");
            let mut low = rows[0].clone();
            let mut high = rows[0].clone();
            low.insert("x1".into(), Num(-1.0));
            high.insert("x1".into(), Num(1.0));
            assert!(a.predict(&high).get() > a.predict(&low).get());
            // At the optimum the intercept's gradient is zero: mean P(churn) = churn rate.
            let mean_p =
                a.predict_many(&rows).iter().map(|p| p.get()).sum::<f64>() / rows.len() as f64;
            assert!(
                (mean_p - rate).abs() < 1e-3,
                "mean p {mean_p} vs rate {rate}"
            );
            assert!(a.train_metrics.auc.unwrap() > 0.7);
        }
    }

    #[test]
    fn solver_report_gradient_is_honest() {
        let (rows, labels) = synthetic(800, 0.0, 3);
        let a = fit(&rows, &labels, &opts()).unwrap();
        let g = artifact_gradient(&a, &rows, &labels);
        assert!(
            (g - a.solver.gradient_norm).abs() < 1e-9,
            "{g} vs {}",
            a.solver.gradient_norm
        );
        assert!(g <= 1e-4);
    }

    /// Many nearly collinear copies of a strong signal, almost no regularisation.
    fn collinear(n: usize) -> (Vec<FeatureRow>, Vec<bool>) {
        let mut rng = StdRng::seed_from_u64(4);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let t: f64 = rng.gen_range(-1.0..1.0);
            let mut row = FeatureRow::new();
            for k in 0..8 {
                row.insert(format!("copy{k}"), Num(t + 1e-3 * rng.gen_range(-1.0..1.0)));
            }
            labels.push(rng.r#gen::<f64>() < sigmoid(6.0 * t));
            rows.push(row);
        }
        (rows, labels)
    }

    #[test]
    fn hard_problem_converges_honestly_or_says_so() {
        let (rows, labels) = collinear(400);
        let hard = FitOptions {
            alpha: 1e-6,
            gradient_tolerance: 1e-7,
            ..opts()
        };
        // A starved budget: 1 + 4 + 16 iterations are not enough, and fit says so.
        match fit(
            &rows,
            &labels,
            &FitOptions {
                max_iterations: 1,
                ..hard.clone()
            },
        ) {
            Err(ModelError::NotConverged {
                iterations,
                gradient_norm,
            }) => {
                assert_eq!(iterations, 21);
                assert!(gradient_norm > 1e-7);
            }
            other => panic!("expected NotConverged, got {other:?}"),
        }
        // A first run too short (this problem needs about 60 iterations from scratch) is
        // rerun from where it stopped with four times the budget, and then converges; the
        // report holds the iterations actually used (all 30 of the first run, then some).
        let a = fit(
            &rows,
            &labels,
            &FitOptions {
                max_iterations: 30,
                ..hard.clone()
            },
        )
        .unwrap();
        assert!(a.solver.converged);
        let used = a.solver.iterations_allowed_used;
        assert!(used > 30 && used <= 30 + 120, "{used} iterations");
        assert!(artifact_gradient(&a, &rows, &labels) <= 1e-7);
        let err = ModelError::NotConverged {
            iterations: 21,
            gradient_norm: 1.0,
        }
        .to_string();
        assert!(
            err.contains("max_iterations") && err.contains("alpha"),
            "{err}"
        );
        // With the default budget it either converges, verifiably, or says it did not.
        match fit(&rows, &labels, &hard) {
            Ok(a) => {
                eprintln!(
                    "hard problem: converged, budget {}, gradient {:e}",
                    a.solver.iterations_allowed_used, a.solver.gradient_norm
                );
                assert!(a.solver.converged);
                let g = artifact_gradient(&a, &rows, &labels);
                assert!(g <= 1e-7, "claims convergence with gradient {g}");
            }
            Err(ModelError::NotConverged {
                gradient_norm,
                iterations,
            }) => {
                eprintln!(
                    "hard problem: not converged after {iterations}, gradient {gradient_norm:e}"
                );
                assert!(gradient_norm > 1e-7)
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Smallest single-run budget for which linfa meets the tolerance (for the report).
    fn iterations_needed(x: &Array2<f64>, y: &Array1<bool>, alpha: f64, tol: f64) -> Option<u64> {
        let n = x.nrows() as f64;
        (1..=5000u64).find(|&m| {
            let (raw, pos) = run_linfa(x, y, alpha, m, tol * n, None).unwrap();
            let d = x.ncols();
            let sign = if pos { 1.0 } else { -1.0 };
            relative_gradient(
                x,
                y,
                alpha,
                &raw.iter()
                    .take(d)
                    .map(|v| v * sign)
                    .collect::<Array1<f64>>(),
                raw[d] * sign,
            ) <= tol
        })
    }

    #[test]
    fn measure_iterations_needed() {
        let (rows, labels) = synthetic(2000, -0.5, 1);
        let enc = Encoder::fit(&rows).unwrap();
        let needed = iterations_needed(&enc.encode(&rows), &Array1::from(labels), 1.0, 1e-4);
        eprintln!("synthetic 2000 rows, alpha 1, tol 1e-4: {needed:?} iterations");
        assert!(needed.unwrap() <= 100);
        let (rows, labels) = collinear(400);
        let enc = Encoder::fit(&rows).unwrap();
        let x = enc.encode(&rows);
        let y = Array1::from(labels);
        for (alpha, tol) in [(1.0, 1e-4), (1e-6, 1e-4), (1e-6, 1e-7)] {
            eprintln!(
                "collinear 400 rows, alpha {alpha}, tol {tol}: {:?} iterations",
                iterations_needed(&x, &y, alpha, tol)
            );
        }
    }

    #[test]
    fn holdout_metrics_and_provenance() {
        let (rows, labels) = synthetic(1000, -1.0, 5);
        let o = FitOptions {
            holdout: Some(0.25),
            seed: Some(9),
            as_of: "2025-06-01".parse().ok(),
            ..opts()
        };
        let a = fit(&rows, &labels, &o).unwrap();
        let m = a.metrics.as_ref().unwrap();
        assert_eq!(m.rows + a.train_metrics.rows, 1000);
        assert_eq!(
            m.positives + a.train_metrics.positives,
            a.training.positives
        );
        assert_eq!(
            (a.training.rows, a.training.seed, a.training.holdout),
            (1000, Some(9), Some(0.25))
        );
        assert!(m.auc.unwrap() > 0.7);
        assert_eq!(a.training.fingerprint.len(), 64);
        assert_eq!(fit(&rows, &labels, &o).unwrap(), a, "deterministic");
        // The fingerprint ignores row order but not labels.
        let mut rev_rows = rows.clone();
        let mut rev_labels = labels.clone();
        rev_rows.reverse();
        rev_labels.reverse();
        assert_eq!(fingerprint(&rev_rows, &rev_labels), a.training.fingerprint);
        rev_labels[0] = !rev_labels[0];
        assert_ne!(fingerprint(&rev_rows, &rev_labels), a.training.fingerprint);
    }

    #[test]
    fn artifact_json_round_trip() {
        let (rows, labels) = synthetic(600, 0.0, 6);
        let a = fit(
            &rows,
            &labels,
            &FitOptions {
                holdout: Some(0.2),
                ..opts()
            },
        )
        .unwrap();
        let json = serde_json::to_string_pretty(&a).unwrap();
        assert!(
            json.contains("\"type\": \"OneHot\"") && json.contains("\"name\": \"plan=c\""),
            "{json}"
        );
        let back: ModelArtifact = serde_json::from_str(&json).unwrap();
        back.validate().unwrap();
        // serde_json (without its `float_roundtrip` feature) may read a float back one
        // unit in the last place off, so compare numbers closely rather than bit for bit.
        assert_eq!(
            serde_json::to_value(&back).unwrap()["features"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(
            (&back.training, &back.dropped_features, &back.solver.library),
            (&a.training, &a.dropped_features, &a.solver.library)
        );
        assert!((back.intercept - a.intercept).abs() <= 1e-12);
        for (b, f) in back.features.iter().zip(&a.features) {
            assert_eq!((&b.name, &b.source), (&f.name, &f.source));
            assert!((b.coefficient - f.coefficient).abs() <= 1e-12 * f.coefficient.abs().max(1.0));
        }
        for (p, q) in back.predict_many(&rows).iter().zip(a.predict_many(&rows)) {
            assert!((p.get() - q.get()).abs() <= 1e-12, "{p:?} vs {q:?}");
        }
        // A second round trip is stable.
        let again: ModelArtifact =
            serde_json::from_str(&serde_json::to_string_pretty(&back).unwrap()).unwrap();
        assert!(
            again
                .predict_many(&rows)
                .iter()
                .zip(back.predict_many(&rows))
                .all(|(p, q)| (p.get() - q.get()).abs() <= 1e-12)
        );
        let mut broken = back.clone();
        broken.format = 2;
        assert!(matches!(
            broken.validate(),
            Err(ModelError::InvalidArtifact(_))
        ));
    }

    #[test]
    fn input_errors() {
        let (rows, labels) = synthetic(50, 0.0, 7);
        assert_eq!(fit::<FeatureRow>(&[], &[], &opts()), Err(ModelError::Empty));
        assert_eq!(
            fit(&rows, &labels[..49], &opts()),
            Err(ModelError::LengthMismatch {
                rows: 50,
                labels: 49
            })
        );
        assert_eq!(
            fit(&rows, &[true; 50], &opts()),
            Err(ModelError::OneClass {
                class: true,
                rows: 50
            })
        );
        let mut bad = rows.clone();
        bad[3].insert("x2".into(), Num(f64::INFINITY));
        assert_eq!(
            fit(&bad, &labels, &opts()),
            Err(ModelError::NonFinite {
                feature: "x2".into(),
                row: 3
            })
        );
        assert!(matches!(
            fit(
                &rows,
                &labels,
                &FitOptions {
                    alpha: -1.0,
                    ..opts()
                }
            ),
            Err(ModelError::InvalidOption(_))
        ));
        assert!(matches!(
            fit(
                &rows,
                &labels,
                &FitOptions {
                    holdout: Some(1.0),
                    ..opts()
                }
            ),
            Err(ModelError::InvalidOption(_))
        ));
        let constant: Vec<FeatureRow> = rows
            .iter()
            .map(|_| [("k".to_string(), Num(1.0))].into_iter().collect())
            .collect();
        assert!(matches!(
            fit(&constant, &labels, &opts()),
            Err(ModelError::NoFeatures { .. })
        ));
    }

    /// Fits the same encoded training rows with attune's solver and with linfa-logistic,
    /// both to a tight tolerance, and requires the same coefficients (relative 1e-3 on the
    /// standardised scale) and the same holdout AUC (within 1e-4). Also checks that
    /// `fit` itself, at its default tolerance, lands on the same holdout AUC.
    fn cross_check_with_linfa(rows: &[FeatureRow], labels: &[bool], holdout: f64, seed: u64) {
        let (train, test) = stratified_split(labels, holdout, seed).unwrap();
        let pick = |idx: &[usize]| -> (Vec<FeatureRow>, Vec<bool>) {
            (
                idx.iter().map(|&i| rows[i].clone()).collect(),
                idx.iter().map(|&i| labels[i]).collect(),
            )
        };
        let (train_rows, train_labels) = pick(&train);
        let (test_rows, test_labels) = pick(&test);
        let enc = Encoder::fit(&train_rows).unwrap();
        let (x, x_test) = (enc.encode(&train_rows), enc.encode(&test_rows));
        let y = Array1::from(train_labels);
        let n = x.nrows() as f64;
        let d = x.ncols();

        let fast = FastLogistic::default()
            .tolerance(1e-9)
            .fit(&DatasetBase::new(x.view(), y.view()))
            .unwrap();
        assert!(fast.converged, "{fast:?}");
        let (raw, pos) = run_linfa(&x, &y, 1.0, 5000, 1e-9 * n, None).unwrap();
        let sign = if pos { 1.0 } else { -1.0 };
        let lw: Array1<f64> = raw.iter().take(d).map(|v| v * sign).collect();
        let lb = raw[d] * sign;
        let linfa_gradient = relative_gradient(&x, &y, 1.0, &lw, lb);
        eprintln!(
            "{d} columns, {n} rows: attune {} iterations ({} passes), gradient {:.1e}; \
             linfa gradient {linfa_gradient:.1e}",
            fast.iterations, fast.evaluations, fast.gradient_norm
        );
        assert!(
            linfa_gradient <= 1e-6,
            "linfa stopped early: {linfa_gradient:e}"
        );
        // The gradient attune reports is the one computed independently.
        let ours = relative_gradient(&x, &y, 1.0, &fast.coefficients, fast.intercept);
        assert!(
            (ours - fast.gradient_norm).abs() <= 1e-12,
            "{ours} vs {fast:?}"
        );
        let scale = lw.iter().fold(lb.abs(), |m, v| m.max(v.abs()));
        for (j, (a, b)) in fast.coefficients.iter().zip(&lw).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1e-2 * scale),
                "column {} ({j}): attune {a}, linfa {b}",
                enc.columns()[j].name
            );
        }
        assert!((fast.intercept - lb).abs() <= 1e-3 * lb.abs().max(1e-2 * scale));

        let auc = |p: Array1<f64>| roc_auc(&test_labels, p.as_slice().unwrap()).unwrap();
        let fast_auc = auc(fast.predict(&x_test));
        let linfa_auc = auc(x_test.dot(&lw).mapv(|z| 1.0 / (1.0 + (-(z + lb)).exp())));
        assert!(
            (fast_auc - linfa_auc).abs() <= 1e-4,
            "holdout AUC attune {fast_auc}, linfa {linfa_auc}"
        );
        // The production path: default tolerance, same split.
        let a = fit(
            rows,
            labels,
            &FitOptions {
                holdout: Some(holdout),
                seed: Some(seed),
                ..opts()
            },
        )
        .unwrap();
        let prod_auc = a.metrics.as_ref().unwrap().auc.unwrap();
        eprintln!(
            "holdout AUC: attune {fast_auc}, fit() {prod_auc} ({} iterations, gradient \
             {:.1e}), linfa {linfa_auc}",
            a.solver.iterations_allowed_used, a.solver.gradient_norm
        );
        // At the default tolerance (1e-4 per row, scikit-learn's) an ill-conditioned
        // problem such as Telco's, whose one-hot columns are collinear with each other and
        // the intercept, is only loosely pinned down: where exactly a solver stops differs
        // by a few 1e-4 of AUC (scikit-learn's own lbfgs lands 0.00002 from linfa here).
        assert!(
            (prod_auc - linfa_auc).abs() <= 5e-4,
            "fit() holdout AUC {prod_auc}, linfa {linfa_auc}"
        );
        assert!(a.solver.library.starts_with("attune L-BFGS (fused, "));
    }

    /// `attune train --solver linfa-logistic`: the same rows fitted by linfa-logistic through
    /// `fit`, recorded as such, landing on attune's holdout AUC; class weights are refused
    /// with a reason, not ignored.
    #[test]
    fn linfa_logistic_is_a_solver_users_can_choose() {
        let (rows, labels) = synthetic(2000, -0.5, 3);
        let with = |solver| FitOptions {
            holdout: Some(0.25),
            seed: Some(5),
            solver,
            ..opts()
        };
        let ours = fit(&rows, &labels, &with(Solver::Attune)).unwrap();
        let theirs = fit(&rows, &labels, &with(Solver::LinfaLogistic)).unwrap();
        assert_eq!(theirs.solver.library, LINFA_LIBRARY);
        assert!(theirs.solver.converged && theirs.solver.gradient_norm <= 1e-5);
        let auc = |a: &ModelArtifact| a.metrics.as_ref().unwrap().auc.unwrap();
        assert!(
            (auc(&ours) - auc(&theirs)).abs() <= 1e-3,
            "attune {} linfa {}",
            auc(&ours),
            auc(&theirs)
        );
        for (a, b) in ours.features.iter().zip(&theirs.features) {
            assert_eq!(a.name, b.name);
            assert!(
                (a.coefficient - b.coefficient).abs() <= 1e-2 * a.coefficient.abs().max(0.1),
                "{}: attune {} linfa {}",
                a.name,
                a.coefficient,
                b.coefficient
            );
        }
        let weighted = FitOptions {
            class_weight: ClassWeight::Balanced,
            ..with(Solver::LinfaLogistic)
        };
        let e = fit(&rows, &labels, &weighted).unwrap_err().to_string();
        assert!(e.contains("class weights"), "{e}");
    }

    #[test]
    fn fast_solver_matches_linfa_on_synthetic_rows() {
        let (rows, labels) = synthetic(2000, -0.5, 1);
        cross_check_with_linfa(&rows, &labels, 0.25, 9);
    }

    #[test]
    fn fast_solver_matches_linfa_on_telco() {
        use crate::features::{Activity, FeatureSpec, compute};
        use crate::ingest::{CustomerPreset, Format, parse_customers};
        let csv = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/telco.csv"
        ))
        .unwrap();
        let as_of: NaiveDate = "2025-06-30".parse().unwrap();
        let parsed = parse_customers(
            "telco.csv",
            csv.as_bytes(),
            Format::Csv,
            CustomerPreset::Telco,
            as_of,
        )
        .unwrap();
        assert!(parsed.rejected.is_empty());
        let (none, spec) = (Activity::default(), FeatureSpec::default_spec());
        let (rows, labels): (Vec<FeatureRow>, Vec<bool>) = parsed
            .rows
            .iter()
            .map(|(_, c)| (compute(&spec, c, &none, as_of), c.churned_on.is_some()))
            .unzip();
        cross_check_with_linfa(&rows, &labels, 0.25, 42);
    }

    #[test]
    fn balanced_class_weight_reaches_the_weighted_optimum() {
        let (rows, labels) = synthetic(1500, -2.0, 8);
        let plain = fit(&rows, &labels, &opts()).unwrap();
        let balanced = fit(
            &rows,
            &labels,
            &FitOptions {
                class_weight: ClassWeight::Balanced,
                ..opts()
            },
        )
        .unwrap();
        assert!(balanced.solver.converged);
        // Churners are a minority: weighting them up raises every churn probability's
        // baseline, so the mean predicted churn moves from the base rate towards 1/2.
        let rate = labels.iter().filter(|&&y| y).count() as f64 / labels.len() as f64;
        let mean = |a: &ModelArtifact| {
            a.predict_many(&rows).iter().map(|p| p.get()).sum::<f64>() / rows.len() as f64
        };
        assert!(rate < 0.3, "{rate}");
        assert!((mean(&plain) - rate).abs() < 1e-3);
        assert!(
            mean(&balanced) > rate + 0.1,
            "{} vs {rate}",
            mean(&balanced)
        );
        // The weighted gradient is zero in the intercept: weighted residuals cancel.
        let n = rows.len() as f64;
        let pos = rate * n;
        let (w_pos, w_neg) = (n / (2.0 * pos), n / (2.0 * (n - pos)));
        let gb: f64 = rows
            .iter()
            .zip(&labels)
            .map(|(r, &y)| {
                let p = balanced.predict(r).get();
                if y { w_pos * (p - 1.0) } else { w_neg * p }
            })
            .sum();
        assert!(gb.abs() / n <= 1e-4, "{gb}");
    }
}
