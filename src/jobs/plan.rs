//! The planning job: runs the playbook over the latest scores and queues nudges as
//! `proposed` for marketing to review. Safe to run twice: a nudge's identity is its
//! customer, kind and occasion, and the store never queues one twice.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::JobContext;
use crate::playbook::{self, CustomerView, PlanSummary};
use crate::store::NewNudge;

pub const QUEUE: &str = "attune.plan";

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
    #[serde(flatten)]
    pub summary: PlanSummary,
    /// Planned nudges that were new; the rest had been queued before.
    pub queued: u64,
    pub already_queued: u64,
}

pub async fn run(ctx: &JobContext, job: &PlanJob) -> anyhow::Result<PlanReport> {
    let as_of = job.as_of.unwrap_or_else(super::today);
    let db = &ctx.db;
    let run_id = match job.run_id {
        Some(id) => Some(id),
        None => db.latest_scoring_run().await?.map(|r| r.id),
    };
    let settings = ctx.playbook_settings();
    let customers = db
        .customers_active_on(as_of)
        .await
        .context("loading customers")?;
    let mut scores: HashMap<i64, (f64, serde_json::Value)> = HashMap::new();
    if let Some(run) = run_id {
        for s in db.scores_for_run(run).await.context("loading scores")? {
            scores.insert(s.customer_id, (s.probability, s.drivers.0));
        }
    }
    let last_nudge = db.last_nudge_times().await?;
    let window_start = as_of - Days::new(settings.complaint_follow_up_days as u64);
    let mut complaints: HashMap<i64, Vec<(i64, NaiveDate)>> = HashMap::new();
    for (event_id, customer_id, at) in db
        .unresolved_complaints(window_start, as_of + Days::new(1))
        .await?
    {
        let day = chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.date_naive())
            .unwrap_or(as_of);
        complaints
            .entry(customer_id)
            .or_default()
            .push((event_id, day));
    }
    let views: Vec<CustomerView<'_>> = customers
        .iter()
        .map(|(id, c)| {
            let (probability, drivers) = match scores.get(id) {
                Some((p, d)) => (Some(*p), d.clone()),
                None => (None, serde_json::Value::Array(vec![])),
            };
            CustomerView {
                id: *id,
                customer: c,
                probability,
                drivers,
                last_nudge_at: last_nudge.get(id).copied(),
                open_complaints: complaints.remove(id).unwrap_or_default(),
            }
        })
        .collect();
    let (planned, summary) = playbook::plan(&views, as_of, crate::store::now_secs(), &settings);
    let nudges: Vec<NewNudge> = planned
        .into_iter()
        .map(|p| NewNudge {
            customer_id: p.customer_id,
            kind: p.kind,
            occasion: p.occasion,
            channel: p.channel,
            reason: p.reason,
            probability: p.probability,
            run_id,
        })
        .collect();
    let queued = db.insert_nudges(&nudges).await.context("queueing nudges")?;
    tracing::info!(?run_id, %as_of, planned = nudges.len(), queued, "planned");
    Ok(PlanReport {
        run_id,
        as_of,
        summary,
        queued,
        already_queued: nudges.len() as u64 - queued,
    })
}
