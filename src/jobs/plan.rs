//! The planning job: runs the playbook over every active customer with the latest
//! scores, and stores what it decides. New nudges are proposed for review (or approved
//! with their rule, deferred under the contact cap, or recorded as holdouts); stored
//! ones are released from deferral, deferred again, withdrawn when their trigger no
//! longer holds, or expired. Safe to run twice: a nudge's identity is its customer, rule
//! and occasion, and the store never queues one twice.
//!
//! Customers are planned a page at a time, so memory stays flat however many there are.
//! [`simulate`] runs the same code and writes nothing.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::JobContext;
use super::par::in_chunks;
use crate::domain::{Customer, Meaning, NudgeStatus};
use crate::features::{Activity, FeatureRow, compute, day_number};
use crate::playbook::{
    self, Change, EventFact, Facts, PlanOutput, PlanSummary, Planned, Playbook, Review, Source,
};
use crate::store::{NewNudge, PlanningCustomer, now_secs};

pub const QUEUE: &str = "attune.plan";

/// Customers per page.
pub const PAGE: i64 = 50_000;
/// How far back complaint events are read: an open complaint older than this is not
/// seen by planning.
pub const COMPLAINT_LOOKBACK_DAYS: i64 = 400;
const DAY: i64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanJob {
    /// The scoring run whose scores to use; the latest finished run when unset.
    pub run_id: Option<i64>,
    /// Plan as of this day; today when unset.
    pub as_of: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub run_id: Option<i64>,
    pub as_of: NaiveDate,
    /// The planning instant (unix seconds): now for today, noon UTC for another day.
    pub planned_at: i64,
    pub playbook: String,
    pub dry_run: bool,
    #[serde(flatten)]
    pub summary: PlanSummary,
    /// New nudges stored (proposed, approved, deferred and holdout).
    pub queued: u64,
    /// Occasions already queued before: not queued twice.
    pub already_queued: u64,
    /// Weekly review budgets: nudges deferred to wait for a place, and waiting ones given
    /// one (released to planning), per rule.
    pub budgets: Vec<BudgetOutcome>,
}

/// One rule's budget pass.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetOutcome {
    pub rule: String,
    /// Unset: the budget was removed and every waiting nudge goes back to planning.
    pub weekly: Option<u64>,
    /// Places of this week's budget taken after the pass.
    pub used: u64,
    pub deferred: u64,
    pub released: u64,
}

/// The most a weekly review budget may be.
pub const MAX_WEEKLY_BUDGET: u32 = 1_000_000;

/// Sets (`Some`) or removes (`None`) a rule of `pb`'s weekly review budget for `by`, and
/// applies it at once unless a planning run holds the plan lease (that run, or the next,
/// applies it). Returns the outcome when applied now.
pub async fn set_budget(
    ctx: &JobContext,
    pb: &Playbook,
    rule: &str,
    weekly: Option<u32>,
    by: &str,
) -> anyhow::Result<Option<BudgetOutcome>> {
    if pb.rule(rule).is_none() {
        anyhow::bail!(
            "{rule:?} is not a rule of the playbook ({}); its rules are {}",
            pb.origin,
            pb.rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(n) = weekly
        && n > MAX_WEEKLY_BUDGET
    {
        anyhow::bail!(
            "a weekly review budget of {n} is more than {MAX_WEEKLY_BUDGET}; remove the budget instead"
        );
    }
    ctx.db.set_review_budget(rule, weekly, by).await?;
    // A holder of its own: the lease is re-entrant for one holder, and this daemon's own
    // planning run may hold it.
    let holder = format!("{}/budget", ctx.worker);
    let ttl = ctx.config.worker.lease_ttl_secs();
    if ctx.db.take_lease("plan", &holder, ttl).await?.is_err() {
        return Ok(None);
    }
    let applied = apply_budgets(ctx, super::today()).await;
    if let Err(e) = ctx.db.release_lease("plan", &holder).await {
        tracing::warn!(error = %e, "releasing the plan lease after a budget change failed; it expires by itself");
    }
    Ok(applied?.into_iter().find(|o| o.rule == rule))
}

/// Gives each budgeted rule's places for the week of `as_of` to its most valuable nudges
/// ([`playbook::budget`]); a rule whose budget was removed releases what waits.
pub async fn apply_budgets(
    ctx: &JobContext,
    as_of: NaiveDate,
) -> anyhow::Result<Vec<BudgetOutcome>> {
    let db = &ctx.db;
    let week = playbook::budget::week_start(as_of);
    let budgets: HashMap<String, u64> = db
        .review_budgets()
        .await?
        .into_iter()
        .map(|b| (b.rule, b.weekly.max(0) as u64))
        .collect();
    let mut rules: Vec<String> = budgets.keys().cloned().collect();
    rules.extend(db.rules_waiting_for_budget().await?);
    rules.sort();
    rules.dedup();
    let mut out = Vec::new();
    for rule in rules {
        let weekly = budgets.get(&rule).copied();
        let nudges = db.budget_candidates(&rule, week, weekly.is_some()).await?;
        let a = playbook::budget::allot(weekly, &nudges);
        let reason = playbook::budget::waiting_reason(weekly.unwrap_or(0));
        db.apply_budget(week, &a, &reason)
            .await
            .with_context(|| format!("applying the weekly review budget of rule {rule}"))?;
        out.push(BudgetOutcome {
            rule,
            weekly,
            used: a.used,
            deferred: a.defer.len() as u64,
            released: a.release.len() as u64,
        });
    }
    Ok(out)
}

/// One nudge a simulation would queue, for people to read.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedNudge {
    pub customer: String,
    pub rule: String,
    pub occasion: String,
    pub status: NudgeStatus,
    pub channel: String,
    pub recipient: String,
    pub send_after: Option<String>,
    pub expected_value: Option<f64>,
    pub why: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    #[serde(flatten)]
    pub report: PlanReport,
    pub nudges: Vec<SimulatedNudge>,
    /// Changes to stored nudges, with their rule.
    pub changes: Vec<(String, Change)>,
}

/// Reads a playbook file, or the default built into attune when `file` is `None`.
pub fn load_playbook(file: Option<&Path>) -> anyhow::Result<Playbook> {
    match file {
        None => Ok(Playbook::default_playbook()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the playbook {}", path.display()))?;
            Ok(playbook::file::parse(&path.display().to_string(), &text)?)
        }
    }
}

/// The features the playbook's conditions see, for one page of customers. The one place
/// planning gets features from, so the feature pipeline can change behind it.
pub async fn planning_features(
    ctx: &JobContext,
    as_of: NaiveDate,
    page: &[(i64, Customer)],
) -> anyhow::Result<HashMap<i64, FeatureRow>> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(HashMap::new());
    };
    let spec = ctx.planning_spec().await?;
    let activity = ctx
        .db
        .activity_between(first.0, last.0, day_number(as_of), &spec.lookback())
        .await
        .context("reading activity rollups")?;
    let none = Activity::default();
    let rows = in_chunks(page, |chunk| {
        chunk
            .iter()
            .map(|(id, c)| {
                (
                    *id,
                    compute(&spec, c, activity.get(id).unwrap_or(&none), as_of),
                )
            })
            .collect::<Vec<_>>()
    });
    Ok(rows.into_iter().flatten().collect())
}

/// A playbook whose messages say `{help_url}` needs `[playbook] help_url`: checked wherever
/// a playbook meets the config (`config check`, `playbook check`, planning).
pub fn check_help_url(pb: &Playbook, config: &crate::config::Playbook) -> anyhow::Result<()> {
    let using = pb.rules_using_help_url();
    if !using.is_empty() && config.help_url.is_none() {
        anyhow::bail!(
            "playbook.help_url is not set, and the messages of {} say {{help_url}}: set [playbook] help_url (or ATTUNE_PLAYBOOK_HELP_URL) to your help page",
            using.join(", ")
        );
    }
    Ok(())
}

/// Which event kinds the playbook's triggers read, and how many days back.
fn event_needs(pb: &Playbook) -> (Vec<Meaning>, i64) {
    let mut kinds = Vec::new();
    let mut days = 0i64;
    for r in &pb.rules {
        let (k, within): (Vec<Meaning>, u32) = match &r.trigger.source {
            Source::Event {
                kind,
                within_days,
                unless,
            } => (
                std::iter::once(*kind).chain(*unless).collect(),
                *within_days,
            ),
            Source::SupportAfterFirstInvoice {
                within_days,
                after_days,
            } => (vec![Meaning::SupportContact], *within_days.max(after_days)),
            _ => continue,
        };
        for k in k {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        // Enough to recheck a nudge until it expires.
        days = days.max(within as i64 + r.expires_after_days as i64 + 1);
    }
    (kinds, days)
}

/// Everything planning reads for a page of customers and what it decided.
#[allow(clippy::too_many_arguments)]
async fn plan_page(
    ctx: &JobContext,
    pb: &Playbook,
    settings: &playbook::Settings,
    page: Vec<PlanningCustomer>,
    as_of: NaiveDate,
    now: i64,
    out: &mut PlanOutput,
    drivers: &mut HashMap<i64, String>,
    keys: &mut crate::store::DriverKeys,
) -> anyhow::Result<()> {
    let (Some(first), Some(last)) = (page.first().map(|c| c.id), page.last().map(|c| c.id)) else {
        return Ok(());
    };
    let db = &ctx.db;
    let started = std::time::Instant::now();
    let mut probabilities = Vec::with_capacity(page.len());
    let mut page_drivers = HashMap::with_capacity(page.len());
    let customers: Vec<(i64, Customer)> = page
        .into_iter()
        .map(|c| {
            probabilities.push(c.probability);
            if let Some(d) = c.drivers {
                page_drivers.insert(c.id, d);
            }
            (c.id, c.customer)
        })
        .collect();
    // The spec the features are computed with: conditions are said in its words.
    let spec = ctx.planning_spec().await?;
    // The page's reads go out at once (each on a connection of its own).
    let (kinds, recent_days) = event_needs(pb);
    let features = async {
        let f = planning_features(ctx, as_of, &customers).await?;
        Ok::<_, anyhow::Error>((f, started.elapsed()))
    };
    let events = async {
        db.planning_events(
            first,
            last,
            now + 1,
            now - COMPLAINT_LOOKBACK_DAYS * DAY,
            now - recent_days * DAY,
            &kinds,
        )
        .await
        .context("reading events for triggers")
    };
    let usage = async {
        if pb.needs_usage() {
            let end = crate::store::day_start(as_of);
            db.usage_per_month(first, last, end - 90 * DAY, end, 3.0)
                .await
                .context("reading usage")
        } else {
            Ok(HashMap::new())
        }
    };
    let contacts = async {
        db.contacts_between(first, last)
            .await
            .context("reading contacts")
    };
    let existing = async {
        db.nudges_between(first, last)
            .await
            .context("reading stored nudges")
    };
    let ((features, t_features), events, usage, contacts, existing) =
        tokio::try_join!(features, events, usage, contacts, existing)?;
    let t_read = started.elapsed();
    let none_events: Vec<EventFact> = Vec::new();
    let indexed: Vec<(usize, &(i64, Customer))> = customers.iter().enumerate().collect();
    // Customers are planned independently: a chunk per core, merged in order.
    let chunks = in_chunks(&indexed, |chunk| {
        let mut one = PlanOutput::default();
        for &(i, (id, customer)) in chunk {
            let facts = Facts {
                id: *id,
                customer,
                features: features.get(id),
                probability: probabilities[i],
                events: events.get(id).map(Vec::as_slice).unwrap_or(&none_events),
                usage_per_month: usage.get(id).copied(),
                contacts: contacts.get(id).map(Vec::as_slice).unwrap_or(&[]),
                spec: Some(&spec),
            };
            playbook::plan_customer(
                pb,
                settings,
                &facts,
                existing.get(id).map(Vec::as_slice).unwrap_or(&[]),
                as_of,
                now,
                &mut one,
            );
        }
        one
    });
    for one in chunks {
        out.summary.merge(&one.summary);
        out.inserts.extend(one.inserts);
        out.changes.extend(one.changes);
    }
    // The drivers of those who get a nudge are read (put into words) for its reason.
    let nudged: Vec<(i64, crate::store::StoredDrivers)> = out
        .inserts
        .iter()
        .filter_map(|p| {
            page_drivers
                .remove(&p.customer_id)
                .map(|d| (p.customer_id, d))
        })
        .collect();
    db.add_driver_keys(keys, nudged.iter().map(|(_, d)| d.run_id))
        .await
        .context("reading the scoring runs' drivers keys")?;
    for (customer_id, d) in nudged {
        match keys.drivers(d.run_id, &d.bytes) {
            Ok(list) => {
                drivers.insert(customer_id, serde_json::to_string(&list)?);
            }
            // The nudge is still worth planning; its reason says no drivers.
            Err(e) => tracing::warn!(customer_id, error = %e, "a score's drivers are unreadable"),
        }
    }
    tracing::debug!(first, last, features = ?t_features, read = ?t_read, total = ?started.elapsed(), "planned a page");
    Ok(())
}

/// The stored reason of a nudge, as JSON text. The score's drivers arrive as JSON text
/// (serialized once, when they were read for this nudge) and are put in as they are.
fn reason(p: &Planned, drivers: Option<&str>) -> String {
    let drivers = drivers.unwrap_or("[]");
    let rest = serde_json::json!({
        "rule": p.rule.as_str(),
        "stage": p.stage,
        "why": p.why,
        "probability": p.probability,
        "risk_band": p.risk_band.map(|b| b.as_str()),
        "delivery": p.delivery_note,
        "team": p.team,
    })
    .to_string();
    // `rest` is a non-empty object: `{"delivery":...}`.
    format!("{{\"drivers\":{},{}", drivers.trim(), &rest[1..])
}

/// Turns a page's decisions into rows to store.
fn page_rows(
    pb: &Playbook,
    run_id: Option<i64>,
    out: &mut PlanOutput,
    drivers: &HashMap<i64, String>,
) -> (Vec<NewNudge>, Vec<Change>) {
    let nudges: Vec<NewNudge> = out
        .inserts
        .drain(..)
        .map(|p| {
            let approved = p.status == NudgeStatus::Approved;
            let by_rule = pb.rule(p.rule.as_str()).map(|r| r.review) == Some(Review::Rule);
            NewNudge {
                reason: reason(&p, drivers.get(&p.customer_id).map(String::as_str)),
                customer_id: p.customer_id,
                kind: p.rule,
                occasion: p.occasion,
                channel: p.channel,
                status: p.status,
                probability: p.probability,
                run_id,
                stage: p.stage,
                priority: p.priority as i32,
                holdout: p.holdout,
                expected_value: p.expected_value,
                segment: p.segment,
                risk_band: p.risk_band.map(|b| b.as_str().to_owned()),
                message: Some(p.message),
                contact_role: p.contact_role,
                contact_name: p.contact_name,
                send_after: p.send_after,
                expires_at: Some(p.expires_at),
                planned_at: p.planned_at,
                decided_by: (approved && by_rule).then(|| playbook::RULE_APPROVER.to_owned()),
                decision_reason: p.held.clone().or_else(|| {
                    (approved && by_rule)
                        .then(|| "approved with its rule (review = \"rule\")".to_owned())
                }),
            }
        })
        .collect();
    let changes = out.changes.drain(..).map(|(_, c)| c).collect();
    (nudges, changes)
}

/// Stores a page's rows; returns (new nudges stored, nudges given).
async fn store_rows(
    db: crate::store::Db,
    nudges: Vec<NewNudge>,
    changes: Vec<Change>,
) -> anyhow::Result<(u64, u64)> {
    let given = nudges.len() as u64;
    let t = std::time::Instant::now();
    let inserted = db.insert_nudges(nudges).await.context("queueing nudges")?;
    let inserting = t.elapsed().as_secs_f64();
    db.apply_nudge_changes(&changes)
        .await
        .context("updating stored nudges")?;
    tracing::debug!(
        inserted,
        inserting,
        changes = changes.len(),
        changing = t.elapsed().as_secs_f64() - inserting,
        "stored a page's nudges"
    );
    Ok((inserted, given))
}

type Write = tokio::task::JoinHandle<anyhow::Result<(u64, u64)>>;

/// Waits for a page's write and counts it.
async fn finish_write(w: Option<Write>, report: &mut PlanReport) -> anyhow::Result<()> {
    if let Some(w) = w {
        let (inserted, given) = w.await.context("storing a page")??;
        report.queued += inserted;
        // Queued by someone else between reading and writing: already queued all the same.
        report.already_queued += given - inserted;
    }
    Ok(())
}

/// Plans every active customer. With `collect`, decisions are kept and nothing is
/// written (a simulation); without, each page is stored as it is planned.
async fn plan_all(
    ctx: &JobContext,
    job: &PlanJob,
    pb: &Playbook,
    dry_run: bool,
) -> anyhow::Result<(PlanReport, PlanOutput)> {
    // The catalog first: it writes the kinds' meanings the event readers select by.
    ctx.kinds().await?;
    // One planning run at a time, across every daemon (a simulation writes nothing).
    let lease = if dry_run {
        None
    } else {
        Some(super::lease::Lease::take(ctx, "plan", "a planning run").await?)
    };
    let as_of = job.as_of.unwrap_or_else(super::today);
    let db = &ctx.db;
    let run_id = match job.run_id {
        Some(id) => Some(id),
        None => db.latest_scoring_run().await?.map(|r| r.id),
    };
    let settings = ctx.playbook_settings();
    let now = playbook::planning_instant(as_of, now_secs());
    let mut report = PlanReport {
        run_id,
        as_of,
        planned_at: now,
        playbook: pb.origin.clone(),
        dry_run,
        summary: PlanSummary::default(),
        queued: 0,
        already_queued: 0,
        budgets: Vec::new(),
    };
    let mut kept = PlanOutput::default();
    let mut summary = PlanSummary::default();
    let t = std::time::Instant::now();
    for (rule, n) in db
        .withdraw_for_departed(as_of, dry_run)
        .await
        .context("withdrawing the nudges of customers who left")?
    {
        summary.add_withdrawn(&rule, n as u64);
    }
    tracing::debug!(
        seconds = t.elapsed().as_secs_f64(),
        "withdrew the nudges of customers who left"
    );
    let basis = db.score_basis(run_id).await?;
    // A pipeline: the next page loads while this one is planned, and the previous
    // one's rows are written meanwhile (one write in flight, pages in order).
    let load = |after: i64| {
        let db = db.clone();
        tokio::spawn(async move { db.planning_page(as_of, basis, after, PAGE).await })
    };
    let mut writing: Option<Write> = None;
    let mut keys = crate::store::DriverKeys::default();
    let mut next = Some(load(i64::MIN));
    while let Some(loading) = next.take() {
        let t = std::time::Instant::now();
        let page = loading
            .await
            .context("loading customers")?
            .context("loading customers")?;
        let Some(last) = page.last().map(|c| c.id) else {
            break;
        };
        if page.len() as i64 == PAGE {
            next = Some(load(last));
        }
        tracing::debug!(
            seconds = t.elapsed().as_secs_f64(),
            customers = page.len(),
            "waited for a page of customers"
        );
        let mut out = PlanOutput::default();
        let mut drivers = HashMap::new();
        let t = std::time::Instant::now();
        plan_page(
            ctx,
            pb,
            &settings,
            page,
            as_of,
            now,
            &mut out,
            &mut drivers,
            &mut keys,
        )
        .await?;
        summary.merge(&out.summary);
        if dry_run {
            kept.inserts.append(&mut out.inserts);
            kept.changes.append(&mut out.changes);
        } else {
            let (nudges, changes) = page_rows(pb, run_id, &mut out, &drivers);
            let w = std::time::Instant::now();
            finish_write(writing.take(), &mut report).await?;
            tracing::debug!(
                seconds = w.elapsed().as_secs_f64(),
                "waited for the previous page's write"
            );
            writing = Some(tokio::spawn(store_rows(db.clone(), nudges, changes)));
        }
        tracing::debug!(page = ?t.elapsed(), "page planned");
    }
    finish_write(writing.take(), &mut report).await?;
    if !dry_run {
        report.budgets = apply_budgets(ctx, as_of)
            .await
            .context("applying the weekly review budgets")?;
    }
    summary.total();
    report.already_queued += summary.totals.already_queued;
    if dry_run {
        report.queued = summary.totals.queued();
    }
    report.summary = summary;
    if let Some(l) = lease {
        l.release().await;
    }
    Ok((report, kept))
}

pub async fn run(ctx: &JobContext, job: &PlanJob) -> anyhow::Result<PlanReport> {
    run_with(ctx, job, &ctx.playbook()?).await
}

/// [`run`] with a given playbook.
pub async fn run_with(
    ctx: &JobContext,
    job: &PlanJob,
    pb: &Playbook,
) -> anyhow::Result<PlanReport> {
    let (report, _) = plan_all(ctx, job, pb, false).await?;
    let t = &report.summary.totals;
    if t.approved + t.released > 0 {
        let by_rule: serde_json::Map<String, serde_json::Value> = report
            .summary
            .by_rule
            .iter()
            .filter(|(_, c)| c.approved > 0)
            .map(|(k, c)| (k.clone(), c.approved.into()))
            .collect();
        ctx.db
            .audit(
                playbook::RULE_APPROVER,
                "plan.approved_with_rule",
                &format!("plan:{}", report.as_of),
                &serde_json::json!({"playbook": report.playbook, "approved": by_rule}),
            )
            .await?;
    }
    tracing::info!(run_id = ?report.run_id, as_of = %report.as_of, queued = report.queued,
        deferred = t.deferred, holdout = t.holdout, withdrawn = t.withdrawn, "planned");
    Ok(report)
}

/// What [`run`] would do with `pb`, writing nothing.
pub async fn simulate(
    ctx: &JobContext,
    job: &PlanJob,
    pb: &Playbook,
) -> anyhow::Result<Simulation> {
    let (report, out) = plan_all(ctx, job, pb, true).await?;
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let nudges = out
        .inserts
        .into_iter()
        .map(|p| SimulatedNudge {
            customer: p.external_id,
            rule: p.rule.to_string(),
            occasion: p.occasion,
            status: p.status,
            recipient: match (&p.team, &p.contact_name, &p.contact_role) {
                (Some(team), _, _) => format!("{team} team"),
                (None, Some(name), Some(role)) => format!("{name} ({role})"),
                _ => "account holder".into(),
            },
            channel: p.channel,
            send_after: p.send_after.and_then(time),
            expected_value: p.expected_value,
            why: match p.delivery_note {
                Some(n) => format!("{}; {n}", p.why),
                None => p.why,
            },
            message: p.message,
        })
        .collect();
    Ok(Simulation {
        report,
        nudges,
        changes: out.changes,
    })
}

/// The uplift report: per rule, churn within `horizon_days` of each customer's first
/// nudge, nudged against held out, for customers whose horizon ended by `as_of`.
/// `report uplift`: per rule, churn (as `churn` defines it; a contract definition over
/// `horizon_days`) after each customer's first nudge, nudged against held out.
pub async fn uplift(
    db: &crate::store::Db,
    churn: &crate::features::churn::ChurnDefinition,
    as_of: NaiveDate,
    horizon_days: u32,
    min_customers: u64,
) -> anyhow::Result<Vec<playbook::uplift::RuleUplift>> {
    let churn = churn.with_horizon(horizon_days);
    let cohorts = db.uplift_cohorts().await.context("reading nudges")?;
    // An inactivity definition reads each nudged customer's activity after the nudge.
    let activity = match &churn {
        crate::features::churn::ChurnDefinition::Inactivity { kinds, .. } => {
            let mut ids: Vec<i64> = cohorts.iter().map(|c| c.customer_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut lookback = crate::features::Lookback::default();
            lookback.need(&kinds.set, None);
            db.activity_of(&ids, day_number(as_of) + 1, &lookback)
                .await
                .context("reading the nudged customers' activity")?
        }
        crate::features::churn::ChurnDefinition::Contract { .. } => HashMap::new(),
    };
    let none = Activity::default();
    Ok(playbook::uplift::report(
        cohorts.iter().map(|c| {
            let first_day = chrono::DateTime::from_timestamp(c.first_at, 0)
                .map(|t| t.date_naive())
                .unwrap_or_default();
            playbook::uplift::Cohort {
                rule: &c.kind,
                first_day,
                held_out: (c.min_holdout == c.max_holdout).then_some(c.max_holdout == 1),
                churned: churn.churned_after(
                    c.churned_on,
                    activity.get(&c.customer_id).unwrap_or(&none),
                    first_day,
                ),
                delivered: c.delivered == 1,
            }
        }),
        as_of,
        churn.horizon_days(),
        min_customers,
    ))
}

/// What [`recheck_nudge`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Its trigger still holds and it has not expired.
    Holds,
    /// Withdrawn now, with the reason (also stored as its decision reason).
    Withdrawn {
        reason: String,
    },
    /// Held by a guardrail now (an offer while a complaint is open), with the reason.
    Held {
        reason: String,
    },
    /// Past `expires_at`: expired now.
    Expired,
    /// Already decided, withdrawn, expired or a holdout: left as it is.
    NotOpen {
        status: String,
    },
    NotFound,
}

/// Checks one stored nudge against today's facts, for the review desk before a decision
/// and for delivery before sending: a nudge whose trigger no longer holds (the complaint
/// was resolved, the customer left) is withdrawn with the reason, one past its expiry
/// expires.
pub async fn recheck_nudge(ctx: &JobContext, id: i64) -> anyhow::Result<Outcome> {
    ctx.kinds().await?;
    let db = &ctx.db;
    let Some((customer_id, nudge)) = db.nudge_for_recheck(id).await? else {
        return Ok(Outcome::NotFound);
    };
    if !nudge.is_open() {
        return Ok(Outcome::NotOpen {
            status: nudge.status.as_str().to_owned(),
        });
    }
    let pb = ctx.playbook()?;
    let settings = ctx.playbook_settings();
    let now = now_secs();
    let as_of = super::today();
    let run_id = db.latest_scoring_run().await?.map(|r| r.id);
    let basis = db.score_basis(run_id).await?;
    let Some(found) = db.planning_customer(customer_id, basis).await? else {
        return Ok(Outcome::NotFound);
    };
    let probability = found.probability;
    let page = vec![(customer_id, found.customer)];
    let features = planning_features(ctx, as_of, &page).await?;
    let spec = ctx.planning_spec().await?;
    let (kinds, recent_days) = event_needs(&pb);
    let events = db
        .planning_events(
            customer_id,
            customer_id,
            now + 1,
            now - COMPLAINT_LOOKBACK_DAYS * DAY,
            now - recent_days * DAY,
            &kinds,
        )
        .await?;
    let usage = if pb.needs_usage() {
        let end = crate::store::day_start(as_of);
        db.usage_per_month(customer_id, customer_id, end - 90 * DAY, end, 3.0)
            .await?
    } else {
        HashMap::new()
    };
    let contacts = db.contacts_between(customer_id, customer_id).await?;
    let facts = Facts {
        id: customer_id,
        customer: &page[0].1,
        features: features.get(&customer_id),
        probability,
        events: events.get(&customer_id).map(Vec::as_slice).unwrap_or(&[]),
        usage_per_month: usage.get(&customer_id).copied(),
        contacts: contacts.get(&customer_id).map(Vec::as_slice).unwrap_or(&[]),
        spec: Some(&spec),
    };
    let Some(change) = playbook::recheck(&pb, &settings, &facts, &nudge, as_of, now) else {
        return Ok(Outcome::Holds);
    };
    let changed = db
        .apply_nudge_changes(std::slice::from_ref(&change))
        .await?;
    if changed == 0 {
        // Decided by someone else in the meantime.
        let status = db
            .nudge_for_recheck(id)
            .await?
            .map(|(_, n)| n.status.as_str().to_owned())
            .unwrap_or_default();
        return Ok(Outcome::NotOpen { status });
    }
    tracing::info!(nudge = id, ?change, "rechecked");
    Ok(match change {
        Change::Withdraw { reason, .. } => Outcome::Withdrawn { reason },
        Change::Hold { reason, .. } => Outcome::Held { reason },
        _ => Outcome::Expired,
    })
}
