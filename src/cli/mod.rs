//! The command line: parses arguments, builds the context, runs one command and prints its
//! result for people or, with `--json`, for scripts. Logic lives in the library modules;
//! this is glue.

mod deliveries;
mod features;
mod models;
mod output;
mod playbook;
mod progress;
mod users;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::domain::{NudgeStatus, RuleName};
use crate::http::views;
use crate::ingest::CustomerPreset;
use crate::jobs::{self, JobContext};
use crate::store::{DatabaseUrl, Db, ShardRow};
use output::Printer;

#[derive(Debug, Parser)]
#[command(
    name = "attune",
    version,
    about = "Scores churn risk and queues early-relationship nudges for review."
)]
pub struct Cli {
    /// Database: a SQLite file path, sqlite://PATH, or postgres://... [default: ./attune.db]
    #[arg(long, global = true, env = "ATTUNE_DATABASE_URL")]
    pub db: Option<DatabaseUrl>,
    /// Config file (TOML); ./attune.toml is read if present.
    #[arg(long, global = true, env = "ATTUNE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr: human or json.
    #[arg(long, global = true)]
    pub log_format: Option<crate::config::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scheduled pull, scoring and planning until Ctrl-C or SIGTERM.
    ///
    /// It takes no options of its own: the schedule, sources, workers and the review desk
    /// come from the config file (--config, else ./attune.toml) and ATTUNE_* variables;
    /// `attune config check` shows them resolved. Use the global --db to pick the database.
    Run,
    /// Create or upgrade the database schema (also done at every start).
    Migrate,
    /// Import customers or activity events from CSV or NDJSON.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Train a churn model and register it.
    Train(TrainArgs),
    /// Score any table (CSV or NDJSON, .gz too) with a model: the churn probability and
    /// top drivers of every row, written as CSV.
    Predict(PredictArgs),
    /// Scoring runs: export one as CSV or Parquet.
    #[command(subcommand)]
    Scores(ScoresCommand),
    /// The event kinds this business records: attune's own and those the config declares,
    /// with what each means to the playbook and how many events of each are stored.
    Kinds,
    /// Score every active customer now.
    Score {
        /// Score as of this day (YYYY-MM-DD); default today.
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Only customers whose activity or record changed since their last score.
        #[arg(long)]
        changed: bool,
    },
    /// Run the playbook over the latest scores and queue nudges for review.
    Plan {
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Use this scoring run instead of the latest.
        #[arg(long)]
        run: Option<i64>,
    },
    /// Review queued nudges.
    #[command(subcommand)]
    Nudges(NudgesCommand),
    /// Approved nudges on their way out: list deliveries, retry a failed or cancelled one,
    /// cancel one that waits.
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCommand),
    /// The playbook: check a file, simulate planning without writing anything.
    #[command(subcommand)]
    Playbook(playbook::PlaybookCommand),
    /// Reports: uplift (does a rule's nudging change churn?).
    #[command(subcommand)]
    Report(playbook::ReportCommand),
    /// The daemon's jobs: executions by kind and status, leases held now, the shards of the
    /// latest scoring run split into shards, and the latest executions with their lag
    /// behind their tick and their errors.
    Jobs {
        /// Only executions of this status: queued, running, succeeded, skipped, failed,
        /// aborted, dead, interrupted or lost.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 30)]
        limit: i64,
    },
    /// Copy the SQLite database to PATH while the daemon keeps running (SQLite's online
    /// `VACUUM INTO`: one consistent snapshot, compacted). PostgreSQL: use pg_dump.
    Backup {
        /// Where to write the copy; must not exist yet.
        path: PathBuf,
    },
    /// Show the audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Generate a synthetic population, run one full cycle, print a summary, then keep
    /// running as the daemon unless --once.
    Demo(DemoArgs),
    /// Check the configuration and explain what is wrong.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Events kept back because their customer is unknown.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The model registry: versions, the champion, promotion, rollback, reports.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// The feature spec: check it, show a customer's features.
    #[command(subcommand)]
    Features(features::FeaturesCommand),
    /// The configured activity sources and where each has got to.
    Sources,
    /// Write a synthetic population as export files (customers and monthly events, in time
    /// order), for benchmarks anyone can reproduce.
    Simulate(SimulateArgs),
    /// The review desk's users and API tokens.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The table to score: a column per feature the model reads.
    #[arg(long)]
    pub csv: PathBuf,
    /// A model version in the registry, or an artifact file.
    #[arg(long)]
    pub model: String,
    /// Where to write the scored rows (CSV).
    #[arg(long)]
    pub out: PathBuf,
    /// The column that identifies a row in the output [default: columns named like an id].
    #[arg(long)]
    pub id_column: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScoresCommand {
    /// Write a scoring run (the latest full run by default) with each customer's id,
    /// probability, model version, as-of day and top drivers.
    Export {
        #[arg(long)]
        out: PathBuf,
        /// csv or parquet [default: from the file's extension, else csv].
        #[arg(long)]
        format: Option<String>,
        /// The scoring run [default: the latest full run].
        #[arg(long)]
        run: Option<i64>,
    },
    /// Remove the scores of runs older than the newest full runs kept (retention; the
    /// runs, their counts and their drift stay). Each full scoring run does this too.
    Prune {
        /// Full runs whose scores to keep [default: [scoring] keep_full_runs].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 10_000)]
    pub customers: usize,
    /// Months of history before --today.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The last day of the history [default: today].
    #[arg(long)]
    pub today: Option<NaiveDate>,
    /// csv or ndjson.
    #[arg(long, default_value = "csv")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Customers (CSV or NDJSON; see the README for columns).
    Customers {
        file: PathBuf,
        /// `telco` reads the IBM Telco churn CSV as shipped.
        #[arg(long, default_value = "standard")]
        preset: CustomerPreset,
    },
    /// Activity events (CSV or NDJSON; see the README for columns).
    Events {
        file: PathBuf,
        /// Read the file as this configured source (its column and kind mapping); the
        /// events' source and quarantine rows carry this name. Default: the file's name.
        #[arg(long)]
        source: Option<String>,
    },
    /// Contacts of business accounts (CSV or NDJSON; see the README for columns).
    Contacts { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train on the database's history (the default): observations at month starts, label
    /// = churned within the horizon, validated on the latest day's held-out customers.
    #[arg(long, conflicts_with = "csv")]
    pub from_db: bool,
    /// Train on a CSV or NDJSON export instead: customers (--preset) or any table (--target).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// How to read --csv customers: standard (churned_on is the label) or telco.
    #[arg(long, default_value = "standard", conflicts_with = "target")]
    pub preset: CustomerPreset,
    /// With --csv: the 0/1 column to predict; every other column is a feature.
    #[arg(long, requires = "csv")]
    pub target: Option<String>,
    /// With --target: columns to leave out (repeatable).
    #[arg(long, requires = "target")]
    pub ignore: Vec<String>,
    /// With --target: the column saying which rows are `train` and which `test` (the
    /// team's own split); nothing else is held out.
    #[arg(long, requires = "target", conflicts_with = "holdout")]
    pub split_column: Option<String>,
    /// With --target and --holdout: a column grouping rows (a customer id): the random
    /// split never puts one group on both sides.
    #[arg(long, requires = "holdout")]
    pub group_column: Option<String>,
    /// With --csv: fraction of rows held out (stratified) to measure the model.
    #[arg(long)]
    pub holdout: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// From the database: the label horizon in days [default: [training] horizon_days].
    #[arg(long)]
    pub horizon_days: Option<u64>,
    /// From the database: how many observation days [default: [training] observation_count].
    #[arg(long, alias = "observations")]
    pub months: Option<usize>,
    /// From the database: write every observation (customer, day, label, side: train or
    /// test) as CSV, so another tool can be measured on exactly the same rows.
    #[arg(long, conflicts_with = "csv")]
    pub write_observations: Option<PathBuf>,
    /// The day training happens as of (observation days end a horizon before it; for --csv,
    /// the day tenure and contract ends are computed as of). Default today.
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    /// `none` or `balanced` [default: [training] class_weight].
    #[arg(long, value_parser = crate::config::parse_class_weight)]
    pub class_weight: Option<crate::model::optim::ClassWeight>,
    /// The solver: `attune` (attune's L-BFGS on every core) or `linfa-logistic` (linfa's,
    /// single threaded; no class weights). Both fit the same penalised log-loss.
    #[arg(long, default_value = "attune", value_parser = clap::builder::PossibleValuesParser::new(crate::model::Solver::NAMES))]
    pub solver: String,
    /// Version label; default SOURCE-TIMESTAMP.
    #[arg(long)]
    pub version: Option<String>,
    /// Where to write the artifact; default [training] models_dir/VERSION.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Register the model without making it the champion.
    #[arg(long)]
    pub no_promote: bool,
    /// With --csv and --holdout: write the row numbers of the train and test split as JSON,
    /// so another tool can be measured on exactly the same split (bench/telco_same_split.py).
    #[arg(long)]
    pub write_split: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum NudgesCommand {
    /// List nudges as the desk's queue does: largest value at risk first, the same filters,
    /// a page at a time, saying how many match.
    List {
        #[command(flatten)]
        filter: QueueArgs,
        /// Nudges per page.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// The page after this cursor (printed under each page that has a next one).
        #[arg(long)]
        after: Option<String>,
    },
    /// Approve proposed nudges.
    Approve {
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Who decides; default $USER.
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject proposed nudges, saying why.
    Reject {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[arg(long, required = true)]
        reason: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Export every nudge the filters select as CSV: the same columns and order as the
    /// desk's export (`/v1/nudges/export.csv`).
    Export {
        #[arg(long)]
        csv: PathBuf,
        #[command(flatten)]
        filter: QueueArgs,
    },
}

/// The desk's queue filters on the command line.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// proposed (default), deferred, approved, rejected, snoozed, withdrawn, expired or holdout.
    #[arg(long, default_value = "proposed")]
    pub status: NudgeStatus,
    /// A playbook rule's name (`--kind` is the same).
    #[arg(long, alias = "kind")]
    pub rule: Option<RuleName>,
    #[arg(long)]
    pub stage: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long)]
    pub risk_band: Option<String>,
    #[arg(long)]
    pub segment: Option<String>,
}

impl QueueArgs {
    fn filter(&self) -> crate::store::QueueFilter {
        crate::store::QueueFilter {
            status: self.status.as_str().to_owned(),
            rule: self.rule.as_ref().map(|r| r.as_str().to_owned()),
            stage: self.stage.clone(),
            channel: self.channel.clone(),
            risk_band: self.risk_band.clone(),
            segment: self.segment.clone(),
            from: None,
            to: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 5000)]
    pub customers: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Stop after the first cycle instead of running as the daemon.
    #[arg(long)]
    pub once: bool,
    /// Months of generated history (with --populate-only; the full demo generates 12).
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    /// Only generate and store the population (no training, scoring or planning), for
    /// benchmarks of the steps that follow.
    #[arg(long)]
    pub populate_only: bool,
    /// Replace an earlier demo database even when people made decisions in it.
    #[arg(long)]
    pub reset: bool,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Events in quarantine, oldest first, with the reason.
    List {
        /// Include events already released.
        #[arg(long)]
        all: bool,
        /// Only this reason: unknown_customer, unknown_kind, bad_timestamp, bad_value,
        /// missing_field or malformed.
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Map every quarantined event again and store those that now pass (a customer
    /// imported since, a kind mapped since in the config).
    Retry,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file and environment) and print it resolved.
    Check,
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(db) = &cli.db {
        config.database_url = db.clone();
    }
    if let Some(f) = &cli.log_format {
        config.log.format = *f;
    }
    config.validate("command line")?;
    Ok(config)
}

/// The configured database, migrated (also what `attune-bench` opens).
pub async fn open(config: &Config) -> anyhow::Result<Db> {
    let url = &config.database_url;
    let db = Db::connect(url).await?;
    db.migrate()
        .await
        .with_context(|| format!("migrating {}", url.redacted()))?;
    Ok(db)
}

pub(crate) fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // `demo` may be told its own database with --db as the examples do.
    let config = load_config(&cli)?;
    crate::telemetry::init(config.log.format, &config.log.filter);
    let out = Printer { json: cli.json };
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            // The playbook file is configuration too: check it with the rest.
            let pb = jobs::plan::load_playbook(config.playbook.file.as_deref())?;
            jobs::plan::check_help_url(&pb, &config.playbook)?;
            // Every configured channel is built (secrets read, rules' channels carried)
            // and its receiver reached: a webhook's host, the SMTP server with its login,
            // the outbox directory.
            if !config.channels.is_empty() {
                let receivers = jobs::deliver::receivers(&config, &|k| std::env::var(k).ok())?;
                for (i, (c, r)) in receivers.iter().enumerate() {
                    let key = match c.kind {
                        crate::config::ChannelType::Webhook => "url",
                        crate::config::ChannelType::Email => "smtp",
                        crate::config::ChannelType::Outbox => "dir",
                    };
                    r.probe()
                        .await
                        .map_err(|m| anyhow::anyhow!("channels[{i}] ({}).{key}: {m}", c.name))?;
                }
            }
            out.config(
                &config,
                &Config::origin(cli.config.as_deref()),
                &config.overridden_by,
            )
        }
        Command::Backup { path } => {
            let db = open(&config).await?;
            let started = std::time::Instant::now();
            let bytes = db.backup_to(&path).await?;
            out.message(
                &serde_json::json!({"path": path, "bytes": bytes, "seconds": started.elapsed().as_secs_f64()}),
                &format!(
                    "wrote a consistent copy of the database to {} ({:.1} MB in {:.1} s); restore by stopping the daemon and putting it in place of the database file",
                    path.display(),
                    bytes as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                ),
            )
        }
        Command::Migrate => {
            let db = open(&config).await?;
            out.message(
                &serde_json::json!({"migrated": true, "backend": db.backend()}),
                &format!("{} schema is up to date", db.backend()),
            )
        }
        Command::Run => {
            let db = open(&config).await?;
            let ctx = JobContext::new(db, config);
            let desk = review_desk(&ctx).await?;
            jobs::daemon::run_serving(ctx, desk, jobs::daemon::shutdown_signal()).await
        }
        Command::Import(cmd) => {
            let db = open(&config).await?;
            let report = match cmd {
                ImportCommand::Customers { file, preset } => {
                    jobs::import::import_customers_file(&db, &file, preset, jobs::today()).await?
                }
                ImportCommand::Events { file, source } => {
                    let ctx =
                        JobContext::new(db, config).with_progress(progress::reporter(out.json));
                    let report =
                        jobs::import::import_events_file(&ctx, &file, source.as_deref()).await;
                    ctx.progress.finish();
                    report?
                }
                ImportCommand::Contacts { file } => {
                    playbook::import_contacts(&config, &file).await?
                }
            };
            out.import(&report)
        }
        Command::Train(args) => train(&config, args, &out).await,
        Command::Predict(args) => {
            let model = load_model_for_predict(&config, &args.model).await?;
            let r = jobs::predict::predict_table(
                &args.csv,
                &model,
                &args.out,
                args.id_column.as_deref(),
            )?;
            if out.json {
                return out.message(&serde_json::to_value(&r)?, "");
            }
            for e in &r.errors {
                eprintln!("rejected: {e}");
            }
            println!(
                "{}: {} rows scored with model {} into {}, {} rejected",
                r.file, r.scored, r.model, r.out, r.rejected
            );
            Ok(())
        }
        Command::Scores(ScoresCommand::Export {
            out: file,
            format,
            run,
        }) => {
            let db = open(&config).await?;
            let format = jobs::predict::ExportFormat::choose(format.as_deref(), &file)?;
            let r = jobs::predict::export_scores(&db, run, &file, format).await?;
            out.message(
                &serde_json::to_value(&r)?,
                &format!(
                    "exported {} scores of run {} (model {}, as of {}) to {} ({})",
                    r.scores, r.run_id, r.model_version, r.as_of, r.file, r.format
                ),
            )
        }
        Command::Scores(ScoresCommand::Prune { keep }) => {
            let db = open(&config).await?;
            let keep = keep.unwrap_or(config.scoring.keep_full_runs);
            let r = jobs::score::prune(&db, keep).await?;
            out.message(
                &serde_json::to_value(&r)?,
                &format!(
                    "pruned {} scoring runs ({} scores removed); the scores of the {} newest full runs are kept",
                    r.runs, r.scores, r.keep_full_runs
                ),
            )
        }
        Command::Kinds => {
            let ctx = JobContext::new(open(&config).await?, config);
            let kinds = ctx.kinds().await?;
            let counts = ctx.db.kind_counts().await?;
            let rows: Vec<serde_json::Value> = kinds
                .iter()
                .map(|k| {
                    let n = counts.iter().find(|c| c.code == k.code);
                    serde_json::json!({
                        "name": k.name, "code": k.code.0,
                        "meaning": k.meaning.map(|m| m.as_str()),
                        "built_in": k.built_in, "accepted": k.accepted,
                        "events": n.map_or(0, |c| c.events),
                        "has_values": n.is_some_and(|c| c.valued),
                    })
                })
                .collect();
            if out.json {
                return out.message(&serde_json::Value::Array(rows), "");
            }
            println!(
                "{:<28} {:>5} {:<24} {:>12}",
                "kind", "code", "means", "events"
            );
            for (k, r) in kinds.iter().zip(&rows) {
                println!(
                    "{:<28} {:>5} {:<24} {:>12}{}",
                    k.name,
                    k.code.0,
                    k.meaning.map_or("nothing", |m| m.as_str()),
                    r["events"],
                    if k.accepted {
                        ""
                    } else {
                        "  (no longer declared: new events go to quarantine)"
                    }
                );
            }
            Ok(())
        }
        Command::Score { as_of, changed } => {
            let ctx = JobContext::new(open(&config).await?, config)
                .with_progress(progress::reporter(out.json));
            let job = jobs::score::ScoreJob {
                tick: None,
                as_of,
                changed_only: changed,
            };
            let report = jobs::score::run(&ctx, &job).await;
            ctx.progress.finish();
            let report = report?;
            out.score(&report)
        }
        Command::Plan { as_of, run } => {
            let ctx = JobContext::new(open(&config).await?, config);
            let report = jobs::plan::run(&ctx, &jobs::plan::PlanJob { run_id: run, as_of }).await?;
            out.plan(&report)
        }
        Command::Nudges(cmd) => nudges(&config, cmd, &out).await,
        Command::Deliveries(cmd) => deliveries::run(&config, cmd, &out).await,
        Command::Jobs { status, limit } => {
            use crate::store::JOB_STATUSES as STATUSES;
            if let Some(s) = status.as_deref()
                && !STATUSES.contains(&s)
            {
                anyhow::bail!("--status {s:?}: expected one of {}", STATUSES.join(", "));
            }
            let db = open(&config).await?;
            let counts = db.job_run_counts().await?;
            let leases = db.live_leases().await?;
            let runs = db.job_runs(status.as_deref(), limit).await?;
            let split = db.latest_split().await?;
            if out.json {
                return out.message(
                    &serde_json::json!({
                        "counts": counts.iter().map(|(k, s, n)| serde_json::json!({"kind": k, "status": s, "count": n})).collect::<Vec<_>>(),
                        "leases": leases,
                        "shards": split,
                        "runs": runs,
                    }),
                    "",
                );
            }
            println!("executions by kind and status:");
            for (kind, status, n) in &counts {
                println!("  {kind:<8} {status:<12} {n:>8}");
            }
            if counts.is_empty() {
                println!("  none yet");
            }
            println!("leases held now:");
            for l in &leases {
                println!(
                    "  {:<16} {} (until {})",
                    l.name,
                    l.holder,
                    fmt_time(l.expires_at)
                );
            }
            if leases.is_empty() {
                println!("  none");
            }
            println!("shards of the latest split scoring run:");
            match &split {
                Some(split) => {
                    println!(
                        "  {}",
                        views::shard_progress(
                            &split.run,
                            split.failed.as_deref(),
                            &split.shards,
                            fmt_time
                        )
                    );
                    for s in split.shards.iter().filter(|s| {
                        matches!(s.status.as_str(), "running" | "failed")
                            || s.attempts > 1
                            || s.error.is_some()
                    }) {
                        println!("  {}", shard_line(s));
                    }
                }
                None => println!("  none yet"),
            }
            println!("latest executions:");
            for r in &runs {
                let lag = r
                    .lag_ms()
                    .map(|l| format!("lag {:.1} s", l as f64 / 1000.0))
                    .unwrap_or_default();
                println!(
                    "  {:>6}  {:<8} {:<12} {}  attempt {}  {}  {}",
                    r.id,
                    r.kind,
                    r.status,
                    r.job_key,
                    r.attempt,
                    lag,
                    r.worker.as_deref().unwrap_or("")
                );
                if let Some(e) = &r.error {
                    println!("          {e}");
                }
                if let Some(at) = r.retry_at {
                    println!("          next attempt at {}", fmt_time(at));
                }
            }
            Ok(())
        }
        Command::Audit { limit } => {
            let db = open(&config).await?;
            out.audit(&db.audit_entries(limit).await?)
        }
        Command::Demo(args) => demo(config, cli.db.is_some(), args, &out).await,
        Command::Models(cmd) => models::run(&config, cmd, &out).await,
        Command::Quarantine(cmd) => {
            let db = open(&config).await?;
            match cmd {
                QuarantineCommand::List { all, reason, limit } => {
                    let rows = db.quarantined(all, reason.as_deref(), limit).await?;
                    if out.json {
                        return out.message(&serde_json::to_value(&rows)?, "");
                    }
                    if rows.is_empty() {
                        println!("nothing in quarantine");
                    }
                    for r in rows {
                        println!(
                            "{:>6}  {}  {}  [{}] {}{}",
                            r.id,
                            r.source,
                            r.location.as_deref().unwrap_or(&r.source_event_id),
                            r.reason_code,
                            r.reason,
                            if r.released_at.is_some() {
                                "  (released)"
                            } else {
                                ""
                            }
                        );
                    }
                    Ok(())
                }
                QuarantineCommand::Retry => {
                    let ctx = JobContext::new(db, config);
                    let o = jobs::sources::retry_quarantine(&ctx).await?;
                    out.message(
                        &serde_json::to_value(o)?,
                        &format!(
                            "{} events stored, {} were already stored, {} stay in quarantine (`attune quarantine list` says why)",
                            o.released, o.duplicate, o.still_quarantined
                        ),
                    )
                }
            }
        }
        Command::Features(cmd) => features::run(&config, cmd, &out).await,
        Command::Sources => {
            let db = open(&config).await?;
            let ctx = JobContext::new(db, config);
            let mut rows = Vec::new();
            for s in jobs::sources::configured(&ctx) {
                let cursor = ctx.db.source_cursor(&s.name).await?;
                rows.push(
                    serde_json::json!({"name": s.name, "type": s.kind, "cursor": cursor,
                    "dir": s.dir, "batch": s.batch}),
                );
            }
            let counts = ctx.db.quarantine_counts().await?;
            if out.json {
                return out.message(
                    &serde_json::json!({"sources": rows, "quarantine": counts}),
                    "",
                );
            }
            if rows.is_empty() {
                println!(
                    "no sources configured: add [[sources]] to attune.toml (see attune.example.toml)"
                );
            }
            for r in &rows {
                println!(
                    "{:<20} {:<6} {}",
                    r["name"].as_str().unwrap_or_default(),
                    r["type"].as_str().unwrap_or_default(),
                    match (&r["cursor"], &r["dir"]) {
                        (serde_json::Value::String(c), _) => format!("cursor {c}"),
                        (_, serde_json::Value::String(d)) => format!("drop directory {d}"),
                        _ => "pushes to POST /v1/events".into(),
                    }
                );
            }
            for (code, n) in counts {
                println!("quarantine: {n} {code} (attune quarantine list --reason {code})");
            }
            Ok(())
        }
        Command::Simulate(args) => {
            let format = match args.format.as_str() {
                "csv" => crate::demo::simulate::FileFormat::Csv,
                "ndjson" => crate::demo::simulate::FileFormat::Ndjson,
                other => bail!("--format {other:?}: use csv or ndjson"),
            };
            let opts = crate::demo::synth::SynthOptions {
                customers: args.customers,
                seed: args.seed,
                today: args.today.unwrap_or_else(jobs::today),
                months: args.months,
            };
            let shown = progress::reporter(out.json);
            let s = crate::demo::simulate::simulate_to_dir(&opts, &args.out, format, &shown);
            shown.finish();
            let s = s?;
            out.message(
                &serde_json::to_value(&s)?,
                &format!(
                    "wrote {} customers and {} events in {} files to {} ({:.1} s)",
                    s.customers,
                    s.events,
                    s.files.len(),
                    args.out.display(),
                    s.seconds
                ),
            )
        }
        Command::Users(cmd) => users::run(&config, cmd, &out).await,
        Command::Playbook(cmd) => playbook::playbook(config, cmd, &out).await,
        Command::Report(cmd) => playbook::report(config, cmd, &out).await,
    }
}

async fn train(config: &Config, args: TrainArgs, out: &Printer) -> anyhow::Result<()> {
    let defaults = jobs::train::TrainOptions::from_config(&config.training);
    let class_weight = args.class_weight.unwrap_or(defaults.class_weight);
    let opts = jobs::train::TrainOptions {
        holdout: args.holdout,
        seed: args.seed.or(args.holdout.map(|_| config.training.seed)),
        version: args.version.clone(),
        class_weight,
        solver: crate::model::Solver::parse(&args.solver).expect("clap checked the name"),
        ..defaults
    };
    let as_of = args.as_of.unwrap_or_else(jobs::today);
    let started = std::time::Instant::now();
    let mut window = None;
    let mut history = None;
    let builtin = crate::domain::EventKinds::builtin();
    let (model, db) = match (&args.csv, &args.target) {
        (Some(path), Some(target)) => (
            jobs::train::train_from_table(
                path,
                &crate::ingest::table::TableOptions {
                    target: target.clone(),
                    ignore: args.ignore.clone(),
                    split_column: args.split_column.clone(),
                    group_column: args.group_column.clone(),
                },
                &opts,
            )?,
            None,
        ),
        (Some(path), None) => (
            jobs::train::train_from_csv(
                &jobs::feature_spec(config, &builtin)?,
                path,
                args.preset,
                as_of,
                &opts,
            )?,
            None,
        ),
        (None, _) => {
            let db = open(config).await?;
            let mut config = config.clone();
            if let Some(h) = args.horizon_days {
                config.training.horizon_days = h;
            }
            if let Some(n) = args.months {
                config.training.observation_count = n;
            }
            if let Some(s) = args.seed {
                config.training.seed = s;
            }
            let ctx = JobContext::new(db.clone(), config);
            let h = jobs::train::HistoryOptions::from_config(
                &ctx.config.training,
                ctx.churn().await?,
                as_of,
            );
            let kinds = ctx.kinds().await?;
            let spec = ctx.feature_spec().await?;
            let opts = jobs::train::TrainOptions {
                progress: progress::reporter(out.json),
                ..opts
            };
            let trained = jobs::train::train_from_history(&db, &kinds, &spec, &h, &opts).await;
            opts.progress.finish();
            let trained = trained?;
            if let Some(obs_path) = &args.write_observations {
                jobs::train::write_observations(&db, &trained, obs_path).await?;
            }
            window = Some(trained.window.clone());
            let model = trained.model.clone();
            history = Some(trained);
            (model, Some(db))
        }
    };
    let fit_seconds = started.elapsed().as_secs_f64();
    if let (Some(split_path), Some(csv), Some(holdout)) =
        (&args.write_split, &args.csv, args.holdout)
    {
        let (_, labels) = jobs::train::csv_training_set(
            &jobs::feature_spec(config, &builtin)?,
            csv,
            args.preset,
            as_of,
        )?;
        let (train, test) =
            crate::model::stratified_split(&labels, holdout, model.training.seed.unwrap_or(0))?;
        let json = serde_json::json!({"file": csv.display().to_string(), "holdout": holdout, "seed": model.training.seed, "train": train, "test": test});
        std::fs::write(split_path, json.to_string())
            .with_context(|| format!("writing {}", split_path.display()))?;
    }
    let path = args.out.clone().unwrap_or_else(|| {
        config
            .training
            .models_dir
            .join(format!("{}.json", model.version))
    });
    jobs::train::write_artifact(&model, &path)?;
    // A model trained from a file is registered only if a database was named.
    let db = match db {
        Some(db) => Some(db),
        None if std::env::var_os("ATTUNE_DATABASE_URL").is_some()
            || !config.database_url.is_default() =>
        {
            Some(open(config).await?)
        }
        None => None,
    };
    if let Some(db) = &db {
        jobs::train::register(db, &model, window.as_ref(), !args.no_promote).await?;
    }
    drop(history);
    out.train(
        &model,
        window.as_ref(),
        &path,
        fit_seconds,
        db.is_some() && !args.no_promote,
    )
}

/// The model `attune predict` scores with: an artifact file, else a registered version.
async fn load_model_for_predict(
    config: &Config,
    which: &str,
) -> anyhow::Result<crate::model::ModelArtifact> {
    let path = Path::new(which);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model {}", path.display()))?;
        return jobs::parse_model(&text)
            .with_context(|| format!("loading model {}", path.display()));
    }
    let db = open(config).await?;
    let stored = db.model(which).await?.with_context(|| {
        format!("--model {which:?}: no model of that version in the registry (`attune models list` shows them) and no artifact file at that path")
    })?;
    let model: crate::model::ModelArtifact = serde_json::from_value(stored.artifact.0)
        .with_context(|| format!("decoding model {which} from the registry"))?;
    model.validate()?;
    Ok(model)
}

async fn nudges(config: &Config, cmd: NudgesCommand, out: &Printer) -> anyhow::Result<()> {
    let db = open(config).await?;
    match cmd {
        NudgesCommand::List {
            filter,
            limit,
            after,
        } => {
            if !(1..=1000).contains(&limit) {
                bail!("--limit {limit}: give 1 to 1000 nudges per page");
            }
            let cursor = after
                .as_deref()
                .map(crate::store::QueueCursor::decode)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--after: {e}"))?;
            let f = filter.filter();
            let (total, _) = db.count_selection(&f, None).await?;
            let (rows, next) = db.queue_page(&f, cursor, limit).await?;
            out.queue(
                &rows,
                total,
                &f.status,
                next.map(|c| c.encode()),
                &config.currency(),
            )
        }
        NudgesCommand::Approve { ids, by } => {
            let outcome = db
                .decide_nudges(&ids, NudgeStatus::Approved, &actor(by), None)
                .await?;
            out.decision(&outcome, "approved")
        }
        NudgesCommand::Reject { ids, reason, by } => {
            if reason.trim().is_empty() {
                bail!("--reason is empty; say why the nudges are rejected");
            }
            let outcome = db
                .decide_nudges(&ids, NudgeStatus::Rejected, &actor(by), Some(reason.trim()))
                .await?;
            out.decision(&outcome, "rejected")
        }
        NudgesCommand::Export { csv, filter } => {
            let f = filter.filter();
            let mut file = std::fs::File::create(&csv)
                .with_context(|| format!("creating {}", csv.display()))?;
            let (mut cursor, mut count, mut header) = (None, 0usize, true);
            loop {
                let (rows, next) = db.queue_page(&f, cursor, 1000).await?;
                count += rows.len();
                std::io::Write::write_all(&mut file, &crate::http::csv_rows(&rows, header)?)
                    .with_context(|| format!("writing {}", csv.display()))?;
                header = false;
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            out.message(
                &serde_json::json!({"exported": count, "file": csv.display().to_string()}),
                &format!(
                    "exported {} to {}",
                    crate::http::views::counted(count as i64, "nudge", "nudges"),
                    csv.display()
                ),
            )
        }
    }
}

/// The review desk bound to `[http] listen`, unless `[http] enabled = false`.
async fn review_desk(ctx: &JobContext) -> anyhow::Result<Option<crate::http::Application>> {
    if !ctx.config.http.enabled {
        return Ok(None);
    }
    Ok(Some(crate::http::Application::build(ctx.clone()).await?))
}

/// A demo database is recognisable by its audit entry; only such a file is replaced.
/// Returns `None` for any other file, else how many audit entries people made in it
/// (decisions, users, edits: everything but what the demo, its training and the playbook
/// recorded themselves).
async fn demo_database_work(path: &Path) -> Option<i64> {
    let Ok(db) = Db::connect(&DatabaseUrl::Sqlite(path.to_owned())).await else {
        return None;
    };
    let found: Result<(i64, i64), _> = match &db {
        Db::Sqlite(p, ..) => {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM audit_log WHERE action = 'demo.created'),
                        (SELECT COUNT(*) FROM audit_log WHERE actor NOT IN ('demo', 'train', $1))",
            )
            .bind(crate::playbook::RULE_APPROVER)
            .fetch_one(p)
            .await
        }
        Db::Postgres(_) => return None,
    };
    db.close().await;
    match found {
        Ok((created, work)) if created > 0 => Some(work),
        _ => None,
    }
}

/// How to run attune as this process was run: `attune` when it is on the PATH, else the
/// path of this executable (`target/release/attune` after `cargo run --release`).
fn this_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "attune".into();
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("attune") == exe));
    if on_path {
        return "attune".into();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    exe.strip_prefix(&cwd)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| exe.display().to_string())
}

async fn demo(
    mut config: Config,
    db_given: bool,
    args: DemoArgs,
    out: &Printer,
) -> anyhow::Result<()> {
    // The demo's database is created afresh: ./attune-demo.db unless --db names a file.
    let path = if db_given {
        match &config.database_url {
            DatabaseUrl::Sqlite(p) => p.clone(),
            DatabaseUrl::Postgres(_) => {
                bail!("the demo creates a fresh SQLite file; give --db PATH, not a PostgreSQL URL")
            }
        }
    } else {
        PathBuf::from("attune-demo.db")
    };
    if path.exists() {
        match demo_database_work(&path).await {
            None => bail!(
                "{} exists and is not a database the demo created; choose another path with --db",
                path.display()
            ),
            Some(work) if work > 0 && !args.reset => bail!(
                "{} holds work people did ({}: decisions, users, edits), which a new demo would erase. Keep it and serve the desk on it with `{} --db {} run`, or start over with `{} demo --reset`",
                path.display(),
                crate::http::views::counted(work, "audit entry", "audit entries"),
                this_command(),
                path.display(),
                this_command()
            ),
            Some(_) => {}
        }
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("removing the old demo database {}", p.display()))?;
            }
        }
    }
    let inbox = PathBuf::from(format!("{}.inbox", path.display()));
    if inbox.exists() {
        std::fs::remove_dir_all(&inbox).with_context(|| format!("clearing {}", inbox.display()))?;
    }
    config.database_url = DatabaseUrl::Sqlite(path.clone());
    config.pull.inbox = Some(inbox);
    let db = open(&config).await?;
    db.audit(
        "demo",
        "demo.created",
        &path.display().to_string(),
        &serde_json::json!({"customers": args.customers, "seed": args.seed}),
    )
    .await?;
    let ctx = JobContext::new(db.clone(), config);
    if args.populate_only {
        let p = crate::demo::populate(&db, args.customers, args.months, args.seed, jobs::today())
            .await?;
        db.close().await;
        return out.message(
            &serde_json::to_value(&p)?,
            &format!(
                "stored {} customers and {} events in {} ({:.1} s)",
                p.customers,
                p.events,
                path.display(),
                p.seconds
            ),
        );
    }
    let mut summary =
        crate::demo::run_cycle(&ctx, args.customers, args.seed, jobs::today()).await?;
    summary.database = path.display().to_string();
    out.demo(&summary, &ctx.config.currency())?;
    if args.once {
        db.close().await;
        return Ok(());
    }
    let desk = review_desk(&ctx).await?;
    if let Some(app) = &desk {
        // A fresh demo database has no users: an admin with a random password signs in.
        let password =
            crate::http::new_api_token().0[crate::http::TOKEN_PREFIX.len()..][..20].to_owned();
        let hash = crate::http::hash_password(&password)?;
        db.create_user("admin", crate::store::Role::Admin, &hash, "demo")
            .await?;
        eprintln!(
            "\nThe review desk is at {}/ \u{2014} sign in as admin with the password {password}",
            app.url()
        );
    }
    if !out.json {
        eprintln!(
            "\nattune is now running as a daemon on {} (Ctrl-C to stop). Review nudges in the browser, or with:\n  {} --db {} nudges list\n(`cargo install --path .` puts `attune` on your PATH)",
            path.display(),
            this_command(),
            path.display()
        );
    }
    jobs::daemon::run_serving(ctx, desk, jobs::daemon::shutdown_signal()).await
}

/// A shard worth a look (running, failed, tried again or given back) in a line: `shard 3 (ids 30001 to
/// 40000): running on host-2-score, attempt 2, since 2026-12-07 10:00:00Z`.
fn shard_line(s: &ShardRow) -> String {
    let holder = s.holder.as_deref().unwrap_or("no one");
    let mut line = format!(
        "shard {} ({}): {}",
        s.shard,
        views::id_range(s.after_id, s.upto_id),
        s.status
    );
    match s.status.as_str() {
        "queued" if s.attempts > 0 => line.push_str(&format!(
            " again after {}, the last on {holder}",
            views::counted(s.attempts.into(), "attempt", "attempts")
        )),
        "queued" => {}
        _ => line.push_str(&format!(" on {holder}, attempt {}", s.attempts)),
    }
    if s.status == "running"
        && let Some(at) = s.started_at
    {
        line.push_str(&format!(", since {}", fmt_time(at)));
    }
    if let Some(e) = &s.error {
        line.push_str(&format!(": {e}"));
    }
    line
}

/// Unix seconds as UTC, for people.
fn fmt_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}
