//! `attune models`: the registry for data teams: versions, the champion, promotion,
//! rollback and the HTML report.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::output::Printer;
use crate::config::Config;
use crate::model::ModelArtifact;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every registered model, newest first, with its metrics; the champion is marked.
    List,
    /// One model in full (its artifact as JSON).
    Show { version: String },
    /// Make VERSION the champion.
    Promote {
        version: String,
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "promoted by hand")]
        reason: String,
    },
    /// Restore the champion before the current one.
    Rollback {
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "rolled back by hand")]
        reason: String,
    },
    /// The promotion history, newest first.
    History {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Write an HTML report (SVG plots) for VERSION; with --json print its numbers instead.
    Report {
        version: String,
        /// Where to write the HTML; default [training] models_dir/VERSION.html.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train a challenger now and promote it only if it passes the retrain gate.
    Retrain,
    /// Population stability index of each feature (and of the scores) in a scoring run
    /// against the model's training data; the latest run by default.
    Drift {
        #[arg(long)]
        run: Option<i64>,
    },
}

fn decode(stored: &crate::store::StoredModel) -> anyhow::Result<ModelArtifact> {
    serde_json::from_value(stored.artifact.0.clone())
        .with_context(|| format!("decoding model {} from the registry", stored.version))
}

pub async fn run(config: &Config, cmd: ModelsCommand, out: &Printer) -> anyhow::Result<()> {
    let db = super::open(config).await?;
    match cmd {
        ModelsCommand::List => {
            let models = db.models().await?;
            if out.json {
                let rows: Vec<serde_json::Value> = models
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "version": m.version, "champion": m.is_champion, "created_at": m.created_at,
                            "source": m.source, "data_window": m.data_window, "feature_spec_hash": m.feature_spec_hash,
                            "metrics": m.artifact.0.get("metrics"),
                        })
                    })
                    .collect();
                return out.message(&serde_json::Value::Array(rows), "");
            }
            if models.is_empty() {
                println!("no models registered; train one with `attune train`");
            }
            for m in &models {
                let auc = m
                    .artifact
                    .0
                    .pointer("/metrics/auc")
                    .and_then(|v| v.as_f64());
                println!(
                    "{} {:<36} {:<10} AUC {:<7} window {:<24} features {}",
                    if m.is_champion { "*" } else { " " },
                    m.version,
                    m.source,
                    auc.map(|a| format!("{a:.4}"))
                        .unwrap_or_else(|| "n/a".into()),
                    m.data_window.as_deref().unwrap_or("-"),
                    m.feature_spec_hash.as_deref().unwrap_or("-"),
                );
            }
            Ok(())
        }
        ModelsCommand::Show { version } => {
            let stored = db.model(&version).await?.with_context(|| {
                format!("no model {version:?}; `attune models list` shows them")
            })?;
            println!("{}", serde_json::to_string_pretty(&stored.artifact.0)?);
            Ok(())
        }
        ModelsCommand::Promote {
            version,
            by,
            reason,
        } => {
            let previous = db
                .promote_model(&version, &super::actor(by), &reason, &serde_json::json!({}))
                .await?;
            out.message(
                &serde_json::json!({"champion": version, "previous": previous}),
                &format!(
                    "{version} is the champion (was {})",
                    previous.as_deref().unwrap_or("none")
                ),
            )
        }
        ModelsCommand::Rollback { by, reason } => {
            let (restored, replaced) = db.rollback_model(&super::actor(by), &reason).await?;
            out.message(
                &serde_json::json!({"champion": restored, "replaced": replaced}),
                &format!("{restored} is the champion again (replacing {replaced})"),
            )
        }
        ModelsCommand::History { limit } => {
            let rows = db.promotions(limit).await?;
            if out.json {
                return out.message(&serde_json::to_value(&rows)?, "");
            }
            for p in rows {
                let at = chrono::DateTime::from_timestamp(p.at, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                println!(
                    "{at}  {:<30} <- {:<30} by {:<12} {}",
                    p.version,
                    p.previous_version.as_deref().unwrap_or("-"),
                    p.actor,
                    p.reason
                );
            }
            Ok(())
        }
        ModelsCommand::Report { version, out: path } => {
            let stored = db.model(&version).await?.with_context(|| {
                format!("no model {version:?}; `attune models list` shows them")
            })?;
            let model = decode(&stored)?;
            let eval = model
                .evaluation
                .as_ref()
                .with_context(|| format!("model {version} was trained without held-out rows, so there is nothing to report; train with --holdout or from history"))?;
            if out.json {
                return out.message(&crate::report::report_json(&model, eval), "");
            }
            let path =
                path.unwrap_or_else(|| config.training.models_dir.join(format!("{version}.html")));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let html = crate::report::render_html(&model, eval, &format!("attune model {version}"));
            std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
            println!("report written to {}", path.display());
            Ok(())
        }
        ModelsCommand::Drift { run } => {
            let run = match run {
                Some(id) => db
                    .scoring_run(id)
                    .await?
                    .with_context(|| format!("no scoring run {id}"))?,
                None => db
                    .latest_scoring_run()
                    .await?
                    .context("no finished scoring run yet; run `attune score`")?,
            };
            let rows = db.drift_for_run(run.id).await?;
            let scores = db.score_distribution(run.id).await?;
            let model = db
                .model(&run.model_version)
                .await?
                .map(|m| decode(&m))
                .transpose()?;
            let score_psi = match (&model, &scores) {
                (Some(m), Some(s)) if !m.score_profile.is_empty() => {
                    Some(crate::model::drift::psi(&m.score_profile, s))
                }
                _ => None,
            };
            if out.json {
                return out.message(
                    &serde_json::json!({"run": run, "score_psi": score_psi, "features": rows}),
                    "",
                );
            }
            let warn_at = config.scoring.psi_warning;
            println!(
                "scoring run {} ({} as of {}), model {}:",
                run.id, run.customers, run.as_of, run.model_version
            );
            if let Some(p) = score_psi {
                println!(
                    "  scores               PSI {p:.4}{}",
                    if p > warn_at { "  <- drifted" } else { "" }
                );
            }
            if rows.is_empty() {
                println!("  no feature profiles: the model was trained before attune kept them");
            }
            for r in &rows {
                println!(
                    "  {:<28} PSI {:.4}{}",
                    r.feature,
                    r.psi,
                    if r.psi > warn_at { "  <- drifted" } else { "" }
                );
            }
            Ok(())
        }
        ModelsCommand::Retrain => {
            let ctx = crate::jobs::JobContext::new(db, config.clone());
            let d = crate::jobs::retrain::run(&ctx, &crate::jobs::retrain::RetrainJob::default())
                .await?;
            out.message(
                &serde_json::to_value(&d)?,
                &format!(
                    "challenger {} {}: {}",
                    d.challenger.version,
                    if d.promoted {
                        "promoted"
                    } else {
                        "not promoted"
                    },
                    d.why
                ),
            )
        }
    }
}
