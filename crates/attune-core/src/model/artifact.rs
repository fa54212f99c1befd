//! A fitted churn model as data: everything needed to score a customer and to explain
//! the score, stored as JSON a person can read and diff between versions.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Probability;
use crate::features::{self, FeatureRow, FeatureValue};

use super::ModelError;
use super::drift::FeatureProfile;
use super::encoder::Encoding;
use super::evaluation::Evaluation;
use super::metrics::Metrics;

/// The artifact layout this code writes and reads.
pub const FORMAT: u32 = 1;

/// A fitted logistic regression giving P(churn = true), with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// Layout version, [`FORMAT`].
    pub format: u32,
    /// The model's own version label, chosen by whoever trained it.
    pub version: String,
    pub created_at: DateTime<Utc>,
    /// The attune release that trained it.
    pub attune_version: String,
    pub training: TrainingInfo,
    /// Encoded columns and their coefficients, by feature name then level.
    pub features: Vec<EncodedFeature>,
    /// Source features left out because they carried no information in training
    /// (constant, a single category, or never known).
    pub dropped_features: Vec<String>,
    pub intercept: f64,
    pub solver: SolverReport,
    /// Metrics on the held-out rows, when some were held out.
    pub metrics: Option<Metrics>,
    /// Metrics on the rows the model was fitted on.
    pub train_metrics: Metrics,
    /// The tables data teams read (calibration, deciles and lift, precision and recall at
    /// k, ROC curve), on the held-out or validation rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// Each source feature's distribution in the training rows: the baseline that scoring
    /// runs are compared with (population stability index).
    #[serde(default)]
    pub profiles: Vec<FeatureProfile>,
    /// Shares of the training rows' scores in ten equal-width bins, for score drift.
    #[serde(default)]
    pub score_profile: Vec<f64>,
    /// The rolling-origin backtest of training from history, with intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest: Option<super::backtest::Backtest>,
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Where the rows came from (a file name, "store", "demo").
    pub source: String,
    /// All rows supplied, training and held out.
    pub rows: usize,
    /// Rows the model was fitted on (older artifacts: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_rows: Option<usize>,
    /// Rows it was measured on (`metrics`), never fitted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rows: Option<usize>,
    /// Churners among all rows supplied.
    pub positives: usize,
    /// SHA-256 (hex) of the supplied rows and labels, independent of row order.
    pub fingerprint: String,
    /// Fraction of rows held out for `metrics`.
    pub holdout: Option<f64>,
    /// Seed of the holdout split.
    pub seed: Option<u64>,
    /// The day the features were computed as of, for point-in-time training.
    pub as_of: Option<NaiveDate>,
    /// The hash of the feature spec the rows were computed with (none for tables exported
    /// by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_spec_hash: Option<String>,
    /// The features as a spec file (auto features derived, attributes as guarded): scoring
    /// computes exactly these, whatever `[features] spec` says later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_spec: Option<String>,
    /// What churn meant for the labels, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<String>,
    /// Customer attributes the guard left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<crate::features::auto::LeftOut>,
    /// Columns of a table that were not features: the target, a split or group column,
    /// identifiers, and columns asked to be ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_features: Vec<String>,
}

/// One column of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedFeature {
    /// `monthly_charge`, or `contract=month_to_month` for a one-hot level.
    pub name: String,
    /// The `FeatureRow` key the column is computed from.
    pub source: String,
    pub encoding: Encoding,
    /// Change in log-odds of churn per unit of the encoded value (per standard deviation
    /// for numbers; for being in the level, for one-hot columns).
    pub coefficient: f64,
}

/// How the solver did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverReport {
    pub library: String,
    /// L2 penalty weight on the summed log-loss (1.0 matches scikit-learn's `C = 1`).
    pub alpha: f64,
    /// The iteration budget asked for.
    pub max_iterations: u64,
    /// Iterations the solver used across all its runs (the first run plus any warm-started
    /// reruns with a larger budget). Older artifacts trained with linfa-logistic, which does
    /// not report its iterations, hold the budget allowed instead.
    pub iterations_allowed_used: u64,
    /// Largest absolute component of the objective's gradient at the returned
    /// coefficients, divided by the number of training rows.
    pub gradient_norm: f64,
    /// Whether `gradient_norm` is within the tolerance asked for.
    pub converged: bool,
}

/// One reason a customer's risk is high: a column that pushes the log-odds up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// Encoded column name.
    pub feature: String,
    /// The `FeatureRow` key.
    pub source: String,
    /// Coefficient times the encoded value: added log-odds of churn.
    pub contribution: f64,
    /// The row's value in words.
    pub description: String,
}

impl ModelArtifact {
    fn logit(&self, row: &FeatureRow) -> f64 {
        self.logit_by(|i| row.get(&self.features[i].source))
    }

    /// The log-odds of a row whose value for the `i`th feature's source is `value(i)`.
    fn logit_by<'r>(&self, value: impl Fn(usize) -> Option<&'r FeatureValue>) -> f64 {
        self.intercept
            + self
                .features
                .iter()
                .enumerate()
                .map(|(i, f)| f.coefficient * f.encoding.apply(value(i)))
                .sum::<f64>()
    }

    /// P(churn) for one customer. Always a valid probability, whatever the row holds:
    /// missing, unknown or non-numeric values count as the training mean / no level.
    pub fn predict(&self, row: &FeatureRow) -> Probability {
        Probability::from_logit(self.logit(row))
    }

    /// [`ModelArtifact::predict`] of a row given by position: `value(i)` is the row's
    /// value for the `i`th feature's source (a [`features::Locator`] over the sources).
    pub fn predict_by<'r>(&self, value: impl Fn(usize) -> Option<&'r FeatureValue>) -> Probability {
        Probability::from_logit(self.logit_by(value))
    }

    pub fn predict_many<R: std::borrow::Borrow<FeatureRow>>(&self, rows: &[R]) -> Vec<Probability> {
        rows.iter().map(|r| self.predict(r.borrow())).collect()
    }

    /// P(churn) of the rows `rows` of `frame`, on every core: for each row, what
    /// [`ModelArtifact::predict`] gives for [`Frame::row`] of it.
    pub fn predict_frame(&self, frame: &super::Frame, rows: &[usize]) -> Vec<f64> {
        use super::encoder::Reader;
        let readers: Vec<(f64, Reader)> = self
            .features
            .iter()
            .map(|f| {
                (
                    f.coefficient,
                    Reader::new(&f.encoding, frame.column(&f.source)),
                )
            })
            .collect();
        let parts = super::frame::in_chunks(rows.len(), super::frame::threads(), |range| {
            let mut out = Vec::with_capacity(range.len());
            let (mut sums, mut values) = (Vec::new(), Vec::new());
            for tile in rows[range].chunks(super::encoder::TILE) {
                // Each row's terms added in feature order, as `logit` adds them (from
                // -0.0, the sum's own start), a tile of rows at a time.
                sums.clear();
                sums.resize(tile.len(), -0.0f64);
                for (c, r) in &readers {
                    r.values(tile, &mut values);
                    for (s, v) in sums.iter_mut().zip(&values) {
                        *s += c * v;
                    }
                }
                out.extend(
                    sums.iter()
                        .map(|s| Probability::from_logit(self.intercept + s).get()),
                );
            }
            out
        });
        parts.concat()
    }

    /// The `k` columns adding most to this row's churn log-odds, largest first; only
    /// columns that push risk up are listed. Values are described in the built-in feature
    /// spec's words.
    pub fn drivers(&self, row: &FeatureRow, k: usize) -> Vec<Driver> {
        self.drivers_with(row, k, &features::describe)
    }

    /// [`ModelArtifact::drivers`], describing values with `describe` (a spec's words).
    pub fn drivers_with(
        &self,
        row: &FeatureRow,
        k: usize,
        describe: &dyn Fn(&str, &FeatureValue) -> String,
    ) -> Vec<Driver> {
        self.top_drivers(row, k)
            .into_iter()
            .map(|(i, contribution, value)| {
                let f = &self.features[i];
                Driver {
                    feature: f.name.clone(),
                    source: f.source.clone(),
                    contribution,
                    description: describe(&f.source, value),
                }
            })
            .collect()
    }

    /// The one definition of a row's drivers: the index of each of the `k` columns adding
    /// most to the row's churn log-odds (largest first, ties by name), with what it adds
    /// and the row's value. Only columns that push risk up, by a finite amount, are listed;
    /// such a column always has a value (a missing one adds nothing).
    pub fn top_drivers<'r>(
        &self,
        row: &'r FeatureRow,
        k: usize,
    ) -> Vec<(usize, f64, &'r FeatureValue)> {
        self.top_drivers_by(|i| row.get(&self.features[i].source), k)
    }

    /// [`ModelArtifact::top_drivers`] of a row given by position, as in
    /// [`ModelArtifact::predict_by`].
    pub fn top_drivers_by<'r>(
        &self,
        value: impl Fn(usize) -> Option<&'r FeatureValue>,
        k: usize,
    ) -> Vec<(usize, f64, &'r FeatureValue)> {
        let mut top: Vec<(usize, f64, &FeatureValue)> = self
            .features
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let value = value(i)?;
                let contribution = f.coefficient * f.encoding.apply(Some(value));
                (contribution > 0.0 && contribution.is_finite()).then_some((i, contribution, value))
            })
            .collect();
        top.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.features[a.0].name.cmp(&self.features[b.0].name))
        });
        top.truncate(k);
        top
    }

    /// Checks an artifact read from outside before it is used to score anyone.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::InvalidArtifact(msg));
        if self.format != FORMAT {
            return bad(format!(
                "artifact format {} is not supported; this attune reads format {FORMAT}",
                self.format
            ));
        }
        if self.features.is_empty() {
            return bad("the model has no features".into());
        }
        if !self.intercept.is_finite() {
            return bad(format!("intercept {} is not finite", self.intercept));
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &self.features {
            if !names.insert(f.name.as_str()) {
                return bad(format!("feature {:?} appears twice", f.name));
            }
            if !f.coefficient.is_finite() {
                return bad(format!("coefficient of {:?} is {}", f.name, f.coefficient));
            }
            if let Encoding::Numeric { mean, std } = f.encoding {
                if !mean.is_finite() {
                    return bad(format!("mean of {:?} is {mean}", f.name));
                }
                if !(std.is_finite() && std > 0.0) {
                    return bad(format!(
                        "standard deviation of {:?} is {std}; it must be positive",
                        f.name
                    ));
                }
            }
        }
        if !(self.solver.alpha.is_finite() && self.solver.alpha >= 0.0) {
            return bad(format!(
                "solver alpha {} is not a finite non-negative number",
                self.solver.alpha
            ));
        }
        if self.solver.gradient_norm.is_nan() {
            return bad("solver gradient norm is NaN".into());
        }
        if self.training.positives > self.training.rows {
            return bad(format!(
                "training reports {} positives among {} rows",
                self.training.positives, self.training.rows
            ));
        }
        if let Some(h) = self.training.holdout
            && !(h.is_finite() && h > 0.0 && h < 1.0)
        {
            return bad(format!("training holdout {h} is not within (0, 1)"));
        }
        self.train_metrics
            .check()
            .or_else(|e| bad(format!("train metrics: {e}")))?;
        if let Some(m) = &self.metrics {
            m.check()
                .or_else(|e| bad(format!("holdout metrics: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureValue::{Cat, Missing, Num};
    use proptest::prelude::*;

    fn feature(name: &str, source: &str, encoding: Encoding, coefficient: f64) -> EncodedFeature {
        EncodedFeature {
            name: name.into(),
            source: source.into(),
            encoding,
            coefficient,
        }
    }

    fn artifact() -> ModelArtifact {
        let metrics = Metrics {
            rows: 10,
            positives: 3,
            auc: Some(0.8),
            pr_auc: Some(0.6),
            log_loss: 0.5,
            brier: 0.2,
        };
        ModelArtifact {
            format: FORMAT,
            version: "hand-made".into(),
            created_at: DateTime::<Utc>::from_timestamp(1_750_000_000, 0).unwrap(),
            attune_version: "0.1.0".into(),
            training: TrainingInfo {
                source: "test".into(),
                rows: 10,
                positives: 3,
                fingerprint: "0".repeat(64),
                holdout: None,
                seed: None,
                as_of: None,
                feature_spec_hash: None,
                train_rows: None,
                test_rows: None,
                feature_spec: None,
                churn: None,
                left_out: Vec::new(),
                not_features: Vec::new(),
            },
            features: vec![
                feature(
                    "complaints_90d",
                    "complaints_90d",
                    Encoding::Numeric {
                        mean: 1.0,
                        std: 2.0,
                    },
                    0.8,
                ),
                feature(
                    "contract=month_to_month",
                    "contract",
                    Encoding::OneHot {
                        level: "month_to_month".into(),
                    },
                    1.2,
                ),
                feature(
                    "contract=two_year",
                    "contract",
                    Encoding::OneHot {
                        level: "two_year".into(),
                    },
                    -1.0,
                ),
                feature(
                    "tenure_months",
                    "tenure_months",
                    Encoding::Numeric {
                        mean: 24.0,
                        std: 12.0,
                    },
                    -0.9,
                ),
                feature(
                    "usage_trend",
                    "usage_trend",
                    Encoding::Numeric {
                        mean: 0.0,
                        std: 0.5,
                    },
                    -0.6,
                ),
            ],
            dropped_features: vec![],
            intercept: -1.5,
            solver: SolverReport {
                library: "linfa-logistic 0.8.1".into(),
                alpha: 1.0,
                max_iterations: 1000,
                iterations_allowed_used: 1000,
                gradient_norm: 1e-6,
                converged: true,
            },
            metrics: None,
            train_metrics: metrics,
            evaluation: None,
            profiles: Vec::new(),
            score_profile: Vec::new(),
            backtest: None,
        }
    }

    use crate::model::encoder::tests::row;

    #[test]
    fn predict_is_logistic_of_linear_score() {
        let a = artifact();
        let r = row(&[
            ("complaints_90d", Num(5.0)),               // +2 sd * 0.8 = 1.6
            ("contract", Cat("month_to_month".into())), // 1.2
            ("tenure_months", Num(12.0)),               // -1 sd * -0.9 = 0.9
            ("usage_trend", Missing),                   // 0
        ]);
        let z: f64 = -1.5 + 1.6 + 1.2 + 0.9;
        assert!((a.predict(&r).get() - 1.0 / (1.0 + (-z).exp())).abs() < 1e-12);
        // An empty row is the intercept alone.
        assert!((a.predict(&FeatureRow::new()).get() - 1.0 / (1.0 + 1.5f64.exp())).abs() < 1e-12);
    }

    #[test]
    fn drivers_are_top_positive_contributions() {
        let a = artifact();
        let r = row(&[
            ("complaints_90d", Num(5.0)),
            ("contract", Cat("month_to_month".into())),
            ("tenure_months", Num(12.0)),
            ("usage_trend", Num(0.5)), // -0.6 * 1 sd: pushes risk down, never a driver
        ]);
        let d = a.drivers(&r, 2);
        let got: Vec<_> = d
            .iter()
            .map(|d| (d.feature.as_str(), d.source.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("complaints_90d", "complaints_90d"),
                ("contract=month_to_month", "contract")
            ]
        );
        assert!((d[0].contribution - 1.6).abs() < 1e-12);
        assert!((d[1].contribution - 1.2).abs() < 1e-12);
        assert_eq!(d[0].description, "5 complaints in 90 days");
        assert_eq!(d[1].description, "contract: month to month");
        let all = a.drivers(&r, 10);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].feature, "tenure_months");
        assert_eq!(all[2].description, "12 months a customer");
        assert!(all.iter().all(|d| d.contribution > 0.0));
        // Nothing pushes risk up for a long-tenure two-year customer.
        let safe = row(&[
            ("contract", Cat("two_year".into())),
            ("tenure_months", Num(60.0)),
        ]);
        assert!(a.drivers(&safe, 3).is_empty());
        assert!(a.drivers(&r, 0).is_empty());
    }

    #[test]
    fn validate_catches_broken_artifacts() {
        assert!(artifact().validate().is_ok());
        let mut a = artifact();
        a.features[0].encoding = Encoding::Numeric {
            mean: 1.0,
            std: 0.0,
        };
        assert!(
            matches!(a.validate(), Err(ModelError::InvalidArtifact(m)) if m.contains("complaints_90d"))
        );
        let mut a = artifact();
        a.features[1].coefficient = f64::NAN;
        assert!(a.validate().is_err());
        let mut a = artifact();
        a.features.clear();
        assert!(a.validate().is_err());
        let mut a = artifact();
        a.format = 0;
        assert!(a.validate().is_err());
        let mut a = artifact();
        a.intercept = f64::INFINITY;
        assert!(a.validate().is_err());
    }

    proptest! {
        #[test]
        fn predict_always_returns_a_probability(
            complaints in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
            tenure in any::<f64>().prop_filter("finite", |x| x.is_finite()),
            usage in -1e300f64..1e300,
            contract in "[a-z_]{0,12}",
            coefficient in -1e6f64..1e6,
        ) {
            let mut a = artifact();
            a.features[3].coefficient = coefficient;
            let r = row(&[
                ("complaints_90d", Num(complaints)),
                ("contract", Cat(contract)),
                ("tenure_months", Num(tenure)),
                ("usage_trend", Num(usage)),
            ]);
            let p = a.predict(&r).get();
            prop_assert!(p.is_finite() && (0.0..=1.0).contains(&p), "{p}");
            for d in a.drivers(&r, 5) {
                prop_assert!(d.contribution.is_finite() && d.contribution > 0.0);
            }
        }
    }
}
