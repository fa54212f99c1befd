//! The demo: a realistic synthetic population run through one full cycle (pull, train,
//! score, plan), so a new user sees attune work in a minute with nothing but Rust.

pub mod simulate;
pub use attune_core::synth;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::{ActivityEvent, Customer};
use crate::jobs::JobContext;
use crate::jobs::plan::{self, PlanJob, PlanReport};
use crate::jobs::pull::{self, PullJob};
use crate::jobs::score::{self, ScoreJob, ScoreReport};
use crate::jobs::sources::files::FileReport;
use crate::jobs::train::{HistoryOptions, TrainOptions, register, train_from_history};
use crate::model::Metrics;

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub database: String,
    pub today: NaiveDate,
    pub customers: usize,
    pub events: usize,
    pub pulled: Vec<FileReport>,
    pub model_version: String,
    pub model_holdout: Option<Metrics>,
    /// The training run's rolling-origin backtest.
    pub backtest: Option<crate::model::backtest::Backtest>,
    pub training_cutoff: NaiveDate,
    pub score: ScoreReport,
    pub share_at_risk: f64,
    pub plan: PlanReport,
    pub nudges_by_kind: Vec<(String, i64)>,
    pub riskiest: Vec<RiskyCustomer>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RiskyCustomer {
    pub customer: String,
    pub probability: f64,
    pub monthly_charge: f64,
    pub drivers: Vec<String>,
}

/// The demo model's label: churned within this many days of an observation day.
pub const TRAINING_HORIZON_DAYS: u64 = 60;
/// Monthly observation days the demo trains on (its history is a year long).
pub const TRAINING_MONTHS: usize = 6;

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes the population as the CSV files a business would drop in the inbox.
pub fn write_inbox(
    dir: &Path,
    customers: &[Customer],
    events: &[ActivityEvent],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("customers.csv");
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(
        w,
        "customer_id,signup_date,plan,monthly_charge,contract_type,contract_end,first_invoice_due,preferred_channel,consent,churned_on,region,segment"
    )?;
    for c in customers {
        let consent: Vec<&str> = crate::domain::Channel::ALL
            .iter()
            .filter(|ch| c.consent.allows(**ch))
            .map(|ch| ch.as_str())
            .collect();
        let opt = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let attr = |k: &str| {
            c.attributes
                .get(k)
                .map(|v| csv_field(v))
                .unwrap_or_default()
        };
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(c.external_id.as_str()),
            c.signup_date,
            csv_field(&c.plan),
            c.monthly_charge,
            c.contract_type.as_str(),
            opt(c.contract_end),
            opt(c.first_invoice_due),
            c.preferred_channel.as_str(),
            consent.join(";"),
            opt(c.churned_on),
            attr("region"),
            attr("segment"),
        )?;
    }
    w.flush()?;
    let path = dir.join("events.csv");
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(
        w,
        "customer_id,kind,occurred_at,value,source,source_event_id"
    )?;
    for e in events {
        writeln!(
            w,
            "{},{},{},{},{},{}",
            csv_field(e.customer.as_str()),
            crate::domain::Meaning::from_code(e.kind).map_or("unknown", |m| m.as_str()),
            e.occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.value.map(|v| v.to_string()).unwrap_or_default(),
            csv_field(&e.source),
            csv_field(&e.source_event_id),
        )?;
    }
    w.flush()?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Populated {
    pub customers: usize,
    pub events: usize,
    pub seconds: f64,
}

/// Generates a population and stores it directly (no files), in batches: the fastest way
/// to a large database for benchmarks.
pub async fn populate(
    db: &crate::store::Db,
    customers: usize,
    months: u32,
    seed: u64,
    today: NaiveDate,
) -> anyhow::Result<Populated> {
    let started = std::time::Instant::now();
    let opts = synth::SynthOptions {
        customers,
        seed,
        today,
        months,
    };
    let population = synth::generate(&opts);
    for chunk in population.customers.chunks(100_000) {
        db.upsert_customers(chunk).await?;
    }
    let ids = db.customer_ids().await?;
    for chunk in population.events.chunks(200_000) {
        db.ingest_events(&ids, chunk).await?;
    }
    Ok(Populated {
        customers: population.customers.len(),
        events: population.events.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Generates, pulls, trains, scores and plans. `ctx.config.pull.inbox` must name an empty
/// directory the demo may write to.
pub async fn run_cycle(
    ctx: &JobContext,
    customers: usize,
    seed: u64,
    today: NaiveDate,
) -> anyhow::Result<DemoSummary> {
    let started = std::time::Instant::now();
    let inbox: PathBuf = ctx
        .config
        .pull
        .inbox
        .clone()
        .context("the demo needs an inbox directory")?;
    let population = synth::generate(&synth::SynthOptions::new(customers, seed, today));
    tracing::info!(
        customers = population.customers.len(),
        events = population.events.len(),
        "generated population"
    );
    write_inbox(&inbox, &population.customers, &population.events)?;
    let (n_customers, n_events) = (population.customers.len(), population.events.len());
    drop(population);

    let pulled = pull::run(ctx, &PullJob::default())
        .await
        .context("pulling the demo's files")?;

    let mut training = ctx.config.training.clone();
    training.horizon_days = TRAINING_HORIZON_DAYS;
    training.observation_count = TRAINING_MONTHS;
    training.seed = seed;
    let history = HistoryOptions::from_config(&training, ctx.churn().await?, today);
    let opts = TrainOptions {
        seed: Some(seed),
        version: Some(format!("demo-{today}")),
        ..TrainOptions::from_config(&ctx.config.training)
    };
    let kinds = ctx.kinds().await?;
    let trained = train_from_history(
        &ctx.db,
        &kinds,
        &*ctx.feature_spec().await?,
        &history,
        &opts,
    )
    .await
    .context("training the demo model")?;
    let cutoff = trained.window.validation_date.unwrap_or(today);
    register(&ctx.db, &trained.model, Some(&trained.window), true).await?;
    let model = trained.model;
    tracing::info!(version = %model.version, auc = ?model.metrics.as_ref().and_then(|m| m.auc), "trained");

    let score = score::run(
        ctx,
        &ScoreJob {
            tick: Some("demo".into()),
            as_of: Some(today),
            changed_only: false,
        },
    )
    .await?;
    let plan = plan::run(
        ctx,
        &PlanJob {
            run_id: Some(score.run_id),
            as_of: Some(today),
        },
    )
    .await?;

    let mut by_kind: std::collections::BTreeMap<String, i64> = Default::default();
    for (kind, _status, n) in ctx.db.nudge_counts_by_kind().await? {
        *by_kind.entry(kind).or_default() += n;
    }
    let scores = ctx.db.scores_for_run(score.run_id).await?;
    let riskiest = scores
        .iter()
        .take(10)
        .map(|s| RiskyCustomer {
            customer: s.external_id.clone(),
            probability: s.probability,
            monthly_charge: s.monthly_charge,
            drivers: s.drivers.iter().map(|d| d.description.clone()).collect(),
        })
        .collect();
    Ok(DemoSummary {
        database: String::new(),
        today,
        customers: n_customers,
        events: n_events,
        pulled: pulled.files().cloned().collect(),
        model_version: model.version.clone(),
        model_holdout: model.metrics.clone(),
        backtest: model.backtest.clone(),
        training_cutoff: cutoff,
        share_at_risk: if score.customers == 0 {
            0.0
        } else {
            score.at_risk as f64 / score.customers as f64
        },
        score,
        plan,
        nudges_by_kind: by_kind.into_iter().collect(),
        riskiest,
        seconds: started.elapsed().as_secs_f64(),
    })
}
