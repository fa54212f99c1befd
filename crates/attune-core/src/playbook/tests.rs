//! The rules and guardrails on constructed customers.

use std::collections::BTreeMap;

use super::*;
use crate::domain::{ContractType, CustomerId};

/// The features rules read here, as the feature pipeline names them.
fn features_of(c: &Customer, as_of: NaiveDate) -> FeatureRow {
    FeatureRow::from([
        (
            "tenure_months".to_owned(),
            FeatureValue::Num(crate::features::months_between(c.signup_date, as_of) as f64),
        ),
        (
            "monthly_charge".to_owned(),
            FeatureValue::Num(c.monthly_charge),
        ),
        (
            "contract".to_owned(),
            FeatureValue::Cat(c.contract_type.as_str().to_owned()),
        ),
        ("plan".to_owned(), FeatureValue::Cat(c.plan.clone())),
        ("days_since_last_contact".to_owned(), FeatureValue::Missing),
    ])
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn at(day: &str, hour: u32) -> i64 {
    d(day)
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

fn customer(id: &str, signup: &str) -> Customer {
    Customer {
        external_id: CustomerId::parse(id).unwrap(),
        signup_date: d(signup),
        plan: "standard".into(),
        monthly_charge: 45.0,
        contract_type: ContractType::MonthToMonth,
        contract_end: None,
        first_invoice_due: None,
        preferred_channel: Channel::Email,
        consent: Consent {
            email: true,
            ..Consent::default()
        },
        churned_on: None,
        attributes: BTreeMap::new(),
    }
}

const RULES: &str = r#"
contact_roles = ["decision_maker", "operations"]

[[plans]]
name = "basic"
price = 25.0
included_usage = 150.0

[[plans]]
name = "standard"
price = 40.0
included_usage = 400.0

[[rules]]
name = "welcome"
stage = "early_days"
trigger = { on = "signup", within_days = 7 }
priority = 60
review = "rule"
holdout = 0.0
expires_after_days = 30
message = "Welcome {first_name}"

[[rules]]
name = "complaint_follow_up"
stage = "first_disagreement"
trigger = { on = "complaint_open", max_age_days = 14 }
priority = 90
holdout = 0.0
expires_after_days = 30
channels = ["phone", "preferred", "email"]
message = "Sorry about {complaint_date}"

[[rules]]
name = "ombudsman_notice"
stage = "first_disagreement"
trigger = { on = "complaint_open", min_age_days = 56 }
regulatory = true
priority = 100
channels = ["email", "sms"]
message = "After {complaint_days} days you may go to the ombudsman"

[[rules]]
name = "renewal"
stage = "contract_end"
trigger = { on = "contract_end", days_before = 60 }
holdout = 0.0
contact_role = "decision_maker"
message = "Hi {first_name}, your contract ends {contract_end}"

[[rules]]
name = "better_tariff"
stage = "long_term"
trigger = { on = "better_plan", min_saving = 5.0 }
offer = true
holdout = 0.0
message = "{better_plan} saves you {yearly_saving} a year"

[[rules]]
name = "loyalty_price_match"
stage = "long_term"
trigger = { on = "above_new_customer_price", min_tenure_months = 12, min_saving = 3.0 }
offer = true
holdout = 0.0
message = "New customers pay {new_customer_price}"

[[rules]]
name = "payment_failed_help"
stage = "warning_signs"
trigger = { on = "event", event = "payment_failed", within_days = 7, unless = "payment_made" }
holdout = 0.0
message = "Can we help?"

[[rules]]
name = "high_value_at_risk"
stage = "high_value_at_risk"
trigger = { on = "state", every_days = 30, risk = ["high"], when = ["monthly_charge >= 55"] }
action = "task"
team = "retention"
holdout = 0.0
message = "Call {customer_id}"
"#;

fn pb() -> Playbook {
    file::parse("t.toml", RULES).unwrap_or_else(|e| panic!("{e}"))
}

fn settings(max: u32) -> Settings {
    Settings {
        max_nudges: max,
        ..Settings::default()
    }
}

struct World {
    customer: Customer,
    events: Vec<EventFact>,
    contacts: Vec<Contact>,
    probability: Option<f64>,
    usage: Option<f64>,
    features: FeatureRow,
}

impl World {
    fn new(c: Customer) -> Self {
        Self {
            features: features_of(&c, d("2026-11-23")),
            customer: c,
            events: vec![],
            contacts: vec![],
            probability: None,
            usage: None,
        }
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            id: 1,
            customer: &self.customer,
            features: Some(&self.features),
            probability: self.probability,
            events: &self.events,
            usage_per_month: self.usage,
            contacts: &self.contacts,
            spec: None,
        }
    }

    fn plan(&self, s: &Settings, existing: &[Existing], as_of: &str) -> PlanOutput {
        let mut out = PlanOutput::default();
        let as_of = d(as_of);
        let now = planning_instant(as_of, 0);
        plan_customer(&pb(), s, &self.facts(), existing, as_of, now, &mut out);
        out.summary.total();
        out
    }
}

/// Stores planned nudges the way the database would, ids from 1.
fn stored(out: &PlanOutput) -> Vec<Existing> {
    out.inserts
        .iter()
        .enumerate()
        .map(|(i, p)| Existing {
            id: i as i64 + 1,
            kind: p.rule.to_string(),
            occasion: p.occasion.clone(),
            status: p.status,
            priority: p.priority as i64,
            expected_value: p.expected_value,
            channel: p.channel.clone(),
            send_after: p.send_after,
            planned_at: Some(p.planned_at),
            expires_at: Some(p.expires_at),
            snoozed_until: None,
            over_budget: false,
        })
        .collect()
}

fn complaint(id: i64, kind: Meaning, day: &str) -> EventFact {
    EventFact {
        id,
        kind,
        at: at(day, 10),
        value: None,
    }
}

#[test]
fn welcome_goes_out_on_the_approval_of_its_rule() {
    let w = World::new(customer("c1", "2026-11-20"));
    let out = w.plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts.len(), 1);
    let p = &out.inserts[0];
    assert_eq!(
        (
            p.rule.as_str(),
            p.occasion.as_str(),
            p.status,
            p.channel.as_str()
        ),
        (
            "welcome",
            "signup:2026-11-20",
            NudgeStatus::Approved,
            "email"
        )
    );
    assert_eq!(p.message, "Welcome there");
    assert_eq!(p.send_after, Some(at("2026-11-23", 12)));
    assert_eq!(p.expires_at, at("2026-11-23", 12) + 30 * DAY);
    assert_eq!(p.why, "signed up on 2026-11-20 (3 days ago)");
}

#[test]
fn over_the_cap_defers_to_the_next_free_slot_and_is_released_when_it_frees() {
    // A new customer with a fresh complaint: two occasions, room for one.
    let mut w = World::new(customer("c1", "2026-11-20"));
    w.events = vec![complaint(7, Meaning::ComplaintOpened, "2026-11-22")];
    let out = w.plan(&settings(1), &[], "2026-11-23");
    let by_rule: BTreeMap<&str, &Planned> =
        out.inserts.iter().map(|p| (p.rule.as_str(), p)).collect();
    let follow_up = by_rule["complaint_follow_up"];
    let welcome = by_rule["welcome"];
    assert_eq!(
        follow_up.status,
        NudgeStatus::Proposed,
        "the higher priority goes first"
    );
    assert_eq!(
        welcome.status,
        NudgeStatus::Deferred,
        "deferred, not dropped"
    );
    assert_eq!(welcome.send_after, Some(at("2026-11-23", 12) + 14 * DAY));
    assert_eq!(out.summary.totals.deferred, 1);

    // Planning again the next day: still no slot, nothing changes.
    let existing = stored(&out);
    let next = w.plan(&settings(1), &existing, "2026-11-24");
    assert!(next.inserts.is_empty());
    assert!(next.changes.is_empty(), "{:?}", next.changes);
    assert_eq!(next.summary.totals.already_queued, 2);

    // Fourteen days on, the slot has freed: the welcome is released (approved with its
    // rule) at the planning instant.
    let release = w.plan(&settings(1), &existing, "2026-12-07");
    assert_eq!(
        release.changes,
        vec![(
            "welcome".to_owned(),
            Change::Release {
                id: 2,
                status: NudgeStatus::Approved,
                send_after: at("2026-12-07", 12)
            }
        )]
    );
    assert_eq!(release.summary.totals.released, 1);
}

#[test]
fn a_second_deferral_waits_for_the_slot_after_the_first() {
    let s = settings(1);
    let now = at("2026-11-23", 12);
    let slots = vec![now - 3 * DAY];
    let first = next_free(&slots, now, 14 * DAY, s.max_nudges);
    assert_eq!(first, now + 11 * DAY);
    let second = next_free(&[slots[0], first], now, 14 * DAY, s.max_nudges);
    assert_eq!(second, first + 14 * DAY);
    // Two a window: a slot three days ago and one now leave the next at +11 days.
    assert_eq!(
        next_free(&[now - 3 * DAY, now], now, 14 * DAY, 2),
        now + 11 * DAY
    );
    assert!(
        fits(&[now - 14 * DAY], now, 14 * DAY, 1),
        "a window is half open"
    );
    // A slot later today (moved out of quiet hours) counts too.
    assert!(!fits(&[now + 3600], now, 14 * DAY, 1));
    assert!(fits(&[now + 3600], now, 14 * DAY, 2));
}

#[test]
fn duplicates_are_refused() {
    let w = World::new(customer("c1", "2026-11-20"));
    let first = w.plan(&settings(2), &[], "2026-11-23");
    let again = w.plan(&settings(2), &stored(&first), "2026-11-23");
    assert!(again.inserts.is_empty());
    assert_eq!(again.summary.by_rule["welcome"].already_queued, 1);
}

#[test]
fn opted_out_channels_are_skipped_and_preferred_comes_first() {
    let mut c = customer("c1", "2026-11-20");
    c.preferred_channel = Channel::Sms;
    c.consent = Consent {
        post: true,
        sms: true,
        ..Consent::default()
    };
    let out = World::new(c.clone()).plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts[0].channel, "sms", "preferred and consented");
    c.consent.sms = false;
    let out = World::new(c.clone()).plan(&settings(2), &[], "2026-11-23");
    assert_eq!(
        out.inserts[0].channel, "post",
        "sms opted out: the next consented"
    );
    c.consent = Consent::default();
    let out = World::new(c.clone()).plan(&settings(2), &[], "2026-11-23");
    assert!(out.inserts.is_empty());
    assert_eq!(out.summary.totals.no_consented_channel, 1);
}

#[test]
fn a_regulatory_notice_is_not_capped_and_goes_by_post_without_consent() {
    let mut c = customer("c1", "2025-01-01");
    c.consent = Consent::default();
    let mut w = World::new(c);
    w.events = vec![complaint(3, Meaning::ComplaintOpened, "2026-09-01")];
    // The cap is full: two nudges in the last days.
    let now = at("2026-11-23", 12);
    let full: Vec<Existing> = (0..2)
        .map(|i| Existing {
            id: 100 + i,
            kind: "welcome".into(),
            occasion: format!("x{i}"),
            status: NudgeStatus::Approved,
            priority: 50,
            expected_value: None,
            channel: "email".into(),
            send_after: Some(now - DAY),
            planned_at: Some(now - DAY),
            expires_at: None,
            snoozed_until: None,
            over_budget: false,
        })
        .collect();
    let out = w.plan(&settings(2), &full, "2026-11-23");
    assert_eq!(out.inserts.len(), 1);
    let p = &out.inserts[0];
    assert_eq!(
        (p.rule.as_str(), p.status, p.channel.as_str(), p.holdout),
        ("ombudsman_notice", NudgeStatus::Proposed, "post", false)
    );
    assert!(
        p.why
            .starts_with("complaint opened 2026-09-01 is unresolved after 83 days"),
        "{}",
        p.why
    );
    assert!(p.delivery_note.as_deref().unwrap().starts_with("by post"));
    assert_eq!(p.message, "After 83 days you may go to the ombudsman");
}

#[test]
fn quiet_hours_shift_the_send_time_in_the_customers_time_zone() {
    let mut c = customer("c1", "2026-11-20");
    c.attributes
        .insert("timezone".into(), "America/New_York".into());
    // Noon UTC is 07:00 in New York in November: quiet until 08:00 local, 13:00 UTC.
    let out = World::new(c.clone()).plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts[0].send_after, Some(at("2026-11-23", 13)));
    // Tokyo: noon UTC is 21:00 local, quiet until 08:00 the next day (23:00 UTC).
    c.attributes.insert("timezone".into(), "Asia/Tokyo".into());
    let out = World::new(c.clone()).plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts[0].send_after, Some(at("2026-11-23", 23)));
    // Not a time zone: the default, counted.
    c.attributes
        .insert("timezone".into(), "Mars/Olympus".into());
    let out = World::new(c).plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts[0].send_after, Some(at("2026-11-23", 12)));
    assert_eq!(out.summary.unknown_timezones, 1);
    // Across a daylight-saving change: London's quiet hours end at 08:00 BST in summer.
    let london: Tz = "Europe/London".parse().unwrap();
    let s = Settings::default();
    assert_eq!(
        out_of_quiet_hours(at("2026-07-01", 5), london, s.quiet_start, s.quiet_end),
        at("2026-07-01", 7)
    );
    assert_eq!(
        out_of_quiet_hours(at("2026-07-01", 10), london, s.quiet_start, s.quiet_end),
        at("2026-07-01", 10)
    );
}

#[test]
fn a_resolved_complaint_withdraws_its_follow_up() {
    let mut w = World::new(customer("c1", "2025-01-01"));
    w.events = vec![complaint(7, Meaning::ComplaintOpened, "2026-11-20")];
    let out = w.plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts[0].rule.as_str(), "complaint_follow_up");
    let existing = stored(&out);
    w.events
        .push(complaint(9, Meaning::ComplaintResolved, "2026-11-24"));
    let next = w.plan(&settings(2), &existing, "2026-11-25");
    assert_eq!(
        next.changes[0],
        (
            "complaint_follow_up".to_owned(),
            Change::Withdraw {
                id: 1,
                reason: "its trigger no longer holds: the complaint opened 2026-11-20 was resolved on 2026-11-24".into()
            }
        )
    );
    // The loyalty offer held while the complaint was open is proposed now; nothing else.
    assert!(
        matches!(
            &next.changes[1..],
            [(k, Change::Release { id: 2, status: NudgeStatus::Proposed, .. })] if k == "loyalty_price_match"
        ),
        "{:?}",
        next.changes
    );
    // A customer who left: every open nudge is withdrawn.
    w.customer.churned_on = Some(d("2026-11-24"));
    let f = w.facts();
    let change = recheck(
        &pb(),
        &settings(2),
        &f,
        &existing[0],
        d("2026-11-25"),
        at("2026-11-25", 12),
    );
    assert_eq!(
        change,
        Some(Change::Withdraw {
            id: 1,
            reason: "its trigger no longer holds: the customer left on 2026-11-24".into()
        })
    );
}

#[test]
fn complaints_reopen_and_resolve_in_order() {
    let events = vec![
        complaint(1, Meaning::ComplaintOpened, "2026-01-01"),
        complaint(2, Meaning::ComplaintOpened, "2026-01-05"),
        complaint(3, Meaning::ComplaintResolved, "2026-01-10"),
        complaint(4, Meaning::ComplaintReopened, "2026-01-20"),
    ];
    let k = complaints(&events);
    assert_eq!(k.len(), 2);
    assert!(
        k[0].open && k[0].reopened_at == Some(at("2026-01-20", 10)),
        "{k:?}"
    );
    assert!(k[1].open && k[1].resolved_at.is_none());
}

#[test]
fn a_rule_addresses_the_contact_with_its_role() {
    let mut c = customer("c1", "2024-01-15");
    c.contract_end = Some(d("2027-01-10"));
    let mut w = World::new(c);
    let contact = |name: &str, role: &str, consent: Consent| Contact {
        name: name.into(),
        role: role.into(),
        preferred_channel: Channel::Phone,
        consent,
    };
    w.contacts = vec![
        contact("Ops Person", "operations", Consent::ALL),
        contact(
            "Dana Boss",
            "decision_maker",
            Consent {
                email: true,
                ..Consent::default()
            },
        ),
    ];
    let out = w.plan(&settings(2), &[], "2026-11-23");
    let p = out
        .inserts
        .iter()
        .find(|p| p.rule.as_str() == "renewal")
        .unwrap();
    assert_eq!(
        (
            p.contact_name.as_deref(),
            p.contact_role.as_deref(),
            p.channel.as_str()
        ),
        (Some("Dana Boss"), Some("decision_maker"), "email")
    );
    assert_eq!(p.message, "Hi Dana, your contract ends 2027-01-10");
    // A contact with the role who consented to nothing: not sent to anyone else.
    w.contacts[1].consent = Consent::default();
    let out = w.plan(&settings(2), &[], "2026-11-23");
    assert!(out.inserts.iter().all(|p| p.rule.as_str() != "renewal"));
    assert_eq!(out.summary.by_rule["renewal"].no_consented_channel, 1);
    // No contact with the role: the account holder.
    w.contacts.clear();
    let out = w.plan(&settings(2), &[], "2026-11-23");
    let p = out
        .inserts
        .iter()
        .find(|p| p.rule.as_str() == "renewal")
        .unwrap();
    assert_eq!(p.contact_name, None);
    assert!(
        p.delivery_note
            .as_deref()
            .unwrap()
            .contains("no decision_maker contact")
    );
}

#[test]
fn better_tariff_and_loyalty_price_act_in_the_customers_interest() {
    let mut w = World::new(customer("c1", "2024-01-15"));
    w.usage = Some(120.0);
    let out = w.plan(&settings(5), &[], "2026-11-23");
    let rules: Vec<&str> = out.inserts.iter().map(|p| p.rule.as_str()).collect();
    assert_eq!(rules, ["better_tariff", "loyalty_price_match"]);
    assert_eq!(out.inserts[0].occasion, "better_plan:basic");
    assert_eq!(out.inserts[0].message, "basic saves you $240.00 a year");
    assert_eq!(out.inserts[1].message, "New customers pay $40.00");
    // In the business's currency (`[money]`), in the message and in the reason.
    let euros = Settings {
        currency: crate::domain::Currency::parse("EUR", None).unwrap(),
        ..settings(5)
    };
    let out = w.plan(&euros, &[], "2026-11-23");
    assert_eq!(out.inserts[0].message, "basic saves you €240.00 a year");
    assert!(
        out.inserts[0]
            .why
            .contains("basic costs €25.00 a month and includes 150 a month, enough for the 120 they use a month"),
        "{}",
        out.inserts[0].why
    );
    // Usage above what the cheaper plan includes: no better tariff.
    w.usage = Some(200.0);
    let out = w.plan(&settings(5), &[], "2026-11-23");
    assert!(
        out.inserts
            .iter()
            .all(|p| p.rule.as_str() != "better_tariff")
    );
    // A new customer paying above list is not a loyalty case yet.
    let out = World::new(customer("c2", "2026-06-01")).plan(&settings(5), &[], "2026-11-23");
    assert!(
        out.inserts
            .iter()
            .all(|p| p.rule.as_str() != "loyalty_price_match")
    );
}

/// While a complaint is open, offers wait (held, with the reason) and the follow-up goes
/// first; once it is resolved, the held offers are proposed. A stored offer is held when a
/// complaint opens after it was queued. The playbook can turn the guardrail off.
#[test]
fn offers_are_held_while_a_complaint_is_open() {
    let mut w = World::new(customer("c1", "2024-01-15"));
    w.usage = Some(120.0);
    w.events = vec![complaint(7, Meaning::ComplaintOpened, "2026-11-20")];
    let out = w.plan(&settings(5), &[], "2026-11-23");
    let by_rule = |out: &PlanOutput, rule: &str| {
        out.inserts
            .iter()
            .find(|p| p.rule.as_str() == rule)
            .cloned()
            .unwrap_or_else(|| panic!("no {rule}: {:?}", out.inserts))
    };
    assert_eq!(
        by_rule(&out, "complaint_follow_up").status,
        NudgeStatus::Proposed
    );
    for rule in ["better_tariff", "loyalty_price_match"] {
        let p = by_rule(&out, rule);
        assert_eq!(
            (p.status, p.send_after),
            (NudgeStatus::Deferred, None),
            "{rule}"
        );
        assert_eq!(
            p.held.as_deref(),
            Some(
                "held while the complaint opened 2026-11-20 is unresolved: an offer waits until it is resolved"
            )
        );
    }
    assert_eq!(out.summary.totals.held, 2);
    // Planned again with the complaint still open: nothing moves.
    let existing = stored(&out);
    let again = w.plan(&settings(5), &existing, "2026-11-24");
    assert!(
        again.changes.is_empty() && again.inserts.is_empty(),
        "{:?}",
        again.changes
    );
    // Resolved: the held offers are released for review.
    w.events
        .push(complaint(9, Meaning::ComplaintResolved, "2026-11-24"));
    let next = w.plan(&settings(5), &existing, "2026-11-25");
    let released: Vec<&str> = next
        .changes
        .iter()
        .filter(|(_, c)| {
            matches!(
                c,
                Change::Release {
                    status: NudgeStatus::Proposed,
                    ..
                }
            )
        })
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        released,
        ["better_tariff", "loyalty_price_match"],
        "{:?}",
        next.changes
    );

    // Queued before the complaint, held when it opens.
    let mut w = World::new(customer("c2", "2024-01-15"));
    w.usage = Some(120.0);
    let out = w.plan(&settings(5), &[], "2026-11-20");
    let existing = stored(&out);
    assert!(existing.iter().all(|e| e.status == NudgeStatus::Proposed));
    w.events = vec![complaint(11, Meaning::ComplaintOpened, "2026-11-21")];
    let next = w.plan(&settings(5), &existing, "2026-11-23");
    let held: Vec<&str> = next
        .changes
        .iter()
        .filter(|(_, c)| matches!(c, Change::Hold { .. }))
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        held,
        ["better_tariff", "loyalty_price_match"],
        "{:?}",
        next.changes
    );
    assert_eq!(next.summary.totals.held_stored, 2);

    // Turned off in the playbook: offers are proposed beside the complaint.
    let text = format!("{RULES}\n[guardrails]\nhold_offers_while_complaint_open = false\n");
    let off = file::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(!off.guardrails.hold_offers_while_complaint_open);
    assert!(pb().guardrails.hold_offers_while_complaint_open);
    let mut w = World::new(customer("c3", "2024-01-15"));
    w.usage = Some(120.0);
    w.events = vec![complaint(7, Meaning::ComplaintOpened, "2026-11-20")];
    let mut out = PlanOutput::default();
    let as_of = d("2026-11-23");
    plan_customer(
        &off,
        &settings(5),
        &w.facts(),
        &[],
        as_of,
        planning_instant(as_of, 0),
        &mut out,
    );
    assert!(
        out.inserts
            .iter()
            .all(|p| p.held.is_none() && p.status == NudgeStatus::Proposed)
    );
}

#[test]
fn a_failed_payment_is_help_until_it_is_paid() {
    let mut w = World::new(customer("c1", "2024-01-15"));
    w.events = vec![EventFact {
        id: 5,
        kind: Meaning::PaymentFailed,
        at: at("2026-11-20", 9),
        value: Some(45.0),
    }];
    w.customer.monthly_charge = 40.0;
    let out = w.plan(&settings(2), &[], "2026-11-23");
    assert_eq!(out.inserts.len(), 1);
    assert_eq!(out.inserts[0].occasion, "payment_failed:5");
    w.events.push(EventFact {
        id: 6,
        kind: Meaning::PaymentMade,
        at: at("2026-11-24", 9),
        value: Some(45.0),
    });
    let next = w.plan(&settings(2), &stored(&out), "2026-11-25");
    assert!(
        matches!(&next.changes[0].1, Change::Withdraw { reason, .. } if reason.ends_with("payment failed on 2026-11-20 was followed by payment made on 2026-11-24")),
        "{:?}",
        next.changes
    );
}

#[test]
fn high_value_at_high_risk_is_a_task_for_a_person() {
    let mut c = customer("c1", "2024-01-15");
    c.monthly_charge = 80.0;
    c.consent = Consent::default();
    let mut w = World::new(c);
    w.probability = Some(0.7);
    let out = w.plan(&settings(5), &[], "2026-11-23");
    let p = out
        .inserts
        .iter()
        .find(|p| p.rule.as_str() == "high_value_at_risk")
        .unwrap();
    assert_eq!(
        (p.channel.as_str(), p.team.as_deref()),
        ("task", Some("retention"))
    );
    assert_eq!(p.occasion, "period:2026-11-03");
    assert_eq!(p.expected_value, Some(0.7 * 80.0 * 12.0));
    assert_eq!(p.risk_band, Some(RiskBand::High));
    assert!(
        p.why
            .contains("high risk (70% churn probability); pays $80.00 a month"),
        "{}",
        p.why
    );
    // Risk falls: the task is withdrawn at the next planning.
    w.probability = Some(0.2);
    let next = w.plan(&settings(5), &stored(&out), "2026-11-24");
    assert!(next.changes.iter().any(|(r, c)| r == "high_value_at_risk"
        && matches!(c, Change::Withdraw { reason, .. } if reason.contains("risk band is now low"))));
}

#[test]
fn held_out_customers_are_recorded_not_sent() {
    let text = RULES.replace(
        "review = \"rule\"\nholdout = 0.0\nexpires_after_days = 30",
        "review = \"rule\"\nholdout = 0.5\nexpires_after_days = 30",
    );
    let pb = file::parse("t.toml", &text).unwrap();
    let mut held = 0;
    for i in 0..200 {
        let c = customer(&format!("C{i:04}"), "2026-11-20");
        let w = World::new(c);
        let mut out = PlanOutput::default();
        plan_customer(
            &pb,
            &settings(2),
            &w.facts(),
            &[],
            d("2026-11-23"),
            at("2026-11-23", 12),
            &mut out,
        );
        let p = &out.inserts[0];
        assert_eq!(
            p.holdout,
            holdout::is_held_out("welcome", &format!("C{i:04}"), 0.5)
        );
        if p.holdout {
            held += 1;
            assert_eq!((p.status, p.send_after), (NudgeStatus::Holdout, None));
        } else {
            assert_eq!(p.status, NudgeStatus::Approved);
        }
    }
    assert!((70..=130).contains(&held), "{held} of 200 held out at 50%");
}

#[test]
fn stale_nudges_expire() {
    let w = World::new(customer("c1", "2026-11-20"));
    let mut existing = stored(&w.plan(&settings(2), &[], "2026-11-23"));
    existing[0].status = NudgeStatus::Proposed;
    let out = w.plan(&settings(2), &existing, "2026-12-24");
    assert_eq!(
        out.changes,
        vec![("welcome".to_owned(), Change::Expire { id: 1 })]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The complaint triggers (the follow-up up to 14 days, the ombudsman notice from 56)
    /// find exactly the open complaints of `domain::complaint::lifecycle`, with its ages:
    /// the playbook keeps no complaint rule of its own (issue 19).
    #[test]
    fn complaint_triggers_follow_the_one_lifecycle(
        history in proptest::collection::vec((0usize..3, 0i64..90), 0..10)
    ) {
        use crate::domain::complaint::{self, ComplaintEvent, Step};
        let steps = [Step::Opened, Step::Resolved, Step::Reopened];
        let meanings = [
            Meaning::ComplaintOpened,
            Meaning::ComplaintResolved,
            Meaning::ComplaintReopened,
        ];
        let events: Vec<EventFact> = history
            .iter()
            .enumerate()
            .map(|(i, &(s, day))| EventFact {
                id: i as i64 + 1,
                kind: meanings[s],
                at: at("2026-01-01", 10) + day * DAY + i as i64 * 60,
                value: None,
            })
            .collect();
        let want = complaint::lifecycle(history.iter().enumerate().map(|(i, &(s, _))| {
            ComplaintEvent {
                id: events[i].id,
                at: events[i].at,
                step: steps[s],
                satisfaction: None,
            }
        }));
        let mut w = World::new(customer("c1", "2025-01-01"));
        w.events = events;
        let as_of = d("2026-04-02"); // day 91
        let now = planning_instant(as_of, 0);
        let book = pb();
        for (rule, keep) in [
            ("complaint_follow_up", (0, 14)),
            ("ombudsman_notice", (56, i64::MAX)),
        ] {
            let got: std::collections::BTreeSet<(String, String)> =
                occasions(&book, book.rule(rule).unwrap(), &w.facts(), &settings(9), as_of, now)
                    .into_iter()
                    .map(|o| (o.key, o.values["complaint_days"].clone()))
                    .collect();
            let expected: std::collections::BTreeSet<(String, String)> = want
                .iter()
                .filter(|c| c.open && (keep.0..=keep.1).contains(&c.days_open(as_of)))
                .map(|c| (format!("complaint:{}", c.opened_id), c.days_open(as_of).to_string()))
                .collect();
            proptest::prop_assert_eq!(got, expected, "rule {}", rule);
        }
    }
}
