//! The scoring job: every active customer's churn probability as of a day, with the top
//! three drivers of each, written as one scoring run.

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::JobContext;
use crate::features::{ActivitySummary, features_as_of};
use crate::store::NewScore;

pub const QUEUE: &str = "attune.score";

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

pub async fn run(ctx: &JobContext, job: &ScoreJob) -> anyhow::Result<ScoreReport> {
    let as_of = job.as_of.unwrap_or_else(super::today);
    let model = ctx.scoring_model().await?;
    let trigger = job.tick.clone().unwrap_or_else(|| "manual".into());
    let run_id = ctx
        .db
        .start_scoring_run(&model.version, as_of, &trigger)
        .await?;

    let customers = ctx
        .db
        .customers_active_on(as_of)
        .await
        .context("loading customers")?;
    let activity = ctx
        .db
        .activity_summaries(as_of)
        .await
        .context("summarising activity")?;
    let none = ActivitySummary::default();
    let threshold = ctx.config.scoring.risk_threshold;
    let mut at_risk = 0;
    let scores: Vec<NewScore> = customers
        .iter()
        .map(|(id, customer)| {
            let row = features_as_of(customer, activity.get(id).unwrap_or(&none), as_of);
            let p = model.predict(&row).get();
            if p >= threshold {
                at_risk += 1;
            }
            NewScore {
                customer_id: *id,
                probability: p,
                drivers: serde_json::to_value(model.drivers(&row, 3)).unwrap_or_default(),
            }
        })
        .collect();
    ctx.db
        .finish_scoring_run(run_id, &model.version, &scores)
        .await
        .context("writing scores")?;
    tracing::info!(run_id, model_version = %model.version, %as_of, customers = scores.len(), at_risk, "scored");
    Ok(ScoreReport {
        run_id,
        model_version: model.version,
        as_of,
        customers: scores.len(),
        at_risk,
        risk_threshold: threshold,
    })
}
