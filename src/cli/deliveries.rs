//! `attune deliveries`: approved nudges on their way out (issue 20): list them, send a
//! failed or cancelled one again, cancel one that waits. The desk's nudge page and
//! `/v1/deliveries` do the same, with the same refusals.

use anyhow::bail;
use clap::Subcommand;

use super::output::Printer;
use crate::config::Config;
use crate::domain::DeliveryStatus;
use crate::http::DeliveryAction;

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Deliveries, newest change first, with every delivery counted by status and any
    /// channel paused after failures.
    List {
        /// pending, sent, dead (out of attempts), blocked (may no longer go) or cancelled.
        #[arg(long)]
        status: Option<DeliveryStatus>,
        /// The nudges' channel: email, sms, phone, post or task.
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send a failed (dead) or cancelled delivery again: pending, due now, its attempts
    /// counted from zero.
    Retry {
        /// The nudge's id.
        id: i64,
        /// Who asks; default $USER.
        #[arg(long)]
        by: Option<String>,
    },
    /// Send what is due now through the configured channels (`[[channels]]`), until
    /// nothing due is left: what the daemon does all the time, for a one-off run, a
    /// cron job or a benchmark. Prints what each channel took and the counts after.
    Send {
        /// Only this configured channel (its `name`).
        #[arg(long)]
        channel: Option<String>,
    },
    /// Stop a pending delivery: it is never sent.
    Cancel {
        /// The nudge's id.
        id: i64,
        /// Who asks; default $USER.
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn run(config: &Config, cmd: DeliveriesCommand, out: &Printer) -> anyhow::Result<()> {
    let db = super::open(config).await?;
    let (id, by, action) = match cmd {
        DeliveriesCommand::List {
            status,
            channel,
            limit,
        } => {
            if !(1..=1000).contains(&limit) {
                bail!("--limit {limit}: give 1 to 1000 deliveries");
            }
            let channel = channel
                .as_deref()
                .map(|c| crate::http::nudge_channel("--channel", c))
                .transpose()
                .map_err(|p| anyhow::anyhow!(p.message))?;
            let rows = db.deliveries(status, channel.as_deref(), limit).await?;
            let counts = db.delivery_counts().await?;
            let now = crate::store::now_secs();
            let paused: Vec<_> = db
                .channel_states()
                .await?
                .into_iter()
                .filter(|c| c.paused_until.is_some_and(|t| t > now))
                .collect();
            return out.deliveries(&rows, &counts, &paused, status);
        }
        DeliveriesCommand::Send { channel } => {
            if config.channels.is_empty() {
                bail!(
                    "no [[channels]] are configured: approved nudges have nowhere to go (see the README's \"Delivering nudges\")"
                );
            }
            if let Some(c) = &channel
                && !config.channels.iter().any(|x| &x.name == c)
            {
                bail!(
                    "--channel {c:?}: no such channel; configured: {}",
                    config
                        .channels
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let receivers = crate::jobs::deliver::receivers(config, &|k| std::env::var(k).ok())?;
            let ctx = crate::jobs::JobContext::new(db.clone(), config.clone());
            let started = std::time::Instant::now();
            let passes =
                crate::jobs::deliver::send_due(&ctx, receivers, channel.as_deref()).await?;
            let counts = db.delivery_counts().await?;
            return out.deliveries_sent(&passes, &counts, started.elapsed().as_secs_f64());
        }
        DeliveriesCommand::Retry { id, by } => (id, by, DeliveryAction::Retry),
        DeliveriesCommand::Cancel { id, by } => (id, by, DeliveryAction::Cancel),
    };
    let outcome = crate::http::change_delivery(&db, id, action, &super::actor(by)).await?;
    out.delivery_change(id, action, outcome)
}
