//! `attune features`: check a feature spec, show one customer's features, and list the
//! configured activity sources with their cursors.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Subcommand;

use super::output::Printer;
use crate::config::Config;
use crate::features::{FeatureSpec, FeatureValue, compute, day_number};
use crate::jobs::{self, JobContext};

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Validate a feature spec (default: the configured one) and list its features.
    Check { file: Option<PathBuf> },
    /// One customer's features as of a day, from their activity rollups, in words.
    Show {
        /// The customer's id in your systems.
        customer: String,
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
}

pub async fn run(config: &Config, cmd: FeaturesCommand, out: &Printer) -> anyhow::Result<()> {
    match cmd {
        FeaturesCommand::Check { file } => {
            // The kinds the config declares, coded as a fresh database would: enough to
            // check names, with no database needed.
            let declared = config
                .declared_kinds()
                .map_err(|(key, m)| anyhow::anyhow!("{key}: {m}"))?;
            let kinds = crate::domain::EventKinds::provisional(&declared);
            let spec = match &file {
                Some(f) => FeatureSpec::load(f, &kinds)?,
                None => jobs::feature_spec(config, &kinds)?,
            };
            let names: Vec<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
            let auto = if spec.auto {
                " and auto features for every kind ([settings] auto = true)"
            } else {
                ""
            };
            out.message(
                &serde_json::json!({"valid": true, "hash": spec.hash, "features": names, "auto": spec.auto}),
                &format!(
                    "valid: {} features{auto} (spec hash {}): {}",
                    names.len(),
                    spec.hash,
                    names.join(", ")
                ),
            )
        }
        FeaturesCommand::Show { customer, as_of } => {
            let db = super::open(config).await?;
            let ctx = JobContext::new(db, config.clone());
            let spec = ctx.planning_spec().await?;
            let as_of = as_of.unwrap_or_else(jobs::today);
            let ids = ctx.db.customer_ids().await?;
            ctx.db.resolve_customers(&ids, &[customer.as_str()]).await?;
            let id = ids
                .get(&customer)
                .with_context(|| format!("no customer {customer:?}; import them first"))?;
            let (_, c) = ctx
                .db
                .customers_with_ids(&[id])
                .await?
                .pop()
                .context("the customer vanished while being read")?;
            let activity = ctx
                .db
                .activity_of(&[id], day_number(as_of), &spec.lookback())
                .await?
                .remove(&id)
                .unwrap_or_default();
            let row = compute(&spec, &c, &activity, as_of);
            if out.json {
                return out.message(&serde_json::to_value(&row)?, "");
            }
            println!("{customer} as of {as_of} (spec {}):", spec.hash);
            for (name, v) in &row {
                let raw = match v {
                    FeatureValue::Num(x) => format!("{x}"),
                    FeatureValue::Cat(s) => s.clone(),
                    FeatureValue::Missing => "unknown".into(),
                };
                println!("  {name:<30} {raw:<14} {}", spec.describe(name, v));
            }
            Ok(())
        }
    }
}
