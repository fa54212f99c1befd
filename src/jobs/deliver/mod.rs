//! Delivering approved nudges (issue 20): one worker per configured channel
//! (`[[channels]]`) claims due deliveries in batches, checks each again
//! (`delivery::check`: status, departure, expiry, consent, a complaint holding an offer,
//! the contact cap, quiet hours), hands what may go to its receiver (a webhook, an SMTP
//! server, an outbox directory) and settles the batch in one transaction. A nudge is
//! marked sent only after the receiver accepted it; a worker killed in between leaves its
//! claim to run out, and the nudge goes again with the same id (`nudge_{id}`).

pub mod email;
pub mod outbox;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use rand::Rng as _;

use super::JobContext;
use crate::config::{ChannelConfig, ChannelType};
use crate::delivery::{self, Allowance, Breaker, Outgoing, SendFacts, Verdict};
use crate::domain::NudgeStatus;
use crate::playbook::{Playbook, Settings};
use crate::store::{DeliveryFacts, Settle};

const DAY: i64 = 86_400;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The receiver accepted it (a 2xx, SMTP's 250, the file renamed into the outbox).
    Accepted,
    /// It did not; `answer` is what the receiver said (or the error), `retry_at` when the
    /// receiver asked to be tried again (`Retry-After`), `permanent` when trying again
    /// cannot help (410 Gone, an address the server refuses).
    Failed {
        answer: String,
        retry_at: Option<i64>,
        permanent: bool,
    },
    /// Not tried: its check grew older than `recheck_within` before its turn came.
    NotTried,
}

impl Attempt {
    pub fn failed(answer: impl Into<String>) -> Self {
        Attempt::Failed {
            answer: answer.into(),
            retry_at: None,
            permanent: false,
        }
    }
}

/// A configured channel's receiver.
pub enum Receiver {
    Webhook(webhook::Webhook),
    Email(email::Email),
    Outbox(outbox::Outbox),
}

impl Receiver {
    /// The receiver of a configured channel: secrets and passwords read from `env`, every
    /// error naming the key (`channels[0] (crm).secret_env`).
    pub fn build(
        i: usize,
        c: &ChannelConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Receiver> {
        let key = |(field, m): (String, String)| {
            anyhow::anyhow!("channels[{i}] ({}).{field}: {m}", c.name)
        };
        Ok(match c.kind {
            ChannelType::Webhook => Receiver::Webhook(
                webhook::Webhook::new(c, c.secrets(env).map_err(key)?)
                    .map_err(|m| key(("url".into(), m)))?,
            ),
            ChannelType::Email => Receiver::Email(
                email::Email::new(c, c.password(env).map_err(key)?)
                    .map_err(|m| key(("smtp".into(), m)))?,
            ),
            ChannelType::Outbox => {
                Receiver::Outbox(outbox::Outbox::new(c).map_err(|m| key(("dir".into(), m)))?)
            }
        })
    }

    /// Whether the receiver is there: a TCP connection to the webhook's host, an SMTP
    /// session with its login, the outbox directory writable. For `config check`.
    pub async fn probe(&self) -> Result<(), String> {
        match self {
            Receiver::Webhook(w) => w.probe().await,
            Receiver::Email(e) => e.probe().await,
            Receiver::Outbox(o) => o.probe(),
        }
    }

    async fn send(&mut self, batch: Vec<Outgoing>, deadline: i64) -> Vec<(i64, Attempt)> {
        match self {
            Receiver::Webhook(w) => w.send(batch, deadline).await,
            Receiver::Email(e) => e.send(batch, deadline).await,
            Receiver::Outbox(o) => o.send(batch).await,
        }
    }
}

/// Every configured channel's receiver, or the first error; also checks that each channel
/// a playbook rule can choose is carried by one (when any is configured).
pub fn receivers(
    config: &crate::config::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<(ChannelConfig, Receiver)>> {
    let channels = &config.channels;
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let pb = super::plan::load_playbook(config.playbook.file.as_deref())?;
    check_rules_are_carried(&pb, channels)?;
    channels
        .iter()
        .enumerate()
        .map(|(i, c)| Ok((c.clone(), Receiver::build(i, c, env)?)))
        .collect()
}

/// Each channel a rule may send on is carried by a configured channel.
pub fn check_rules_are_carried(pb: &Playbook, channels: &[ChannelConfig]) -> anyhow::Result<()> {
    let carried: Vec<&str> = channels
        .iter()
        .flat_map(|c| c.carries.iter().map(String::as_str))
        .collect();
    for rule in &pb.rules {
        for n in crate::playbook::channels_of(rule) {
            if !carried.contains(&n) {
                anyhow::bail!(
                    "{}: rule {:?} (line {}) sends on {n:?}, which no [[channels]] entry carries; add {n:?} to a channel's `carries` (configured: {})",
                    pb.origin,
                    rule.name.as_str(),
                    rule.line,
                    channels
                        .iter()
                        .map(|c| format!("{} carries {}", c.name, c.carries.join(", ")))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
    }
    Ok(())
}

/// Runs every configured channel's worker until `stop` says so.
pub async fn run(
    ctx: JobContext,
    receivers: Vec<(ChannelConfig, Receiver)>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let pb = match ctx.playbook() {
        Ok(pb) => Arc::new(pb),
        Err(e) => {
            tracing::error!(error = %e, "deliveries stopped: the playbook does not load");
            return;
        }
    };
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|(c, r)| tokio::spawn(run_channel(ctx.clone(), pb.clone(), c, r, stop.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// One pass of a channel: claim, check, send, settle. Returns how many were claimed.
pub async fn deliver_once(
    ctx: &JobContext,
    pb: &Playbook,
    c: &ChannelConfig,
    receiver: &mut Receiver,
    breaker: &mut Breaker,
) -> anyhow::Result<usize> {
    let d = &ctx.config.delivery;
    let db = &ctx.db;
    let worker = worker_name(ctx, c);
    let now = crate::store::now_secs();
    let limit = match breaker.allowance(now) {
        Allowance::PausedUntil(_) => return Ok(0),
        Allowance::Probe => 1,
        Allowance::All => d.batch as i64,
    };
    // An outbox holds what it took until its file is renamed: its claim covers the roll.
    let lease = d.lease.as_secs() as i64
        + match receiver {
            Receiver::Outbox(_) => c.roll.as_secs() as i64,
            _ => 0,
        };
    let ids = db
        .claim_deliveries(&c.carries, &worker, now, lease, limit)
        .await?;
    if ids.is_empty() {
        if let Receiver::Outbox(o) = receiver {
            let done = o.flush_if_due(false).await;
            settle_attempts(ctx, c, &worker, breaker, done).await?;
        }
        return Ok(0);
    }
    let settings = ctx.playbook_settings();
    // Taken before the facts are read: whatever changed before this instant (consent
    // withdrawn, an expiry moved) is in what the check sees.
    let checked_ms = chrono::Utc::now().timestamp_millis();
    let checked_at = checked_ms.div_euclid(1000);
    let facts = db.delivery_facts(&ids).await?;
    let customers: Vec<i64> = facts.iter().map(|f| f.customer_id).collect();
    let window = settings.window_days as i64 * DAY;
    let sent = db.sent_since(&customers, now - window).await?;
    let holds = complaint_holds(ctx, pb, &facts, now).await?;
    let today = super::today();
    let mut settles = Vec::new();
    let mut go = Vec::new();
    // What this batch sends counts under the contact cap too, as it goes.
    let mut going: HashMap<i64, Vec<i64>> = HashMap::new();
    for f in &facts {
        let counted: Vec<i64> = sent
            .get(&f.customer_id)
            .into_iter()
            .flatten()
            .filter(|(rule, _)| !pb.rule(rule).is_some_and(|r| r.regulatory))
            .map(|(_, at)| *at)
            .chain(going.get(&f.customer_id).into_iter().flatten().copied())
            .collect();
        let v = verdict(
            f,
            pb,
            &settings,
            &counted,
            holds.get(&f.nudge_id).cloned(),
            today,
            checked_at,
        );
        if v == Verdict::Send && !pb.rule(&f.kind).is_some_and(|r| r.regulatory) {
            going.entry(f.customer_id).or_default().push(checked_at);
        }
        match v {
            Verdict::Send => go.push(outgoing(f, c, checked_ms)),
            Verdict::Wait { until, why } => settles.push(Settle::Wait {
                id: f.nudge_id,
                until,
                why,
            }),
            Verdict::Block { reason } => settles.push(Settle::Blocked {
                id: f.nudge_id,
                reason,
            }),
        }
    }
    db.settle_deliveries(&c.name, &worker, &settles).await?;
    let claimed = ids.len();
    let deadline = checked_at + d.recheck_within.as_secs() as i64;
    let attempts = receiver.send(go, deadline).await;
    settle_attempts(ctx, c, &worker, breaker, attempts).await?;
    Ok(claimed)
}

fn verdict(
    f: &DeliveryFacts,
    pb: &Playbook,
    s: &Settings,
    sent_in_window: &[i64],
    complaint_hold: Option<String>,
    today: chrono::NaiveDate,
    now: i64,
) -> Verdict {
    let status: NudgeStatus = match f.status.parse() {
        Ok(s) => s,
        Err(_) => {
            return Verdict::Block {
                reason: format!("the nudge's status {:?} is not one attune knows", f.status),
            };
        }
    };
    let rule = pb.rule(&f.kind);
    let tz =
        crate::playbook::timezone_in(&f.attributes.0, s.default_timezone).unwrap_or_else(|d| d);
    delivery::check(
        &SendFacts {
            status,
            snoozed_until: f.snoozed_until,
            send_after: f.send_after,
            expires_at: f.expires_at,
            channel: &f.channel,
            consent: f.consent(),
            churned_on: f.churned_on,
            regulatory: rule.is_some_and(|r| r.regulatory),
            complaint_hold,
            sent_in_window,
            tz,
        },
        s,
        today,
        now,
    )
}

/// Offers whose customer has an open complaint now, with why they wait: the playbook's
/// own hold (`playbook::offer_hold_in`), on each such customer's events, read once.
async fn complaint_holds(
    ctx: &JobContext,
    pb: &Playbook,
    facts: &[DeliveryFacts],
    now: i64,
) -> anyhow::Result<HashMap<i64, String>> {
    let mut out = HashMap::new();
    let mut events_of: HashMap<i64, Vec<crate::playbook::EventFact>> = HashMap::new();
    for f in facts {
        let Some(rule) = pb
            .rule(&f.kind)
            .filter(|r| crate::playbook::offer_may_be_held(pb, r))
        else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = events_of.entry(f.customer_id) {
            ctx.kinds().await?;
            let mut read = ctx
                .db
                .planning_events(
                    f.customer_id,
                    f.customer_id,
                    now + 1,
                    now - super::plan::COMPLAINT_LOOKBACK_DAYS * DAY,
                    now,
                    &[],
                )
                .await?;
            slot.insert(read.remove(&f.customer_id).unwrap_or_default());
        }
        if let Some(why) = crate::playbook::offer_hold_in(pb, rule, &events_of[&f.customer_id]) {
            out.insert(f.nudge_id, why);
        }
    }
    Ok(out)
}

fn outgoing(f: &DeliveryFacts, c: &ChannelConfig, checked_ms: i64) -> Outgoing {
    Outgoing {
        id: delivery::message_id(f.nudge_id),
        nudge_id: f.nudge_id,
        customer: f.external_id.clone(),
        rule: f.kind.clone(),
        occasion: f.occasion.clone(),
        channel: f.channel.clone(),
        stage: f.stage.clone(),
        message: f.message.clone(),
        contact_role: f.contact_role.clone(),
        contact_name: f.contact_name.clone(),
        address: f.attributes.0.get(&c.address_attribute).cloned(),
        expires_at: f.expires_at.map(delivery::iso),
        approved_by: f.decided_by.clone(),
        checked_at: delivery::iso_ms(checked_ms),
    }
}

async fn settle_attempts(
    ctx: &JobContext,
    c: &ChannelConfig,
    worker: &str,
    breaker: &mut Breaker,
    attempts: Vec<(i64, Attempt)>,
) -> anyhow::Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let d = &ctx.config.delivery;
    let now = crate::store::now_secs();
    // Attempts made before, for the backoff: read only when something failed.
    let failed_ids: Vec<i64> = attempts
        .iter()
        .filter(|(_, a)| matches!(a, Attempt::Failed { .. }))
        .map(|(id, _)| *id)
        .collect();
    let facts_attempts: HashMap<i64, i32> = if failed_ids.is_empty() {
        HashMap::new()
    } else {
        ctx.db
            .delivery_facts(&failed_ids)
            .await?
            .into_iter()
            .map(|f| (f.nudge_id, f.attempts))
            .collect()
    };
    let mut settles = Vec::with_capacity(attempts.len());
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut breaker_changed = false;
    let mut last_answer = None;
    for (id, a) in attempts {
        match a {
            Attempt::NotTried => settles.push(Settle::Release { id }),
            Attempt::Accepted => {
                ok += 1;
                breaker_changed |= breaker.success();
                settles.push(Settle::Sent { id });
            }
            Attempt::Failed {
                answer,
                retry_at,
                permanent,
            } => {
                failed += 1;
                if breaker.failure(now).is_some() {
                    breaker_changed = true;
                }
                let made = facts_attempts.get(&id).copied().unwrap_or(0) as u32 + 1;
                if permanent || made >= d.max_attempts {
                    settles.push(Settle::Dead {
                        id,
                        answer: answer.clone(),
                    });
                } else {
                    let jitter: f64 = rand::thread_rng().r#gen();
                    let backoff = delivery::retry_delay(
                        made,
                        d.retry_base.as_secs_f64(),
                        d.retry_max.as_secs_f64(),
                        jitter,
                    );
                    let at = retry_at.unwrap_or(now + backoff).max(now + 1);
                    settles.push(Settle::Retry {
                        id,
                        at,
                        answer: answer.clone(),
                    });
                }
                last_answer = Some(answer);
            }
        }
    }
    ctx.db.settle_deliveries(&c.name, worker, &settles).await?;
    crate::metrics::get().delivered(&c.name, ok, failed);
    if breaker_changed {
        // Stored: the receiver's last answer (the desk says until when and after how many
        // failures from the other columns).
        let reason = breaker
            .paused_until
            .map(|_| format!("last answer: {}", last_answer.as_deref().unwrap_or("none")));
        if let (Some(until), Some(r)) = (breaker.paused_until, &reason) {
            tracing::warn!(
                channel = %c.name,
                "paused until {} after {} failed attempts in a row; {r}",
                delivery::iso(until),
                breaker.failures
            );
        } else {
            tracing::info!(channel = %c.name, "the channel answers again: unpaused");
        }
        ctx.db
            .set_channel_state(
                &c.name,
                breaker.failures,
                breaker.paused_until,
                reason.as_deref(),
            )
            .await?;
    }
    Ok(())
}

/// The worker a channel's claims are held by in this process.
fn worker_name(ctx: &JobContext, c: &ChannelConfig) -> String {
    format!("{}-deliver-{}", ctx.worker, c.name)
}

/// What [`send_due`] did on one channel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelPass {
    pub channel: String,
    /// Deliveries taken (sent, waiting, blocked or failed by this pass).
    pub claimed: usize,
    /// Paused by its breaker when the pass ended, with why.
    pub paused: Option<String>,
}

/// Delivers what is due now on every configured channel (or only `only`), each until
/// nothing due is left or its breaker pauses it: `attune deliveries send`.
pub async fn send_due(
    ctx: &JobContext,
    receivers: Vec<(ChannelConfig, Receiver)>,
    only: Option<&str>,
) -> anyhow::Result<Vec<ChannelPass>> {
    let pb = Arc::new(ctx.playbook()?);
    let passes = receivers
        .into_iter()
        .filter(|(c, _)| only.is_none_or(|o| o == c.name))
        .map(|(c, mut r)| {
            let (ctx, pb) = (ctx.clone(), pb.clone());
            tokio::spawn(async move {
                let mut breaker = stored_breaker(&ctx, &c).await;
                let mut claimed = 0;
                loop {
                    let n = deliver_once(&ctx, &pb, &c, &mut r, &mut breaker).await?;
                    claimed += n;
                    if n == 0 {
                        break;
                    }
                }
                if let Receiver::Outbox(o) = &mut r {
                    let done = o.flush_if_due(true).await;
                    let worker = worker_name(&ctx, &c);
                    settle_attempts(&ctx, &c, &worker, &mut breaker, done).await?;
                }
                let paused = breaker
                    .paused_until
                    .map(|t| format!("paused until {} after failed attempts", delivery::iso(t)));
                Ok::<_, anyhow::Error>(ChannelPass {
                    channel: c.name.clone(),
                    claimed,
                    paused,
                })
            })
        })
        .collect::<Vec<_>>();
    let mut out = Vec::new();
    for p in passes {
        out.push(p.await??);
    }
    Ok(out)
}

/// A channel's breaker as a previous process left it: a pause goes on after a restart,
/// so a receiver that was failing is not hammered again at once.
async fn stored_breaker(ctx: &JobContext, c: &ChannelConfig) -> Breaker {
    let d = &ctx.config.delivery;
    let mut breaker = Breaker::new(d.breaker_failures, d.breaker_pause.as_secs() as i64);
    match ctx.db.channel_states().await {
        Ok(states) => {
            if let Some(st) = states.into_iter().find(|s| s.name == c.name) {
                breaker.failures = st.failures.max(0) as u32;
                breaker.paused_until = st.paused_until;
            }
        }
        Err(e) => tracing::warn!(channel = %c.name, error = %e, "reading the channel's breaker"),
    }
    breaker
}

async fn run_channel(
    ctx: JobContext,
    pb: Arc<Playbook>,
    c: ChannelConfig,
    mut receiver: Receiver,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let d = ctx.config.delivery.clone();
    let mut breaker = stored_breaker(&ctx, &c).await;
    tracing::info!(channel = %c.name, carries = ?c.carries, paused_until = ?breaker.paused_until, "delivering");
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match deliver_once(&ctx, &pb, &c, &mut receiver, &mut breaker).await {
            Ok(n) if n as u32 >= d.batch => Duration::ZERO,
            Ok(_) => match breaker.allowance(crate::store::now_secs()) {
                Allowance::PausedUntil(t) => {
                    Duration::from_secs((t - crate::store::now_secs()).max(1) as u64)
                }
                _ => d.poll_interval,
            },
            Err(e) => {
                tracing::warn!(channel = %c.name, error = %format!("{e:#}"), "delivering failed; trying again");
                d.poll_interval.max(Duration::from_secs(1))
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
    // A clean stop closes an outbox's open file and settles it.
    if let Receiver::Outbox(o) = &mut receiver {
        let done = o.flush_if_due(true).await;
        let worker = worker_name(&ctx, &c);
        if let Err(e) = settle_attempts(&ctx, &c, &worker, &mut breaker, done).await {
            tracing::warn!(channel = %c.name, error = %format!("{e:#}"), "settling the outbox's last file");
        }
    }
    tracing::info!(channel = %c.name, "delivery stopped");
}

/// An error and its sources, `outer: inner: ...`: what a receiver's failure is kept as.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Sends `items` through `send` with at most `concurrency` in flight and at most
/// `rate_per_second` started per second (0: no limit), skipping (releasing) any whose
/// check is older than `deadline` when its turn comes.
pub(crate) async fn in_flight<F, Fut>(
    items: Vec<Outgoing>,
    concurrency: u32,
    rate_per_second: u32,
    deadline: i64,
    send: F,
) -> Vec<(i64, Attempt)>
where
    F: Fn(Outgoing) -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let started = tokio::time::Instant::now();
    let send = &send;
    futures::stream::iter(items.into_iter().enumerate())
        .map(|(i, o)| async move {
            if rate_per_second > 0 {
                let at = started + Duration::from_secs_f64(i as f64 / rate_per_second as f64);
                tokio::time::sleep_until(at).await;
            }
            let id = o.nudge_id;
            if crate::store::now_secs() > deadline {
                return (id, None);
            }
            (id, Some(send(o).await))
        })
        .buffer_unordered(concurrency.max(1) as usize)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(id, a)| (id, a.unwrap_or(Attempt::NotTried)))
        .collect()
}
