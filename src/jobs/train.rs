//! Building training sets and fitting models: from a CSV export (the Telco data) or from
//! attune's own history, point in time (features as of a cut-off day, label = churned in
//! the horizon after it, so nothing known only after the cut-off leaks in).

use std::path::Path;

use anyhow::Context as _;
use chrono::{Days, NaiveDate, Utc};

use crate::features::{Activity, FeatureRow, FeatureSpec, Lookback, compute, day_number};
use crate::ingest::{self, CustomerPreset, Format};
use crate::model::dataset::{self, Observation, TrainingWindow};
use crate::model::evaluation::Evaluation;
use crate::model::optim::ClassWeight;
use crate::model::{self, FitOptions, ModelArtifact};
use crate::store::Db;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub holdout: Option<f64>,
    pub seed: Option<u64>,
    pub version: Option<String>,
    pub class_weight: ClassWeight,
    /// Top-k sizes for precision and recall in the evaluation.
    pub capacities: Vec<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            holdout: None,
            seed: None,
            version: None,
            class_weight: ClassWeight::None,
            capacities: vec![100, 500, 1000],
        }
    }
}

impl TrainOptions {
    /// The `[training]` settings that shape a fit.
    pub fn from_config(t: &crate::config::Training) -> Self {
        Self {
            seed: Some(t.seed),
            class_weight: parse_class_weight(&t.class_weight).unwrap_or(ClassWeight::None),
            capacities: t.capacities.clone(),
            ..Self::default()
        }
    }
}

/// `none` or `balanced`.
pub fn parse_class_weight(raw: &str) -> anyhow::Result<ClassWeight> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(ClassWeight::None),
        "balanced" => Ok(ClassWeight::Balanced),
        other => anyhow::bail!("{other:?} is not a class weighting; use none or balanced"),
    }
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
    fo.class_weight = opts.class_weight;
    fo.capacities = opts.capacities.clone();
    fo
}

/// Training on a silently filtered file would misstate the data: any rejected row stops it,
/// and the first ten are shown.
fn refuse_rejected(name: &str, rejected: &[ingest::RowError]) -> anyhow::Result<()> {
    if rejected.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = rejected.iter().take(10).map(|e| e.to_string()).collect();
    anyhow::bail!(
        "{} rows of {name} were rejected; fix them before training:\n{}",
        rejected.len(),
        shown.join("\n")
    )
}

/// Reads a customer CSV as a training set: the Telco export (`Churn` is the label) or a
/// standard customers file (a non-empty `churned_on` is the label). Rejected rows are an
/// error: training on a silently filtered file would misstate the data.
pub fn csv_training_set(
    spec: &FeatureSpec,
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
    refuse_rejected(&name, &parsed.rejected)?;
    let none = Activity::default();
    Ok(parsed
        .rows
        .iter()
        .map(|(_, c)| (compute(spec, c, &none, as_of), c.churned_on.is_some()))
        .unzip())
}

/// Trains on a customer CSV (see [`csv_training_set`]).
pub fn train_from_csv(
    spec: &FeatureSpec,
    path: &Path,
    preset: CustomerPreset,
    as_of: NaiveDate,
    opts: &TrainOptions,
) -> anyhow::Result<ModelArtifact> {
    let (rows, labels) = csv_training_set(spec, path, preset, as_of)?;
    let source = path.file_name().and_then(|n| n.to_str()).unwrap_or("csv");
    let mut model = model::fit(&rows, &labels, &fit_options(source, opts, Some(as_of)))?;
    model.training.feature_spec_hash = Some(spec.hash.clone());
    Ok(model)
}

/// Trains on any exported table: `target` is the 0/1 label, every other column a feature
/// (numbers standardised, text one-hot). Rejected rows are an error, as for customer files.
pub fn train_from_table(
    path: &Path,
    target: &str,
    ignore: &[String],
    opts: &TrainOptions,
) -> anyhow::Result<ModelArtifact> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let table = ingest::table::parse_table(
        &name,
        std::io::BufReader::new(file),
        Format::from_path(path)?,
        target,
        ignore,
    )?;
    refuse_rejected(&name, &table.parsed.rejected)?;
    if !table.identifiers.is_empty() {
        tracing::info!(columns = ?table.identifiers, "left out text columns with a different value in every row (identifiers)");
    }
    let (rows, labels): (Vec<FeatureRow>, Vec<bool>) =
        table.parsed.rows.into_iter().map(|(_, r)| r).unzip();
    let source = path.file_name().and_then(|n| n.to_str()).unwrap_or("table");
    Ok(model::fit(
        &rows,
        &labels,
        &fit_options(source, opts, None),
    )?)
}

/// Observations of every customer active on each of `dates`: the features known that day
/// (from the rollups of the days before it) and whether they churned within
/// `horizon_days` after it. Each customer's rollups are read once for all the days.
pub async fn history_observations(
    db: &Db,
    spec: &FeatureSpec,
    dates: &[NaiveDate],
    horizon_days: u64,
) -> anyhow::Result<Vec<Observation>> {
    let Some(&last) = dates.iter().max() else {
        return Ok(Vec::new());
    };
    let customers = db.all_customers().await?;
    let none = Activity::default();
    let mut obs = Vec::new();
    for page in customers.chunks(50_000) {
        let (Some(first), Some(last_id)) = (page.first(), page.last()) else {
            continue;
        };
        let activity = db
            .activity_between(
                first.0,
                last_id.0,
                day_number(last),
                &Lookback::everything(),
            )
            .await?;
        for &day in dates {
            let horizon_end = day + Days::new(horizon_days);
            obs.extend(
                page.iter()
                    .filter(|(_, c)| c.is_active_on(day))
                    .map(|(id, c)| Observation {
                        customer_id: *id,
                        as_of: day,
                        row: compute(spec, c, activity.get(id).unwrap_or(&none), day),
                        label: c.churned_on.is_some_and(|d| d > day && d <= horizon_end),
                    }),
            );
        }
    }
    // Day by day, as the split expects.
    obs.sort_by_key(|o| (o.as_of, o.customer_id));
    Ok(obs)
}

/// Settings for training on history (the `[training]` config section).
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    pub today: NaiveDate,
    pub horizon_days: u64,
    pub observation_months: usize,
    pub validation_customer_share: f64,
    pub seed: u64,
}

/// A model trained on history, with the validation rows it was measured on so another
/// model (the champion) can be measured on exactly the same rows.
#[derive(Debug, Clone)]
pub struct HistoryTraining {
    pub model: ModelArtifact,
    pub window: TrainingWindow,
    pub validation_rows: Vec<FeatureRow>,
    pub validation_labels: Vec<bool>,
}

/// Trains point in time on month-start observations, validating on the latest day's
/// held-out customers.
pub async fn train_from_history(
    db: &Db,
    spec: &FeatureSpec,
    h: &HistoryOptions,
    opts: &TrainOptions,
) -> anyhow::Result<HistoryTraining> {
    let dates = dataset::observation_dates(h.today, h.horizon_days, h.observation_months);
    let obs = history_observations(db, spec, &dates, h.horizon_days).await?;
    let (train, validation) =
        dataset::split_by_time_and_customer(&obs, h.validation_customer_share, h.seed);
    if train.is_empty() || validation.is_empty() {
        anyhow::bail!(
            "not enough history to train: {} observations on {} days ({}..{}), {} for training and {} for validation; import more history or lower [training] observation_months",
            obs.len(),
            dates.len(),
            dates.first().map(|d| d.to_string()).unwrap_or_default(),
            dates.last().map(|d| d.to_string()).unwrap_or_default(),
            train.len(),
            validation.len()
        );
    }
    let window = dataset::window(
        &obs,
        &dates,
        h.horizon_days,
        train.len(),
        validation.len(),
        h.validation_customer_share,
    );
    // Move each observation to its side of the split instead of cloning its row.
    let mut obs: Vec<Option<Observation>> = obs.into_iter().map(Some).collect();
    let mut take = |idx: &[usize]| -> (Vec<FeatureRow>, Vec<bool>) {
        idx.iter()
            .filter_map(|&i| obs[i].take())
            .map(|o| (o.row, o.label))
            .unzip()
    };
    let (rows, labels) = take(&train);
    let (validation_rows, validation_labels) = take(&validation);
    let mut fo = fit_options(
        "history",
        &TrainOptions {
            holdout: None,
            ..opts.clone()
        },
        window.validation_date,
    );
    fo.seed = Some(h.seed);
    let mut model = model::fit(&rows, &labels, &fo)?;
    model.training.feature_spec_hash = Some(spec.hash.clone());
    let probs: Vec<f64> = model
        .predict_many(&validation_rows)
        .into_iter()
        .map(|p| p.get())
        .collect();
    let evaluation = Evaluation::compute(&validation_labels, &probs, &opts.capacities);
    model.metrics = Some(evaluation.metrics.clone());
    model.evaluation = Some(evaluation);
    Ok(HistoryTraining {
        model,
        window,
        validation_rows,
        validation_labels,
    })
}

/// Writes the artifact as pretty JSON, the form people read and diff.
pub fn write_artifact(model: &ModelArtifact, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(model)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The hash of the feature spec a model was trained on; for older artifacts, a hash of the
/// features it reads (the sources of its columns, sorted).
pub fn feature_spec_hash(model: &ModelArtifact) -> String {
    use sha2::{Digest, Sha256};
    if let Some(h) = &model.training.feature_spec_hash {
        return h.clone();
    }
    let mut sources: Vec<&str> = model.features.iter().map(|f| f.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let digest = Sha256::digest(sources.join("\n").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Registers a model version (with its data window and feature spec hash) and, if asked,
/// makes it the champion, recording the promotion.
pub async fn register(
    db: &Db,
    model: &ModelArtifact,
    window: Option<&TrainingWindow>,
    champion: bool,
) -> anyhow::Result<()> {
    let value = serde_json::to_value(model)?;
    let span = window
        .map(TrainingWindow::span)
        .or_else(|| model.training.as_of.map(|d| d.to_string()));
    db.save_model_version(
        &model.version,
        &model.training.source,
        &value,
        span.as_deref(),
        Some(&feature_spec_hash(model)),
    )
    .await?;
    if champion {
        let detail = serde_json::json!({ "metrics": model.metrics, "window": window });
        db.promote_model(
            &model.version,
            "train",
            "trained and promoted on request",
            &detail,
        )
        .await?;
    }
    Ok(())
}
