//! Building training sets and fitting models: from a CSV export (the Telco data) or from
//! attune's own history, point in time (features as of a cut-off day, label = churned in
//! the horizon after it, so nothing known only after the cut-off leaks in).

use crate::domain::money::grouped;
use std::path::Path;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};

use crate::domain::{EventKinds, KindCode, KindSet};
use crate::features::churn::ChurnDefinition;
use crate::features::{
    Activity, FeatureRow, FeatureSpec, Lookback, compute, compute_values, day_number,
};
use crate::ingest::{self, CustomerPreset};
use crate::model::backtest::{self, Backtest};
use crate::model::dataset::{self, DaySeries, Observation, TrainingWindow};
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
    pub solver: model::Solver,
    /// Where training from history says how far it has got.
    pub progress: super::progress::Reporter,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            holdout: None,
            seed: None,
            version: None,
            class_weight: ClassWeight::None,
            capacities: vec![100, 500, 1000],
            solver: model::Solver::Attune,
            progress: Default::default(),
        }
    }
}

impl TrainOptions {
    /// The `[training]` settings that shape a fit.
    pub fn from_config(t: &crate::config::Training) -> Self {
        Self {
            seed: Some(t.seed),
            class_weight: t.class_weight,
            capacities: t.capacities.clone(),
            ..Self::default()
        }
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
    fo.solver = opts.solver;
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
    let (file, format) = ingest::open(path)?;
    let parsed = ingest::parse_customers(&name, file, format, preset, as_of)?;
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
/// (numbers standardised, text one-hot) but for the split, group, ignored and identifier
/// columns. The test rows are the team's own (`split_column`), a random holdout that keeps
/// each group on one side (`group_column`), or a stratified random holdout. Rejected rows
/// are an error, as for customer files.
pub fn train_from_table(
    path: &Path,
    table_opts: &ingest::table::TableOptions,
    opts: &TrainOptions,
) -> anyhow::Result<ModelArtifact> {
    let name = path.display().to_string();
    let table = ingest::table::read_table(path, table_opts)?;
    refuse_rejected(&name, &table.rejected)?;
    if !table.identifiers.is_empty() {
        tracing::info!(columns = ?table.identifiers, "left out columns that identify rows (identifiers)");
    }
    let mut test_rows = None;
    if let Some(test) = &table.test {
        test_rows = Some(
            test.iter()
                .enumerate()
                .filter(|(_, t)| **t)
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
        );
    } else if let (Some(groups), Some(h)) = (&table.groups, opts.holdout) {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let (_, test) = ingest::table::group_split(&groups, h, opts.seed.unwrap_or_default());
        test_rows = Some(test);
    }
    let mut not_features: Vec<String> = std::iter::once(table_opts.target.clone())
        .chain(table_opts.split_column.clone())
        .chain(table_opts.group_column.clone())
        .chain(table_opts.ignore.iter().cloned())
        .chain(table.identifiers.iter().cloned())
        .collect();
    not_features.dedup();
    let source = path.file_name().and_then(|n| n.to_str()).unwrap_or("table");
    let mut fo = fit_options(source, opts, None);
    fo.test_rows = test_rows;
    let mut model = model::fit_frame(&table.frame, &table.labels, &fo)?;
    model.training.not_features = not_features;
    Ok(model)
}

/// Observations of every customer who is a customer on each of `dates` (as `churn`
/// defines it): the features known that day (from the rollups of the days before it) and
/// whether they churned within the horizon after it. Each customer's rollups are read once
/// for all the days.
pub async fn history_observations(
    db: &Db,
    spec: &FeatureSpec,
    churn: &ChurnDefinition,
    dates: &[NaiveDate],
) -> anyhow::Result<Observations> {
    history_observations_of(
        db,
        spec,
        churn,
        dates,
        &super::progress::Reporter::default(),
        None,
    )
    .await
}

/// Observations and their features: row `i` of `frame` is `obs[i]`'s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observations {
    pub obs: Vec<Observation>,
    pub frame: model::Frame,
}

/// Customers read at a time with their activity when observations are made: memory holds
/// a page of customers, not all of them (a million customers with their attributes take
/// about 700 MB).
const HISTORY_PAGE: i64 = 50_000;

/// Observations of every customer, a page of customers at a time; `guard`, when given,
/// sees every customer once, in id order, as the attributes' guard of the whole population
/// would.
async fn history_observations_of(
    db: &Db,
    spec: &FeatureSpec,
    churn: &ChurnDefinition,
    dates: &[NaiveDate],
    progress: &super::progress::Reporter,
    mut guard: Option<&mut crate::features::auto::AttributeGuard>,
) -> anyhow::Result<Observations> {
    let Some(&last) = dates.iter().max() else {
        return Ok(Observations::default());
    };
    // Days stored before the rollups' blocks existed get them once (SQLite).
    db.seal_rollup_days()
        .await
        .context("building the rollups' blocks")?;
    // Labels look at the horizon after each day (an inactivity label at its events).
    let read_until = churn.label_known_by(last);
    let none = Activity::default();
    let mut obs = Vec::new();
    // Each observation's features go into the columns as they are computed: no row kept.
    let mut frame = model::frame::FrameBuilder::default();
    let order = crate::features::NamedOrder::new(spec);
    let mut values = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = db.customers_page(after, HISTORY_PAGE).await?;
        let (Some(first), Some(last_id)) = (page.first(), page.last()) else {
            break;
        };
        after = last_id.0;
        if let Some(g) = guard.as_deref_mut() {
            for (_, c) in &page {
                g.add(c);
            }
        }
        let activity = db
            .activity_between(
                first.0,
                last_id.0,
                day_number(read_until),
                &Lookback::everything(),
            )
            .await?;
        for &day in dates {
            for (id, c) in &page {
                let a = activity.get(id).unwrap_or(&none);
                if churn.is_active_on(c, a, day) {
                    // The values `compute` names, entered in its map's order.
                    compute_values(spec, c, a, day, &mut values);
                    frame.push_entries(&mut |put| order.for_each(spec, c, &values, put));
                    obs.push(Observation {
                        customer_id: *id,
                        as_of: day,
                        label: churn.label(c, a, day),
                    });
                }
            }
        }
        progress.advance(page.len() as u64);
    }
    // Day by day, as the split expects.
    let mut order: Vec<usize> = (0..obs.len()).collect();
    order.sort_by_key(|&i| (obs[i].as_of, obs[i].customer_id));
    let frame = frame.finish().gather(&order);
    let obs = order.iter().map(|&i| obs[i].clone()).collect();
    Ok(Observations { obs, frame })
}

/// Settings for training on history (the `[training]` and `[churn]` config sections).
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    pub today: NaiveDate,
    pub churn: ChurnDefinition,
    pub days: DaySeries,
    /// How many days of the series (the latest whose horizon has ended).
    pub count: usize,
    pub validation_customer_share: f64,
    pub seed: u64,
    /// Rolling origins of the backtest.
    pub backtest_days: usize,
    pub min_test_churners: usize,
    pub bootstrap_resamples: usize,
}

impl HistoryOptions {
    /// The options `[training]` gives, as of `today`.
    pub fn from_config(
        t: &crate::config::Training,
        churn: ChurnDefinition,
        today: NaiveDate,
    ) -> Self {
        Self {
            today,
            churn,
            days: match &t.observation_days {
                crate::config::ObservationDays::Dates(d) => DaySeries::Dates(d.clone()),
                crate::config::ObservationDays::Every(crate::config::DayEvery::WeekStart) => {
                    DaySeries::WeekStarts
                }
                crate::config::ObservationDays::Every(crate::config::DayEvery::MonthStart) => {
                    DaySeries::MonthStarts
                }
            },
            count: t.observation_count,
            validation_customer_share: t.validation_customer_share,
            seed: t.seed,
            backtest_days: t.backtest_days,
            min_test_churners: t.min_test_churners,
            bootstrap_resamples: t.bootstrap_resamples,
        }
    }
}

/// A model trained on history, with its backtest and the test rows it was measured on, so
/// another model (the champion) can be measured on exactly the same rows.
#[derive(Debug, Clone)]
pub struct HistoryTraining {
    pub model: ModelArtifact,
    pub window: TrainingWindow,
    pub backtest: Backtest,
    /// The test side of every backtest day: customers never trained on.
    pub validation_rows: Vec<FeatureRow>,
    pub validation_labels: Vec<bool>,
    pub validation_customers: Vec<i64>,
    pub validation_days: Vec<NaiveDate>,
    /// Every observation: (customer row id, day, label, on the test side).
    pub observations: Vec<(i64, NaiveDate, bool, bool)>,
}

/// Writes every observation of a training run as CSV (`customer_id,as_of,label,side`,
/// side `train` or `test`), so another tool can be measured on exactly the same rows.
pub async fn write_observations(
    db: &Db,
    trained: &HistoryTraining,
    path: &Path,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let ids: std::collections::HashMap<i64, String> = db
        .customer_id_map()
        .await?
        .into_iter()
        .map(|(external, id)| (id, external))
        .collect();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "customer_id,as_of,label,side")?;
    for (id, day, label, test) in &trained.observations {
        let external = ids.get(id).map(String::as_str).unwrap_or_default();
        let quoted = if external.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", external.replace('"', "\"\""))
        } else {
            external.to_owned()
        };
        writeln!(
            w,
            "{quoted},{day},{},{}",
            u8::from(*label),
            if *test { "test" } else { "train" }
        )?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// The features `spec` gives `customers[i]` as of `days[i]` (another model's view of the
/// same observations).
pub async fn rows_for(
    db: &Db,
    spec: &FeatureSpec,
    customers: &[i64],
    days: &[NaiveDate],
) -> anyhow::Result<Vec<FeatureRow>> {
    let Some(last) = days.iter().max() else {
        return Ok(Vec::new());
    };
    let mut ids = customers.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let records: std::collections::HashMap<i64, crate::domain::Customer> =
        db.customers_with_ids(&ids).await?.into_iter().collect();
    let activity = db
        .activity_of(&ids, day_number(*last), &Lookback::everything())
        .await?;
    let none = Activity::default();
    customers
        .iter()
        .zip(days)
        .map(|(id, day)| {
            let c = records
                .get(id)
                .with_context(|| format!("customer row {id} is gone"))?;
            Ok(compute(spec, c, activity.get(id).unwrap_or(&none), *day))
        })
        .collect()
}

/// The spec a model is trained on from history: auto features derived for the kinds the
/// data holds, attributes guarded. Returns what the guard left out.
/// The kinds the data holds and those with values, for deriving auto features.
async fn kinds_present(db: &Db, spec: &FeatureSpec) -> anyhow::Result<(Vec<KindCode>, KindSet)> {
    let counts = if spec.auto {
        db.kind_counts().await?
    } else {
        Vec::new()
    };
    let present: Vec<_> = counts
        .iter()
        .filter(|c| c.events > 0)
        .map(|c| c.code)
        .collect();
    let valued: KindSet = counts.iter().filter(|c| c.valued).map(|c| c.code).collect();
    Ok((present, valued))
}

/// Trains point in time from history: observations on the configured days (never before
/// the first day of imported activity), labels as the churn definition says, customers
/// split once into a training and a test side, a rolling-origin backtest of the latest
/// days, and the model itself trained on the training side of every day.
pub async fn train_from_history(
    db: &Db,
    kinds: &EventKinds,
    spec: &FeatureSpec,
    h: &HistoryOptions,
    opts: &TrainOptions,
) -> anyhow::Result<HistoryTraining> {
    let horizon = h.churn.horizon_days();
    let first_activity = db
        .first_rollup_day()
        .await?
        .map(|d| crate::features::day_from_number(d as i32));
    let (dates, before_history) =
        dataset::observation_days(&h.days, h.today, horizon as u64, h.count, first_activity);
    let progress = &opts.progress;
    progress.stage(
        &format!("features on {} observation days", dates.len()),
        "customers",
    );
    // One pass over the customers: with `attributes = "all"`, every attribute is computed
    // while the guard sees the customers, and the attributes it leaves out are dropped
    // after (feature names cannot contain the attributes' `.`, so no other column goes).
    let (present, valued) = kinds_present(db, spec).await?;
    let derived = crate::features::auto::derive(spec, kinds, &present, &valued);
    let mut guard = crate::features::auto::guards_attributes(spec)
        .then(crate::features::auto::AttributeGuard::default);
    let Observations { obs, mut frame } =
        history_observations_of(db, &derived, &h.churn, &dates, progress, guard.as_mut()).await?;
    let (spec, left_out) = crate::features::auto::for_training(
        spec,
        kinds,
        &present,
        &valued,
        guard.unwrap_or_default(),
    );
    frame.retain_columns(|name| spec.defines(name));
    if !left_out.is_empty() {
        tracing::info!(left_out = ?left_out, "customer attributes left out of the features");
    }
    let share = h.validation_customer_share;
    let test_side = |o: &Observation| dataset::is_validation_customer(o.customer_id, h.seed, share);
    let origins = backtest::origins(&dates, horizon, h.backtest_days);
    let train_all: Vec<usize> = (0..obs.len()).filter(|&i| !test_side(&obs[i])).collect();
    // The rows measured: the test side of each origin (of the latest day without one).
    let test_days: Vec<NaiveDate> = if origins.is_empty() {
        dates.last().copied().into_iter().collect()
    } else {
        origins.iter().map(|(d, _)| *d).collect()
    };
    let validation: Vec<usize> = (0..obs.len())
        .filter(|&i| test_side(&obs[i]) && test_days.contains(&obs[i].as_of))
        .collect();
    if train_all.is_empty() || validation.is_empty() {
        anyhow::bail!(
            "not enough history to train: {} observations on {} days ({}..{}), {} on the training side and {} to test on; import more history, or set [training] observation_days or observation_count{}",
            obs.len(),
            dates.len(),
            dates.first().map(|d| d.to_string()).unwrap_or_default(),
            dates.last().map(|d| d.to_string()).unwrap_or_default(),
            train_all.len(),
            validation.len(),
            if before_history.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} days of the series fall before the first imported activity, {})",
                    before_history.len(),
                    first_activity.map(|d| d.to_string()).unwrap_or_default()
                )
            }
        );
    }
    let mut window = dataset::window(
        &obs,
        &dates,
        horizon as u64,
        train_all.len(),
        validation.len(),
        share,
    );
    window.days_before_history = before_history;
    window.churn_definition = h.churn.describe();
    let fit_opts = |validation_date: Option<NaiveDate>| {
        let mut fo = fit_options(
            "history",
            &TrainOptions {
                holdout: None,
                ..opts.clone()
            },
            validation_date,
        );
        fo.seed = Some(h.seed);
        fo
    };
    let labels_of = |idx: &[usize]| -> Vec<bool> { idx.iter().map(|&i| obs[i].label).collect() };

    // The backtest: each origin tested by a model of the days known by then.
    struct ScoredOrigin {
        day: NaiveDate,
        trained_on: Vec<NaiveDate>,
        train_rows: usize,
        labels: Vec<bool>,
        scores: Vec<f64>,
        customers: Vec<i64>,
    }
    let mut scored: Vec<ScoredOrigin> = Vec::new();
    progress.stage(
        &format!(
            "backtest: a model per origin day ({} of them)",
            origins.len()
        ),
        "models fitted",
    );
    for (origin, known) in &origins {
        let train: Vec<usize> = train_all
            .iter()
            .copied()
            .filter(|&i| known.contains(&obs[i].as_of))
            .collect();
        let test: Vec<usize> = validation
            .iter()
            .copied()
            .filter(|&i| obs[i].as_of == *origin)
            .collect();
        let labels = labels_of(&train);
        let positives = labels.iter().filter(|&&y| y).count();
        if test.is_empty() || positives == 0 || positives == labels.len() {
            tracing::info!(%origin, train = train.len(), positives, test = test.len(), "backtest day skipped: one class or no rows");
            continue;
        }
        let m = model::fit_frame_rows(&frame, &train, &labels, &fit_opts(Some(*origin)))
            .with_context(|| format!("training the backtest model for {origin}"))?;
        progress.advance(1);
        let test_labels = labels_of(&test);
        let probs: Vec<f64> = m.predict_frame(&frame, &test);
        let customers: Vec<i64> = test.iter().map(|&i| obs[i].customer_id).collect();
        scored.push(ScoredOrigin {
            day: *origin,
            trained_on: known.clone(),
            train_rows: train.len(),
            labels: test_labels,
            scores: probs,
            customers,
        });
    }

    // The model itself: the training side of every day.
    progress.stage(
        &format!(
            "fitting the model on {} observations",
            grouped(train_all.len() as f64, 0)
        ),
        "",
    );
    let labels = labels_of(&train_all);
    let mut model = model::fit_frame_rows(
        &frame,
        &train_all,
        &labels,
        &fit_opts(window.validation_date),
    )?;
    model.training.feature_spec_hash = Some(spec.hash.clone());
    model.training.feature_spec = Some(spec.to_toml());
    model.training.churn = Some(h.churn.describe());
    model.training.left_out = left_out;
    let validation_labels = labels_of(&validation);
    let validation_customers: Vec<i64> = validation.iter().map(|&i| obs[i].customer_id).collect();
    let validation_days: Vec<NaiveDate> = validation.iter().map(|&i| obs[i].as_of).collect();
    let probs: Vec<f64> = model.predict_frame(&frame, &validation);
    let evaluation = Evaluation::compute(&validation_labels, &probs, &opts.capacities);
    model.metrics = Some(evaluation.metrics.clone());
    model.evaluation = Some(evaluation);
    model.training.test_rows = Some(validation.len());
    let validation_rows: Vec<FeatureRow> = validation.iter().map(|&i| frame.row(i)).collect();
    drop(frame);

    // Without an origin (a single day, or one class before it), the backtest is the
    // model's own test side.
    if scored.is_empty() {
        let day = window.validation_date.unwrap_or(h.today);
        scored.push(ScoredOrigin {
            day,
            trained_on: dates.iter().copied().filter(|d| *d <= day).collect(),
            train_rows: train_all.len(),
            labels: validation_labels.clone(),
            scores: probs,
            customers: validation_customers.clone(),
        });
    }
    let origin_rows: Vec<backtest::OriginRows<'_>> = scored
        .iter()
        .map(|s| backtest::OriginRows {
            day: s.day,
            trained_on: s.trained_on.clone(),
            train_rows: s.train_rows,
            labels: &s.labels,
            scores: &s.scores,
            customers: &s.customers,
        })
        .collect();
    let design = format!(
        "{} observation days ({}), customers split once by id: {:.0}% only ever tested on; each of the latest {} days tested by a model trained on the days whose {}-day labels were known by then",
        dates.len(),
        window.span(),
        share * 100.0,
        origin_rows.len(),
        horizon
    );
    progress.stage("backtest: bootstrap intervals", "");
    let bt = backtest::summarize(
        &origin_rows,
        h.min_test_churners,
        h.bootstrap_resamples,
        h.seed,
        design,
    );
    if let Some(w) = &bt.warning {
        tracing::warn!(warning = %w, "backtest");
    }
    let observations = obs
        .iter()
        .map(|o| (o.customer_id, o.as_of, o.label, test_side(o)))
        .collect();
    model.backtest = Some(bt.clone());
    Ok(HistoryTraining {
        model,
        window,
        backtest: bt,
        validation_rows,
        validation_labels,
        validation_customers,
        validation_days,
        observations,
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
