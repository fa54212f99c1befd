//! The scoring job: every active customer's churn probability as of a day, with the top
//! three drivers of each, written as one scoring run. Customers are scored a page at a
//! time, so memory stays flat however many there are; the run counts only once closed.

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::JobContext;
use crate::features::{ActivitySummary, FeatureRow, features_as_of};
use crate::model::ModelArtifact;
use crate::model::drift::{self, DriftRow};
use crate::store::NewScore;

pub const QUEUE: &str = "attune.score";

/// Customers per page: large enough that per-page queries are cheap, small enough that a
/// page's feature rows stay a few tens of megabytes.
pub const PAGE: i64 = 50_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreJob {
    /// The tick that asked for this run, if a schedule did.
    pub tick: Option<String>,
    /// Score as of this day; today when unset.
    pub as_of: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub run_id: i64,
    pub model_version: String,
    pub as_of: NaiveDate,
    pub customers: usize,
    pub at_risk: usize,
    pub risk_threshold: f64,
}

/// Scores one page of feature rows: probability and top three drivers.
fn score_rows(model: &ModelArtifact, ids: &[i64], rows: &[FeatureRow]) -> Vec<NewScore> {
    ids.iter()
        .zip(rows)
        .map(|(id, row)| NewScore {
            customer_id: *id,
            probability: model.predict(row).get(),
            drivers: serde_json::to_value(model.drivers(row, 3)).unwrap_or_default(),
        })
        .collect()
}

/// Population stability of each feature and of the scores against the training data,
/// accumulated page by page (shares weighted by page size).
struct DriftTally {
    rows: usize,
    features: Vec<Vec<f64>>,
    scores: Vec<f64>,
}

impl DriftTally {
    fn new(model: &ModelArtifact) -> Self {
        Self {
            rows: 0,
            features: model
                .profiles
                .iter()
                .map(|p| vec![0.0; p.expected().len()])
                .collect(),
            scores: vec![0.0; 10],
        }
    }

    fn add(&mut self, model: &ModelArtifact, rows: &[FeatureRow], scores: &[NewScore]) {
        let n = rows.len() as f64;
        for (profile, acc) in model.profiles.iter().zip(&mut self.features) {
            for (a, share) in acc.iter_mut().zip(drift::observe(profile, rows)) {
                *a += share * n;
            }
        }
        let probs: Vec<f64> = scores.iter().map(|s| s.probability).collect();
        for (a, share) in self.scores.iter_mut().zip(drift::score_profile(&probs)) {
            *a += share * n;
        }
        self.rows += rows.len();
    }

    fn finish(self, model: &ModelArtifact) -> (Vec<DriftRow>, Vec<f64>) {
        let n = self.rows.max(1) as f64;
        let mut rows: Vec<DriftRow> = model
            .profiles
            .iter()
            .zip(self.features)
            .map(|(p, acc)| {
                let actual: Vec<f64> = acc.into_iter().map(|a| a / n).collect();
                let expected = p.expected();
                DriftRow {
                    feature: p.source.clone(),
                    psi: drift::psi(&expected, &actual),
                    actual,
                    expected,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.psi
                .total_cmp(&a.psi)
                .then_with(|| a.feature.cmp(&b.feature))
        });
        (rows, self.scores.into_iter().map(|a| a / n).collect())
    }
}

pub async fn run(ctx: &JobContext, job: &ScoreJob) -> anyhow::Result<ScoreReport> {
    let as_of = job.as_of.unwrap_or_else(super::today);
    let model = ctx.scoring_model().await?;
    let trigger = job.tick.clone().unwrap_or_else(|| "manual".into());
    let run_id = ctx
        .db
        .start_scoring_run(&model.version, as_of, &trigger)
        .await?;
    let threshold = ctx.config.scoring.risk_threshold;
    let none = ActivitySummary::default();
    let (mut customers, mut at_risk, mut after) = (0usize, 0usize, i64::MIN);
    let mut drift = DriftTally::new(&model);
    loop {
        let page = ctx
            .db
            .customers_active_page(as_of, after, PAGE)
            .await
            .context("loading customers")?;
        let (Some(first), Some(last)) = (page.first().map(|c| c.0), page.last().map(|c| c.0))
        else {
            break;
        };
        let activity = ctx
            .db
            .activity_summaries_between(as_of, first, last)
            .await
            .context("summarising activity")?;
        let ids: Vec<i64> = page.iter().map(|(id, _)| *id).collect();
        let rows: Vec<FeatureRow> = page
            .iter()
            .map(|(id, c)| features_as_of(c, activity.get(id).unwrap_or(&none), as_of))
            .collect();
        drop(activity);
        let scores = score_rows(&model, &ids, &rows);
        drift.add(&model, &rows, &scores);
        at_risk += scores.iter().filter(|s| s.probability >= threshold).count();
        customers += scores.len();
        ctx.db
            .insert_scores(run_id, &model.version, &scores)
            .await
            .context("writing scores")?;
        after = last;
    }
    let (features, score_shares) = drift.finish(&model);
    let warn_at = ctx.config.scoring.psi_warning;
    for f in features.iter().filter(|f| f.psi > warn_at) {
        tracing::warn!(run_id, feature = %f.feature, psi = f.psi, threshold = warn_at, "feature has drifted from the training data");
    }
    if !model.score_profile.is_empty() {
        let psi = drift::psi(&model.score_profile, &score_shares);
        if psi > warn_at {
            tracing::warn!(
                run_id,
                psi,
                threshold = warn_at,
                "scores have drifted from the training data"
            );
        }
    }
    if customers > 0 {
        ctx.db
            .save_drift(run_id, &features, &score_shares)
            .await
            .context("writing drift")?;
    }
    ctx.db.finish_scoring_run(run_id, customers).await?;
    tracing::info!(run_id, model_version = %model.version, %as_of, customers, at_risk, "scored");
    Ok(ScoreReport {
        run_id,
        model_version: model.version,
        as_of,
        customers,
        at_risk,
        risk_threshold: threshold,
    })
}
