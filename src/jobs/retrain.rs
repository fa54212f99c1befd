//! The retrain job: trains a challenger on history and promotes it only if it is no worse
//! than the champion on the same latest validation rows, by ROC AUC and top-decile lift.
//! Every decision, either way, goes to the audit log with both sets of numbers.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::JobContext;
use super::train::{HistoryOptions, HistoryTraining, TrainOptions, train_from_history};
use crate::features::FeatureRow;
use crate::model::ModelArtifact;
use crate::model::backtest::{Interval, Scored};

pub const QUEUE: &str = "attune.retrain";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainJob {
    pub tick: Option<String>,
}

/// One model's numbers on the shared test rows, with 95% intervals (customers resampled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub version: String,
    pub auc: Option<f64>,
    pub auc_interval: Option<Interval>,
    pub top_decile_lift: Option<f64>,
    pub lift_interval: Option<Interval>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub promoted: bool,
    pub why: String,
    pub challenger: Measured,
    pub champion: Option<Measured>,
    pub validation_rows: usize,
    pub validation_churners: usize,
    pub validation_date: Option<chrono::NaiveDate>,
}

/// The gate, pure: promote when there is no champion, or when the challenger's AUC and
/// top-decile lift are each at least the champion's minus the tolerance; but never on
/// too few churners (`too_few`, the backtest's warning): then the champion stays and the
/// reason says why.
pub fn gate(
    challenger: &Measured,
    champion: Option<&Measured>,
    auc_tolerance: f64,
    lift_tolerance: f64,
    too_few: Option<&str>,
) -> (bool, String) {
    let Some(champ) = champion else {
        return (
            true,
            match too_few {
                Some(w) => format!("there is no champion yet (note: {w})"),
                None => "there is no champion yet".into(),
            },
        );
    };
    if let Some(w) = too_few {
        return (false, format!("kept the champion without comparing: {w}"));
    }
    let (Some(c_auc), Some(c_lift)) = (challenger.auc, challenger.top_decile_lift) else {
        return (
            false,
            "the challenger could not be measured (one class in the validation rows)".into(),
        );
    };
    let auc_ok = champ.auc.is_none_or(|a| c_auc >= a - auc_tolerance);
    let lift_ok = champ
        .top_decile_lift
        .is_none_or(|l| c_lift >= l - lift_tolerance);
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into());
    let numbers = format!(
        "AUC {c_auc:.4} vs {}, top-decile lift {c_lift:.4} vs {}",
        fmt(champ.auc),
        fmt(champ.top_decile_lift)
    );
    match (auc_ok, lift_ok) {
        (true, true) => (true, format!("no worse than the champion: {numbers}")),
        (false, _) => (
            false,
            format!("AUC worse than the champion's by more than {auc_tolerance}: {numbers}"),
        ),
        (true, false) => (
            false,
            format!(
                "top-decile lift worse than the champion's by more than {lift_tolerance}: {numbers}"
            ),
        ),
    }
}

fn measure(
    trained: &HistoryTraining,
    model: &ModelArtifact,
    rows: &[FeatureRow],
    resamples: usize,
    seed: u64,
) -> Measured {
    let probs: Vec<f64> = model
        .predict_many(rows)
        .into_iter()
        .map(|p| p.get())
        .collect();
    let scored = Scored::new(
        &trained.validation_labels,
        &probs,
        &trained.validation_customers,
    );
    let (auc, auc_interval, top_decile_lift, lift_interval) =
        scored.with_intervals(resamples, seed);
    Measured {
        version: model.version.clone(),
        auc,
        auc_interval,
        top_decile_lift,
        lift_interval,
    }
}

/// Measures a trained challenger against the champion on the challenger's validation rows,
/// registers the challenger, and promotes it if it passes the gate.
pub async fn decide(
    ctx: &JobContext,
    trained: &HistoryTraining,
    actor: &str,
) -> anyhow::Result<Decision> {
    let champion = match ctx.db.champion_model().await? {
        Some(stored) => Some(
            serde_json::from_value::<ModelArtifact>(stored.artifact.0)
                .context("decoding the champion")?,
        ),
        None => None,
    };
    let t = &ctx.config.training;
    let (resamples, seed) = (t.bootstrap_resamples, t.seed);
    let challenger = measure(
        trained,
        &trained.model,
        &trained.validation_rows,
        resamples,
        seed,
    );
    let champion_measured = match &champion {
        None => None,
        Some(c) => {
            // The champion computes its own features (its spec may differ).
            let rows = champion_rows(ctx, trained, c).await?;
            Some(measure(trained, c, &rows, resamples, seed))
        }
    };
    let r = &ctx.config.retrain;
    let (promoted, why) = gate(
        &challenger,
        champion_measured.as_ref(),
        r.auc_tolerance,
        r.lift_tolerance,
        trained.backtest.warning.as_deref(),
    );
    let decision = Decision {
        promoted,
        why,
        challenger,
        champion: champion_measured,
        validation_rows: trained.validation_rows.len(),
        validation_churners: trained.validation_labels.iter().filter(|&&y| y).count(),
        validation_date: trained.window.validation_date,
    };
    super::train::register(&ctx.db, &trained.model, Some(&trained.window), false).await?;
    let detail = serde_json::to_value(&decision)?;
    if promoted {
        ctx.db
            .promote_model(&trained.model.version, actor, &decision.why, &detail)
            .await?;
    } else {
        ctx.db
            .audit(
                actor,
                "model.kept_champion",
                &format!("model:{}", trained.model.version),
                &detail,
            )
            .await?;
    }
    tracing::info!(promoted, why = %decision.why, challenger = %trained.model.version, "retrain decision");
    Ok(decision)
}

/// The champion's features on the challenger's test rows: the same rows when both read
/// the same spec, else computed again with the champion's.
async fn champion_rows(
    ctx: &JobContext,
    trained: &HistoryTraining,
    champion: &ModelArtifact,
) -> anyhow::Result<Vec<FeatureRow>> {
    let spec = super::score::model_spec(ctx, champion).await?;
    if trained.model.training.feature_spec.as_deref() == Some(spec.to_toml().as_str()) {
        return Ok(trained.validation_rows.clone());
    }
    super::train::rows_for(
        &ctx.db,
        &spec,
        &trained.validation_customers,
        &trained.validation_days,
    )
    .await
}

pub async fn run(ctx: &JobContext, job: &RetrainJob) -> anyhow::Result<Decision> {
    let lease = super::lease::Lease::take(ctx, "retrain", "retraining").await?;
    let t = &ctx.config.training;
    let h = HistoryOptions::from_config(t, ctx.churn().await?, super::today());
    let opts = TrainOptions::from_config(t);
    let kinds = ctx.kinds().await?;
    let trained = train_from_history(&ctx.db, &kinds, &*ctx.feature_spec().await?, &h, &opts)
        .await
        .context("training a challenger")?;
    let path = t.models_dir.join(format!("{}.json", trained.model.version));
    super::train::write_artifact(&trained.model, &path)?;
    let actor = job
        .tick
        .as_deref()
        .map(|_| "retrain")
        .unwrap_or("retrain (manual)");
    let decision = decide(ctx, &trained, actor).await;
    lease.release().await;
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(auc: f64, lift: f64) -> Measured {
        Measured {
            version: "v".into(),
            auc: Some(auc),
            auc_interval: None,
            top_decile_lift: Some(lift),
            lift_interval: None,
        }
    }

    #[test]
    fn gate_promotes_only_a_challenger_no_worse_on_both() {
        assert!(gate(&m(0.8, 3.0), None, 0.0, 0.0, None).0);
        assert!(gate(&m(0.8, 3.0), Some(&m(0.8, 3.0)), 0.0, 0.0, None).0);
        assert!(!gate(&m(0.79, 3.5), Some(&m(0.8, 3.0)), 0.0, 0.0, None).0);
        assert!(gate(&m(0.79, 3.5), Some(&m(0.8, 3.0)), 0.02, 0.0, None).0);
        let (ok, why) = gate(&m(0.85, 2.0), Some(&m(0.8, 3.0)), 0.0, 0.5, None);
        assert!(!ok);
        assert!(
            why.contains("top-decile lift") && why.contains("2.0000 vs 3.0000"),
            "{why}"
        );
    }

    #[test]
    fn too_few_churners_keep_the_champion_and_say_why() {
        let few = "only 8 churners among 332 test rows (fewer than 50)";
        let (ok, why) = gate(&m(0.95, 5.0), Some(&m(0.6, 1.2)), 0.0, 0.0, Some(few));
        assert!(!ok, "a better-looking challenger on noise is not promoted");
        assert!(
            why.contains("kept the champion") && why.contains(few),
            "{why}"
        );
        // With no champion there is nothing to keep.
        let (ok, why) = gate(&m(0.5, 1.0), None, 0.0, 0.0, Some(few));
        assert!(ok && why.contains(few), "{why}");
    }
}
