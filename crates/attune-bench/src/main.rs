//! `attune-bench`: reproducible measurements of attune for BENCHMARKS.md. It reads the same
//! configuration as `attune` (`--db`, `--config`, `ATTUNE_*`).

use std::path::PathBuf;

use attune::config::Config;
use attune_bench::{fit, ingest, load, open, playbook, receiver, smtp};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "attune-bench",
    version,
    about = "Reproducible measurements of attune for BENCHMARKS.md (not part of the daemon)."
)]
struct Cli {
    /// Database: a SQLite file path, sqlite://PATH, or postgres://... [default: ./attune.db]
    #[arg(long, global = true, env = "ATTUNE_DATABASE_URL")]
    db: Option<attune::store::DatabaseUrl>,
    /// Config file (TOML); ./attune.toml is read if present.
    #[arg(long, global = true, env = "ATTUNE_CONFIG")]
    config: Option<PathBuf>,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = async {
        let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
        if let Some(db) = &cli.db {
            config.database_url = db.clone();
        }
        config.validate("command line")?;
        attune::telemetry::init(config.log.format, &config.log.filter);
        run(&config, cli.command, cli.json).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a logistic regression on synthetic N x D standard-normal rows (the same
    /// distribution as `sklearn_baseline.py synthetic`) and print AUC and fit time.
    Fit {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 45)]
        features: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// `fast` (attune's trainer) or `linfa` (linfa-logistic as it is).
        #[arg(long, default_value = "fast")]
        solver: String,
        /// Also write the generated rows to DIR/x.npy and DIR/y.npy, so that
        /// scikit-learn can be timed on exactly the same data
        /// (`LogisticRegression(C=1.0, max_iter=1000).fit(np.load("x.npy"), np.load("y.npy"))`).
        #[arg(long, value_name = "DIR")]
        save_npy: Option<PathBuf>,
        /// Converged when max |gradient| / rows is at most this: 1e-4 is scikit-learn's
        /// `tol`; `attune train` uses 1e-5.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
    },
    /// Ingest the files `attune simulate` wrote, end to end (parse, map, store, rollups),
    /// and the same rows raw into a second fresh database: events per second of both.
    Ingest {
        #[arg(long)]
        dir: PathBuf,
        /// sqlite or postgres.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        /// PostgreSQL server to create the benchmark's databases on (dropped after).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        pg_url: String,
        /// Where the SQLite files go (removed after).
        #[arg(long, default_value = "/tmp")]
        work: PathBuf,
    },
    /// Compute every active customer's features as of a day from the database's rollups.
    Features {
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Only read the customers and rollups (to see what reading costs).
        #[arg(long)]
        read_only: bool,
    },
    /// Send HTTP requests at a fixed rate (open loop) to a server on this machine and
    /// print the latency percentiles, a histogram and the errors.
    Load(load::LoadArgs),
    /// Fill the database with nudges (every review column set) for the load benchmarks.
    SeedNudges(load::SeedArgs),
    /// A webhook receiver for delivery benchmarks: verifies signatures, counts, prints
    /// the counts as JSON once idle.
    Receiver(receiver::ReceiverArgs),
    /// An SMTP sink for delivery benchmarks: accepts every message, counts, prints the
    /// counts as JSON once idle.
    SmtpSink(smtp::SinkArgs),
    /// The SMTP sink's ceiling: sessions sending small messages one after another.
    SmtpLoad(smtp::LoadArgs),
    /// Populate customers and a scoring run (once, when the database has none), then
    /// time `plan` over them.
    Plan(playbook::BenchPlanArgs),
    /// Plant an effect for one rule and none for another, plan, churn, and measure it
    /// with `report uplift`.
    Uplift(playbook::BenchUpliftArgs),
}

pub async fn run(config: &attune::config::Config, cmd: Command, json: bool) -> anyhow::Result<()> {
    match cmd {
        Command::Plan(args) => playbook::bench_plan(config.clone(), args).await,
        Command::Uplift(args) => playbook::bench_uplift(config.clone(), args).await,
        Command::Ingest {
            dir,
            backend,
            pg_url,
            work,
        } => {
            let out = ingest::ingest(&dir, &backend, &pg_url, &work).await?;
            println!("{out}");
            Ok(())
        }
        Command::Features { as_of, read_only } => {
            let ctx = attune::jobs::JobContext::new(crate::open(config).await?, config.clone());
            let out = ingest::features(&ctx, as_of.unwrap_or_else(attune::jobs::today), read_only)
                .await?;
            println!("{out}");
            Ok(())
        }
        Command::Load(args) => {
            let report = load::load(&args).await?;
            load::print_load(&report, json)
        }
        Command::Receiver(args) => receiver::run(args).await,
        Command::SmtpSink(args) => smtp::sink(args).await,
        Command::SmtpLoad(args) => smtp::load(args).await,
        Command::SeedNudges(args) => {
            let r = load::seed(config, &args).await?;
            if json {
                println!("{}", serde_json::to_value(&r)?);
            } else {
                println!(
                    "added {} nudges ({} new customers) on {} in {:.1} s",
                    r.inserted, r.customers_added, r.backend, r.seconds
                );
            }
            Ok(())
        }
        Command::Fit {
            rows,
            features,
            seed,
            solver,
            save_npy,
            tolerance,
        } => {
            let out = fit::bench_fit(
                rows,
                features,
                seed,
                &solver,
                save_npy.as_deref(),
                tolerance,
            )?;
            println!("{out}");
            Ok(())
        }
    }
}
