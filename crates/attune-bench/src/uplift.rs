//! A simulation in which nudges truly change churn for one rule and not for another, to
//! show that `report uplift` recovers a planted effect and does not invent one.
//!
//! Customers of two groups each have one occasion on day D0: a meter reading (rule
//! `meter_thanks`) or a login (rule `usage_tips`). Planning as of D0 queues the nudges
//! and holds out 10% of each rule's customers by the usual hash. Then each customer's
//! churn within 60 days is drawn with a probability that depends on what planning did:
//! for `meter_thanks` 20% when held out and 12% when nudged (a planted effect of -8
//! points); for `usage_tips` 15% either way. The report runs as of D0 + 61 days.

use chrono::{Days, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use attune::domain::{ActivityEvent, Consent, Customer, Meaning};
use attune::jobs::JobContext;
use attune::jobs::plan::{self, PlanJob};
use attune::playbook::uplift::RuleUplift;

/// The simulation's playbook: two rules, the default 10% holdout.
pub const PLAYBOOK: &str = r#"
[[rules]]
name = "meter_thanks"
stage = "first_disagreement"
trigger = { on = "event", event = "meter_reading", within_days = 3 }
review = "rule"
message = "Thanks for your meter reading, {first_name}."

[[rules]]
name = "usage_tips"
stage = "warning_signs"
trigger = { on = "event", event = "login", within_days = 3 }
review = "rule"
message = "Three tips for your {plan} plan, {first_name}."
"#;

pub const HORIZON_DAYS: u32 = 60;

/// Planted churn within the horizon: (rule, held out, nudged).
pub const PLANTED: [(&str, f64, f64); 2] =
    [("meter_thanks", 0.20, 0.12), ("usage_tips", 0.15, 0.15)];

#[derive(Debug, Clone, Serialize)]
pub struct Planted {
    pub rule: &'static str,
    pub held_out_churn: f64,
    pub nudged_churn: f64,
    pub difference: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpliftSimulation {
    pub customers: usize,
    pub seed: u64,
    pub nudge_day: NaiveDate,
    pub report_as_of: NaiveDate,
    pub horizon_days: u32,
    pub planted: Vec<Planted>,
    pub measured: Vec<RuleUplift>,
    /// The planted difference lies inside the measured 95% interval, for every rule.
    pub planted_inside_interval: bool,
    /// The rule with an effect is significant; the rule without one is not.
    pub verdicts_right: bool,
    pub reproduce: String,
}

pub async fn simulate(
    ctx: &JobContext,
    customers: usize,
    seed: u64,
    today: NaiveDate,
) -> anyhow::Result<UpliftSimulation> {
    let d0 = today - Days::new(HORIZON_DAYS as u64 + 30);
    let signup = d0 - Days::new(400);
    let mut population: Vec<Customer> = Vec::with_capacity(customers);
    let mut events = Vec::with_capacity(customers);
    for i in 0..customers {
        let mut c = crate::planning::customer(i, &mut StdRng::seed_from_u64(seed ^ i as u64), d0);
        c.external_id = attune::domain::CustomerId::parse(&format!("U{:07}", i + 1))?;
        c.signup_date = signup;
        c.contract_end = None;
        c.first_invoice_due = None;
        c.consent = Consent {
            email: true,
            ..Consent::default()
        };
        c.preferred_channel = attune::domain::Channel::Email;
        let kind = if i % 2 == 0 {
            Meaning::MeterReading
        } else {
            Meaning::Login
        };
        events.push(ActivityEvent {
            customer: c.external_id.clone(),
            kind: kind.code(),
            occurred_at: (d0 - Days::new(1))
                .and_hms_opt(10, 0, 0)
                .expect("valid")
                .and_utc(),
            value: None,
            attributes: Default::default(),
            source: "uplift-simulation".into(),
            source_event_id: format!("u-{i}"),
        });
        population.push(c);
    }
    let db = &ctx.db;
    for chunk in population.chunks(20_000) {
        db.upsert_customers(chunk).await?;
    }
    db.insert_events(&events).await?;
    let pb = attune::playbook::file::parse("uplift simulation playbook", PLAYBOOK)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    plan::run_with(
        ctx,
        &PlanJob {
            run_id: None,
            as_of: Some(d0),
        },
        &pb,
    )
    .await?;

    // Churn drawn from what planning did to each customer.
    let held: std::collections::HashMap<String, (String, bool)> = {
        let ids = db.customer_id_map().await?;
        let by_id: std::collections::HashMap<i64, String> =
            ids.into_iter().map(|(ext, id)| (id, ext)).collect();
        db.uplift_cohorts()
            .await?
            .into_iter()
            .filter_map(|c| {
                by_id
                    .get(&c.customer_id)
                    .map(|ext| (ext.clone(), (c.kind, c.max_holdout == 1)))
            })
            .collect()
    };
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for c in population.iter_mut() {
        let draw: f64 = rng.gen_range(0.0..1.0);
        let day: u64 = rng.gen_range(1..=HORIZON_DAYS as u64);
        let Some((rule, held_out)) = held.get(c.external_id.as_str()) else {
            continue;
        };
        let Some((_, p_held, p_nudged)) = PLANTED.iter().find(|(r, _, _)| r == rule) else {
            continue;
        };
        let p = if *held_out { *p_held } else { *p_nudged };
        if draw < p {
            c.churned_on = Some(d0 + Days::new(day));
        }
    }
    for chunk in population.chunks(20_000) {
        db.upsert_customers(chunk).await?;
    }
    let report_as_of = d0 + Days::new(HORIZON_DAYS as u64 + 1);
    let contract = attune::features::churn::ChurnDefinition::Contract {
        horizon_days: HORIZON_DAYS,
    };
    let measured = plan::uplift(db, &contract, report_as_of, HORIZON_DAYS, 100).await?;
    let planted: Vec<Planted> = PLANTED
        .iter()
        .map(|(rule, h, n)| Planted {
            rule,
            held_out_churn: *h,
            nudged_churn: *n,
            difference: n - h,
        })
        .collect();
    let inside = planted.iter().all(|p| {
        measured.iter().any(|m| {
            m.rule == p.rule
                && m.ci_low.is_some_and(|lo| lo <= p.difference)
                && m.ci_high.is_some_and(|hi| hi >= p.difference)
        })
    });
    let verdict = |rule: &str| measured.iter().find(|m| m.rule == rule).map(|m| m.verdict);
    let verdicts_right = verdict("meter_thanks") == Some("significant")
        && verdict("usage_tips") == Some("not_significant");
    Ok(UpliftSimulation {
        customers,
        seed,
        nudge_day: d0,
        report_as_of,
        horizon_days: HORIZON_DAYS,
        planted,
        measured,
        planted_inside_interval: inside,
        verdicts_right,
        reproduce: format!(
            "attune --db DB report uplift --as-of {report_as_of} --horizon-days {HORIZON_DAYS}"
        ),
    })
}
