//! `attune-bench plan` and `attune-bench uplift`: planning over a populated database, and a
//! planted effect recovered by `report uplift`.

use anyhow::{Context as _, bail};
use attune::config::Config;
use attune::jobs::{self, JobContext};
use chrono::NaiveDate;
use clap::Args;

#[derive(Debug, Args)]
pub struct BenchPlanArgs {
    /// Customers to populate when the database has none.
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Plan as of this day; default today.
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    /// Plan this many times in a row (the second sees the first's nudges).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Only populate.
    #[arg(long)]
    pub populate_only: bool,
}

/// `attune-bench plan`: customers and a scoring run stored directly (once), then `plan`
/// timed as a whole (reads, rules, guardrails, writes).
pub async fn bench_plan(config: Config, args: BenchPlanArgs) -> anyhow::Result<()> {
    let db = crate::open(&config).await?;
    let as_of = args.as_of.unwrap_or_else(jobs::today);
    let mut out = serde_json::Map::new();
    if db.counts().await?.customers == 0 {
        let t = std::time::Instant::now();
        let p = crate::planning::populate(&db, args.customers, args.seed, as_of).await?;
        out.insert("populated".into(), serde_json::to_value(&p)?);
        out.insert("populate_seconds".into(), t.elapsed().as_secs_f64().into());
    }
    if args.populate_only {
        println!("{}", serde_json::Value::Object(out));
        return Ok(());
    }
    let ctx = JobContext::new(db, config);
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        let t = std::time::Instant::now();
        let r = jobs::plan::run(
            &ctx,
            &jobs::plan::PlanJob {
                run_id: None,
                as_of: Some(as_of),
            },
        )
        .await?;
        let secs = t.elapsed().as_secs_f64();
        runs.push(serde_json::json!({
            "plan_seconds": (secs * 1000.0).round() / 1000.0,
            "customers": r.summary.customers,
            "queued": r.queued,
            "already_queued": r.already_queued,
            "totals": r.summary.totals,
        }));
    }
    out.insert("backend".into(), ctx.db.backend().into());
    out.insert("as_of".into(), as_of.to_string().into());
    out.insert("runs".into(), runs.into());
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(out))?
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchUpliftArgs {
    /// Customers in the simulation, half for each rule.
    #[arg(long, default_value_t = 40_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Run this many simulations (seeds SEED, SEED+1, ...), each in a fresh SQLite file
    /// in the temp directory, and count how often the intervals cover the planted
    /// differences: about 95% of them should.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
}

/// `attune-bench uplift`: a simulation in which one rule's nudges truly lower churn and
/// another's change nothing, run through planning and `report uplift`.
pub async fn bench_uplift(config: Config, args: BenchUpliftArgs) -> anyhow::Result<()> {
    if args.seeds <= 1 {
        let db = crate::open(&config).await?;
        if db.counts().await?.customers > 0 {
            bail!(
                "the uplift simulation needs an empty database; give --db a new file, e.g. --db /tmp/uplift.db"
            );
        }
        let ctx = JobContext::new(db, config);
        let r = crate::uplift::simulate(&ctx, args.customers, args.seed, jobs::today()).await?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("attune-uplift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut runs = Vec::new();
    let (mut covered, mut detected, mut false_positive) = (0u64, 0u64, 0u64);
    for seed in args.seed..args.seed + args.seeds {
        let mut c = config.clone();
        c.database_url = attune::store::DatabaseUrl::Sqlite(dir.join(format!("seed-{seed}.db")));
        let db = crate::open(&c).await?;
        let ctx = JobContext::new(db.clone(), c);
        let r = crate::uplift::simulate(&ctx, args.customers, seed, jobs::today()).await?;
        db.close().await;
        let verdict = |rule: &str| {
            r.measured
                .iter()
                .find(|m| m.rule == rule)
                .map(|m| m.verdict)
        };
        covered += r.planted_inside_interval as u64;
        detected += (verdict("meter_thanks") == Some("significant")) as u64;
        false_positive += (verdict("usage_tips") == Some("significant")) as u64;
        runs.push(serde_json::json!({
            "seed": seed,
            "planted_inside_interval": r.planted_inside_interval,
            "verdicts_right": r.verdicts_right,
            "measured": r.measured.iter().map(|m| serde_json::json!({
                "rule": m.rule, "difference": m.difference, "ci_low": m.ci_low, "ci_high": m.ci_high,
                "verdict": m.verdict, "nudged": m.treated, "held_out": m.held_out,
            })).collect::<Vec<_>>(),
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "customers": args.customers,
            "seeds": args.seeds,
            "both_intervals_cover_the_planted_difference": covered,
            "effect_detected": detected,
            "false_positive_for_the_rule_without_effect": false_positive,
            "runs": runs,
        }))?
    );
    Ok(())
}
