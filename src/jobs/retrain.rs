//! The retrain job: trains a challenger on history and promotes it only if it is no worse
//! than the champion on the same latest validation rows, by ROC AUC and top-decile lift.
//! Every decision, either way, goes to the audit log with both sets of numbers.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::JobContext;
use super::train::{HistoryOptions, HistoryTraining, TrainOptions, train_from_history};
use crate::model::ModelArtifact;
use crate::model::evaluation::Evaluation;

pub const QUEUE: &str = "attune.retrain";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainJob {
    pub tick: Option<String>,
}

/// One model's numbers on the shared validation rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub version: String,
    pub auc: Option<f64>,
    pub top_decile_lift: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub promoted: bool,
    pub why: String,
    pub challenger: Measured,
    pub champion: Option<Measured>,
    pub validation_rows: usize,
    pub validation_date: Option<chrono::NaiveDate>,
}

/// The gate, pure: promote when there is no champion, or when the challenger's AUC and
/// top-decile lift are each at least the champion's minus the tolerance.
pub fn gate(
    challenger: &Measured,
    champion: Option<&Measured>,
    auc_tolerance: f64,
    lift_tolerance: f64,
) -> (bool, String) {
    let Some(champ) = champion else {
        return (true, "there is no champion yet".into());
    };
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

fn measure(trained: &HistoryTraining, model: &ModelArtifact) -> Measured {
    let probs: Vec<f64> = model
        .predict_many(&trained.validation_rows)
        .into_iter()
        .map(|p| p.get())
        .collect();
    let e = Evaluation::compute(&trained.validation_labels, &probs, &[]);
    Measured {
        version: model.version.clone(),
        auc: e.metrics.auc,
        top_decile_lift: e.top_decile_lift,
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
    let challenger = measure(trained, &trained.model);
    let champion_measured = champion.as_ref().map(|c| measure(trained, c));
    let r = &ctx.config.retrain;
    let (promoted, why) = gate(
        &challenger,
        champion_measured.as_ref(),
        r.auc_tolerance,
        r.lift_tolerance,
    );
    let decision = Decision {
        promoted,
        why,
        challenger,
        champion: champion_measured,
        validation_rows: trained.validation_rows.len(),
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

pub async fn run(ctx: &JobContext, job: &RetrainJob) -> anyhow::Result<Decision> {
    let t = &ctx.config.training;
    let h = HistoryOptions {
        today: super::today(),
        horizon_days: t.horizon_days,
        observation_months: t.observation_months,
        validation_customer_share: t.validation_customer_share,
        seed: t.seed,
    };
    let opts = TrainOptions::from_config(t);
    let trained = train_from_history(&ctx.db, &*ctx.feature_spec()?, &h, &opts)
        .await
        .context("training a challenger")?;
    let path = t.models_dir.join(format!("{}.json", trained.model.version));
    super::train::write_artifact(&trained.model, &path)?;
    let actor = job
        .tick
        .as_deref()
        .map(|_| "retrain")
        .unwrap_or("retrain (manual)");
    decide(ctx, &trained, actor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(auc: f64, lift: f64) -> Measured {
        Measured {
            version: "v".into(),
            auc: Some(auc),
            top_decile_lift: Some(lift),
        }
    }

    #[test]
    fn gate_promotes_only_a_challenger_no_worse_on_both() {
        assert!(gate(&m(0.8, 3.0), None, 0.0, 0.0).0);
        assert!(gate(&m(0.8, 3.0), Some(&m(0.8, 3.0)), 0.0, 0.0).0);
        assert!(!gate(&m(0.79, 3.5), Some(&m(0.8, 3.0)), 0.0, 0.0).0);
        assert!(gate(&m(0.79, 3.5), Some(&m(0.8, 3.0)), 0.02, 0.0).0);
        let (ok, why) = gate(&m(0.85, 2.0), Some(&m(0.8, 3.0)), 0.0, 0.5);
        assert!(!ok);
        assert!(
            why.contains("top-decile lift") && why.contains("2.0000 vs 3.0000"),
            "{why}"
        );
    }
}
