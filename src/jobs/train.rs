//! Building training sets and fitting models: from a CSV export (the Telco data) or from
//! attune's own history, point in time (features as of a cut-off day, label = churned in
//! the horizon after it, so nothing known only after the cut-off leaks in).

use std::path::Path;

use anyhow::Context as _;
use chrono::{Days, NaiveDate, Utc};

use crate::features::{ActivitySummary, FeatureRow, features_as_of};
use crate::ingest::{self, CustomerPreset, Format};
use crate::model::{self, FitOptions, ModelArtifact};
use crate::store::Db;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub holdout: Option<f64>,
    pub seed: Option<u64>,
    pub version: Option<String>,
}

fn fit_options(source: &str, opts: &TrainOptions, as_of: Option<NaiveDate>) -> FitOptions {
    let now = Utc::now();
    let version = opts.version.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            source.replace(['/', '.', ' '], "-"),
            now.format("%Y%m%dT%H%M%SZ")
        )
    });
    let mut fo = FitOptions::new(version, now, env!("CARGO_PKG_VERSION"), source);
    fo.holdout = opts.holdout;
    fo.seed = opts.seed.or(opts.holdout.map(|_| 0));
    fo.as_of = as_of;
    fo
}

/// Reads a customer CSV as a training set: the Telco export (`Churn` is the label) or a
/// standard customers file (a non-empty `churned_on` is the label). Rejected rows are an
/// error: training on a silently filtered file would misstate the data.
pub fn csv_training_set(
    path: &Path,
    preset: CustomerPreset,
    as_of: NaiveDate,
) -> anyhow::Result<(Vec<FeatureRow>, Vec<bool>)> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let parsed = ingest::parse_customers(
        &name,
        std::io::BufReader::new(file),
        Format::from_path(path)?,
        preset,
        as_of,
    )?;
    if !parsed.rejected.is_empty() {
        let shown: Vec<String> = parsed
            .rejected
            .iter()
            .take(10)
            .map(|e| e.to_string())
            .collect();
        anyhow::bail!(
            "{} rows of {name} were rejected; fix them before training:\n{}",
            parsed.rejected.len(),
            shown.join("\n")
        );
    }
    let none = ActivitySummary::default();
    Ok(parsed
        .rows
        .iter()
        .map(|(_, c)| (features_as_of(c, &none, as_of), c.churned_on.is_some()))
        .unzip())
}

/// Trains on a customer CSV (see [`csv_training_set`]).
pub fn train_from_csv(
    path: &Path,
    preset: CustomerPreset,
    as_of: NaiveDate,
    opts: &TrainOptions,
) -> anyhow::Result<ModelArtifact> {
    let (rows, labels) = csv_training_set(path, preset, as_of)?;
    let source = path.file_name().and_then(|n| n.to_str()).unwrap_or("csv");
    Ok(model::fit(
        &rows,
        &labels,
        &fit_options(source, opts, Some(as_of)),
    )?)
}

/// Trains on attune's own history: customers active at `cutoff`, their features as of
/// `cutoff`, labelled by whether they churned within `horizon_days` after it.
pub async fn train_from_store(
    db: &Db,
    cutoff: NaiveDate,
    horizon_days: u64,
    opts: &TrainOptions,
) -> anyhow::Result<ModelArtifact> {
    let customers = db.customers_active_on(cutoff).await?;
    let activity = db.activity_summaries(cutoff).await?;
    let horizon_end = cutoff + Days::new(horizon_days);
    let none = ActivitySummary::default();
    let (rows, labels): (Vec<FeatureRow>, Vec<bool>) = customers
        .iter()
        .map(|(id, c)| {
            let churned = c.churned_on.is_some_and(|d| d > cutoff && d <= horizon_end);
            (
                features_as_of(c, activity.get(id).unwrap_or(&none), cutoff),
                churned,
            )
        })
        .unzip();
    if rows.is_empty() {
        anyhow::bail!("no customers were active on {cutoff}; import customers and events first");
    }
    Ok(model::fit(
        &rows,
        &labels,
        &fit_options("store", opts, Some(cutoff)),
    )?)
}

/// Writes the artifact as pretty JSON, the form people read and diff.
pub fn write_artifact(model: &ModelArtifact, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(model)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Registers a model in the database's registry and, if asked, makes it the champion.
pub async fn register(db: &Db, model: &ModelArtifact, champion: bool) -> anyhow::Result<()> {
    let value = serde_json::to_value(model)?;
    db.save_model(&model.version, &model.training.source, &value, champion)
        .await?;
    Ok(())
}
