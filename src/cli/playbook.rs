//! `attune playbook check|simulate`, `attune import contacts`, `attune report uplift`.
//! Glue: the rules live in `playbook`, planning in
//! `jobs::plan`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::output::Printer;
use crate::config::Config;
use crate::jobs::{self, JobContext, import::ImportReport};
use crate::playbook::{self, Playbook};

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Validate a playbook file (default: the configured one, or the built-in one);
    /// every problem is reported with its line.
    Check { file: Option<PathBuf> },
    /// Show which nudges planning would queue, for whom and why, writing nothing.
    Simulate(SimulateArgs),
    /// Weekly review budgets: with no arguments, each rule's nudges per week and its
    /// budget; `RULE N` lets N nudges of the rule into review a week (the most valuable
    /// first, the rest deferred until a place frees); `RULE none` removes the budget.
    Budget(BudgetArgs),
}

#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// The rule (a name from the playbook).
    pub rule: Option<crate::domain::RuleName>,
    /// Nudges a week, or `none`.
    #[arg(requires = "rule")]
    pub weekly: Option<String>,
    /// Who sets it, for the audit log.
    #[arg(long, default_value = "cli")]
    pub by: String,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Plan as of this day (YYYY-MM-DD); default today.
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    /// Use this scoring run instead of the latest.
    #[arg(long)]
    pub run: Option<i64>,
    /// A playbook file to simulate instead of the configured one.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Only this rule's nudges in the list (the counts cover every rule).
    #[arg(long)]
    pub rule: Option<crate::domain::RuleName>,
    /// At most this many nudges in the list (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per rule: churn within the horizon of customers nudged against customers held
    /// out, the difference with a 95% confidence interval (Newcombe), and how many
    /// customers are behind each figure.
    Uplift(UpliftArgs),
}

#[derive(Debug, Args)]
pub struct UpliftArgs {
    /// Churn counted within this many days of a customer's first nudge of the rule
    /// [default: [training] horizon_days].
    #[arg(long)]
    pub horizon_days: Option<u32>,
    /// Only customers whose horizon ended by this day count; default today.
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    /// Fewer customers than this in either group: no result, just the counts.
    #[arg(long, default_value_t = 100)]
    pub min_customers: u64,
}

fn read_playbook(file: Option<&Path>, config: &Config) -> anyhow::Result<Playbook> {
    jobs::plan::load_playbook(file.or(config.playbook.file.as_deref()))
}

pub async fn playbook(config: Config, cmd: PlaybookCommand, out: &Printer) -> anyhow::Result<()> {
    match cmd {
        PlaybookCommand::Check { file } => {
            let path = file.as_deref().or(config.playbook.file.as_deref());
            let pb = match path {
                None => Ok(Playbook::default_playbook()),
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading the playbook {}", p.display()))?;
                    playbook::file::parse(&p.display().to_string(), &text)
                }
            };
            if let Ok(pb) = &pb {
                jobs::plan::check_help_url(pb, &config.playbook)?;
            }
            match pb {
                Ok(pb) => out.message(
                    &serde_json::json!({
                        "valid": true, "file": pb.origin, "rules": pb.rules.len(), "plans": pb.plans.len(),
                        "contact_roles": pb.contact_roles,
                        "rule_names": pb.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                    }),
                    &format!(
                        "{} is valid: {} rules ({}), {} plans, contact roles {}",
                        pb.origin,
                        pb.rules.len(),
                        pb.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
                        pb.plans.len(),
                        pb.contact_roles.join(", ")
                    ),
                ),
                Err(errors) => {
                    if out.json {
                        out.message(&serde_json::json!({"valid": false, "errors": errors.0}), "")?;
                    } else {
                        for e in &errors.0 {
                            eprintln!("{e}");
                        }
                    }
                    bail!("the playbook has {} problem(s)", errors.0.len())
                }
            }
        }
        PlaybookCommand::Simulate(args) => {
            let pb = read_playbook(args.file.as_deref(), &config)?;
            let ctx = JobContext::new(super::open(&config).await?, config);
            let job = jobs::plan::PlanJob {
                run_id: args.run,
                as_of: args.as_of,
            };
            let mut sim = jobs::plan::simulate(&ctx, &job, &pb).await?;
            if let Some(rule) = &args.rule {
                sim.nudges.retain(|n| n.rule == rule.as_str());
            }
            if args.limit > 0 {
                sim.nudges.truncate(args.limit);
            }
            out.simulation(&sim)
        }
        PlaybookCommand::Budget(args) => {
            let pb = read_playbook(None, &config)?;
            let ctx = JobContext::new(super::open(&config).await?, config);
            if let Some(rule) = &args.rule {
                let Some(raw) = args.weekly.as_deref() else {
                    bail!(
                        "give the nudges a week after the rule (`attune playbook budget {rule} 20`), or `none` to remove its budget"
                    );
                };
                let weekly = match raw.trim() {
                    "none" => None,
                    n => Some(n.parse::<u32>().map_err(|_| {
                        anyhow::anyhow!("{raw:?} is not a number of nudges a week; give a whole number such as 20, or `none`")
                    })?),
                };
                let applied =
                    jobs::plan::set_budget(&ctx, &pb, rule.as_str(), weekly, &args.by).await?;
                let said = match (weekly, &applied) {
                    (None, Some(o)) => format!(
                        "{rule}: no weekly review budget; {} waiting released to planning",
                        o.released
                    ),
                    (None, None) => format!("{rule}: no weekly review budget"),
                    (Some(n), Some(o)) => format!(
                        "{rule}: {n} a week; {} of this week's places taken, {} deferred, {} released",
                        o.used, o.deferred, o.released
                    ),
                    (Some(n), None) => format!(
                        "{rule}: {n} a week, applied when the planning run now going finishes"
                    ),
                };
                return out.message(
                    &serde_json::json!({"rule": rule.as_str(), "weekly": weekly, "applied": applied}),
                    &said,
                );
            }
            let week = playbook::budget::week_start(jobs::today());
            let weeks = ctx.db.budget_weeks(week).await?;
            let budgets = ctx.db.review_budgets().await?;
            out.budgets(&weeks, &budgets)
        }
    }
}

pub async fn report(config: Config, cmd: ReportCommand, out: &Printer) -> anyhow::Result<()> {
    let ReportCommand::Uplift(args) = cmd;
    let horizon = args
        .horizon_days
        .unwrap_or(config.training.horizon_days.min(3650) as u32);
    if horizon == 0 {
        bail!("--horizon-days must be at least 1");
    }
    let as_of = args.as_of.unwrap_or_else(jobs::today);
    let db = super::open(&config).await?;
    let ctx = jobs::JobContext::new(db, config);
    let churn = ctx.churn().await?;
    let horizon = churn.with_horizon(horizon).horizon_days();
    let rows = jobs::plan::uplift(&ctx.db, &churn, as_of, horizon, args.min_customers).await?;
    out.uplift(&rows, as_of, horizon)
}

/// `attune import contacts FILE`: good rows stored, every bad one reported at its line.
pub async fn import_contacts(config: &Config, path: &Path) -> anyhow::Result<ImportReport> {
    let pb = read_playbook(None, config)?;
    let name = path.display().to_string();
    let (file, format) = crate::ingest::open(path)?;
    let parsed = playbook::contacts::parse(&name, file, format, &pb.contact_roles)?;
    let db = super::open(config).await?;
    let ids = db.customer_id_map().await?;
    let mut report = ImportReport {
        file: name.clone(),
        ..Default::default()
    };
    let mut rows = Vec::new();
    let mut errors: Vec<(u64, String)> = parsed
        .rejected
        .iter()
        .map(|e| (e.line, e.to_string()))
        .collect();
    for (line, c) in parsed.rows {
        match ids.get(c.customer.as_str()) {
            Some(&id) => rows.push((id, c)),
            None => errors.push((
                line,
                format!(
                    "{name}:{line}: column customer_id: unknown customer {:?}; import the customer first",
                    c.customer.as_str()
                ),
            )),
        }
    }
    let counts = db
        .upsert_contacts(&rows)
        .await
        .with_context(|| format!("storing contacts from {name}"))?;
    errors.sort_by_key(|(l, _)| *l);
    report.imported = counts.inserted;
    report.updated = counts.updated;
    report.rejected = errors.len() as u64;
    report.errors = errors.into_iter().map(|(_, e)| e).collect();
    Ok(report)
}
