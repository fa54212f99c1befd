//! The first playbook: which nudge, if any, each customer should get today, and why.
//!
//! Rules look at one customer at a time and propose candidates; guardrails then keep at
//! most one per customer (the most important), respect the contact cap, and never use a
//! channel the customer did not consent to. Pure: the caller gathers the inputs and
//! stores the result. Nothing here sends anything: every nudge starts as `proposed`.

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::json;

use crate::domain::{Channel, Customer, NudgeKind};

/// The playbook's settings (see `[playbook]` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub cap_days: u32,
    pub welcome_days: u32,
    pub bill_explainer_days_before: u32,
    pub complaint_follow_up_days: u32,
    pub renewal_days_before: u32,
    pub risk_threshold: f64,
}

/// Everything the rules may look at for one customer.
#[derive(Debug, Clone)]
pub struct CustomerView<'a> {
    pub id: i64,
    pub customer: &'a Customer,
    pub probability: Option<f64>,
    /// The score's top drivers as stored with it.
    pub drivers: serde_json::Value,
    /// When the customer was last given a nudge that was not rejected (unix seconds).
    pub last_nudge_at: Option<i64>,
    /// Complaints opened recently and not resolved: (event id, day opened).
    pub open_complaints: Vec<(i64, NaiveDate)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    pub customer_id: i64,
    pub kind: NudgeKind,
    pub occasion: String,
    pub channel: Channel,
    pub reason: serde_json::Value,
    pub probability: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanSummary {
    pub customers: usize,
    pub candidates: usize,
    pub planned: usize,
    /// Customers with a candidate who were nudged within the cap window.
    pub held_by_cap: usize,
    /// Candidates dropped because the customer consented to none of the rule's channels.
    pub no_consented_channel: usize,
    /// Lower-priority candidates set aside because a customer gets one nudge at a time.
    pub outranked: usize,
}

struct Candidate {
    kind: NudgeKind,
    occasion: String,
    /// Lower is more important.
    priority: u8,
    channels: Vec<Channel>,
    why: String,
}

/// Channels to try in order: the customer's preferred one first, then the rest.
fn preferred_first(c: &Customer) -> Vec<Channel> {
    let mut v = vec![c.preferred_channel];
    v.extend(
        [Channel::Email, Channel::Sms, Channel::Post, Channel::Phone]
            .into_iter()
            .filter(|ch| *ch != c.preferred_channel),
    );
    v
}

fn candidates(view: &CustomerView<'_>, as_of: NaiveDate, s: &Settings) -> Vec<Candidate> {
    let c = view.customer;
    let mut out = Vec::new();
    let days_since_signup = (as_of - c.signup_date).num_days();
    if (0..s.welcome_days as i64).contains(&days_since_signup) {
        out.push(Candidate {
            kind: NudgeKind::Welcome,
            occasion: format!("signup:{}", c.signup_date),
            priority: 2,
            channels: preferred_first(c),
            why: format!(
                "signed up {days_since_signup} days ago: how to get value in the first week"
            ),
        });
    }
    if let Some(due) = c.first_invoice_due {
        let days_to_due = (due - as_of).num_days();
        if (0..=s.bill_explainer_days_before as i64).contains(&days_to_due) {
            out.push(Candidate {
                kind: NudgeKind::BillExplainer,
                occasion: format!("first_invoice:{due}"),
                priority: 1,
                channels: preferred_first(c),
                why: format!(
                    "first invoice due {due}, in {days_to_due} days: explain it before it arrives"
                ),
            });
        }
    }
    for &(event_id, opened) in &view.open_complaints {
        let age = (as_of - opened).num_days();
        if (0..=s.complaint_follow_up_days as i64).contains(&age) {
            // A person answers a first disagreement: a call if the customer agreed to calls.
            let mut channels = vec![Channel::Phone];
            channels.extend(
                preferred_first(c)
                    .into_iter()
                    .filter(|ch| *ch != Channel::Phone),
            );
            out.push(Candidate {
                kind: NudgeKind::ComplaintFollowUp,
                occasion: format!("complaint:{event_id}"),
                priority: 0,
                channels,
                why: format!(
                    "complaint opened {opened} is unresolved after {age} days: acknowledge it, own it, say what happens next"
                ),
            });
        }
    }
    if let Some(p) = view.probability
        && p >= s.risk_threshold
    {
        out.push(Candidate {
            kind: NudgeKind::RiskCheckIn,
            // Once a month at most for the same reason.
            occasion: format!("risk:{}", as_of.format("%Y-%m")),
            priority: 3,
            channels: preferred_first(c),
            why: format!(
                "churn risk {:.0}% is at or above the {:.0}% threshold",
                p * 100.0,
                s.risk_threshold * 100.0
            ),
        });
    }
    if let Some(end) = c.contract_end {
        let days_to_end = (end - as_of).num_days();
        if (0..=s.renewal_days_before as i64).contains(&days_to_end) {
            out.push(Candidate {
                kind: NudgeKind::Renewal,
                occasion: format!("contract_end:{end}"),
                priority: 4,
                channels: preferred_first(c),
                why: format!(
                    "contract ends {end}, in {days_to_end} days: start the renewal conversation"
                ),
            });
        }
    }
    out
}

/// Plans today's nudges for every customer. `now` (unix seconds) is when planning runs,
/// for the contact cap; `as_of` is the day the rules look at.
pub fn plan(
    views: &[CustomerView<'_>],
    as_of: NaiveDate,
    now: i64,
    s: &Settings,
) -> (Vec<Planned>, PlanSummary) {
    let mut summary = PlanSummary {
        customers: views.len(),
        ..Default::default()
    };
    let mut planned = Vec::new();
    let cap_secs = s.cap_days as i64 * 86_400;
    for view in views {
        if !view.customer.is_active_on(as_of) {
            continue;
        }
        let mut cands = candidates(view, as_of, s);
        if cands.is_empty() {
            continue;
        }
        summary.candidates += cands.len();
        if view.last_nudge_at.is_some_and(|t| now - t < cap_secs) {
            summary.held_by_cap += 1;
            continue;
        }
        cands.sort_by_key(|c| c.priority);
        let mut chosen = None;
        for cand in cands {
            if chosen.is_some() {
                summary.outranked += 1;
                continue;
            }
            match cand
                .channels
                .iter()
                .copied()
                .find(|ch| view.customer.consent.allows(*ch))
            {
                Some(channel) => chosen = Some((cand, channel)),
                None => summary.no_consented_channel += 1,
            }
        }
        if let Some((cand, channel)) = chosen {
            planned.push(Planned {
                customer_id: view.id,
                kind: cand.kind,
                occasion: cand.occasion,
                channel,
                reason: json!({
                    "rule": cand.kind.as_str(),
                    "why": cand.why,
                    "probability": view.probability,
                    "drivers": view.drivers,
                }),
                probability: view.probability,
            });
        }
    }
    summary.planned = planned.len();
    (planned, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use std::collections::BTreeMap;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn settings() -> Settings {
        Settings {
            cap_days: 7,
            welcome_days: 7,
            bill_explainer_days_before: 5,
            complaint_follow_up_days: 14,
            renewal_days_before: 60,
            risk_threshold: 0.5,
        }
    }

    fn customer(signup: &str) -> Customer {
        Customer {
            external_id: CustomerId::parse("c").unwrap(),
            signup_date: d(signup),
            plan: "basic".into(),
            monthly_charge: 20.0,
            contract_type: ContractType::MonthToMonth,
            contract_end: None,
            first_invoice_due: None,
            preferred_channel: Channel::Email,
            consent: Consent {
                email: true,
                ..Default::default()
            },
            churned_on: None,
            attributes: BTreeMap::new(),
        }
    }

    fn view(c: &Customer) -> CustomerView<'_> {
        CustomerView {
            id: 1,
            customer: c,
            probability: None,
            drivers: json!([]),
            last_nudge_at: None,
            open_complaints: vec![],
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn new_customer_is_welcomed_once_per_signup() {
        let c = customer("2026-11-20");
        let (p, _) = plan(&[view(&c)], d("2026-11-23"), NOW, &settings());
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].kind, p[0].occasion.as_str(), p[0].channel),
            (NudgeKind::Welcome, "signup:2026-11-20", Channel::Email)
        );
    }

    #[test]
    fn complaint_outranks_everything_and_prefers_a_person() {
        let mut c = customer("2026-11-20");
        c.consent.phone = true;
        let mut v = view(&c);
        v.open_complaints = vec![(42, d("2026-11-22"))];
        v.probability = Some(0.9);
        let (p, s) = plan(&[v], d("2026-11-23"), NOW, &settings());
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].kind, p[0].channel, p[0].occasion.as_str()),
            (NudgeKind::ComplaintFollowUp, Channel::Phone, "complaint:42")
        );
        assert_eq!(s.outranked, 2);
    }

    #[test]
    fn no_consent_means_nothing_on_that_channel() {
        let mut c = customer("2026-11-20");
        c.consent = Consent::default();
        let (p, s) = plan(&[view(&c)], d("2026-11-23"), NOW, &settings());
        assert!(p.is_empty());
        assert_eq!(s.no_consented_channel, 1);
        // Consent to post only: the nudge goes by post, not by the preferred email.
        c.consent.post = true;
        let (p, _) = plan(&[view(&c)], d("2026-11-23"), NOW, &settings());
        assert_eq!(p[0].channel, Channel::Post);
    }

    #[test]
    fn cap_holds_for_seven_days() {
        let c = customer("2026-11-20");
        let mut v = view(&c);
        v.last_nudge_at = Some(NOW - 6 * 86_400);
        let (p, s) = plan(std::slice::from_ref(&v), d("2026-11-23"), NOW, &settings());
        assert!(p.is_empty());
        assert_eq!(s.held_by_cap, 1);
        v.last_nudge_at = Some(NOW - 7 * 86_400);
        let (p, _) = plan(&[v], d("2026-11-23"), NOW, &settings());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn bill_explainer_renewal_and_risk() {
        let mut c = customer("2026-01-01");
        c.first_invoice_due = Some(d("2026-11-26"));
        let (p, _) = plan(&[view(&c)], d("2026-11-23"), NOW, &settings());
        assert_eq!(p[0].kind, NudgeKind::BillExplainer);
        c.first_invoice_due = None;
        c.contract_end = Some(d("2027-01-10"));
        let (p, _) = plan(&[view(&c)], d("2026-11-23"), NOW, &settings());
        assert_eq!(
            (p[0].kind, p[0].occasion.as_str()),
            (NudgeKind::Renewal, "contract_end:2027-01-10")
        );
        let mut v = view(&c);
        v.probability = Some(0.7);
        let (p, _) = plan(&[v], d("2026-11-23"), NOW, &settings());
        assert_eq!(
            (p[0].kind, p[0].occasion.as_str()),
            (NudgeKind::RiskCheckIn, "risk:2026-11")
        );
    }

    #[test]
    fn churned_customers_get_nothing() {
        let mut c = customer("2026-11-20");
        c.churned_on = Some(d("2026-11-22"));
        let (p, _) = plan(&[view(&c)], d("2026-11-23"), NOW, &settings());
        assert!(p.is_empty());
    }
}
