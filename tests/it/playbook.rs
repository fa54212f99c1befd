//! The playbook's guardrails against a real database, with constructed customers: the
//! contact cap defers and later releases, duplicates are refused, opted-out channels are
//! skipped, quiet hours shift the send time, a resolved complaint withdraws its
//! follow-up; contacts by role; simulation matches planning on the demo population; and
//! `report uplift` recovers a planted effect.

use attune::domain::{ActivityEvent, Channel, Consent, CustomerId, Meaning, NudgeStatus};
use attune::jobs::plan::{self, Outcome, PlanJob};
use attune::playbook::holdout::is_held_out;
use attune::store::NudgeFilter;
use chrono::{Days, NaiveDate};

use super::helpers::{TestDb, customer, d, email_only};
use crate::both_backends;

/// The first id `prefix0`, `prefix1`, ... that none of `rules` holds out at 10%, so a
/// test about the other guardrails is not decided by the holdout draw.
fn treated_id(prefix: &str, rules: &[&str]) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| rules.iter().all(|r| !is_held_out(r, id, 0.10)))
        .unwrap()
}

fn event(customer: &str, kind: Meaning, day: NaiveDate, n: &str) -> ActivityEvent {
    ActivityEvent {
        customer: CustomerId::parse(customer).unwrap(),
        kind: kind.code(),
        occurred_at: day.and_hms_opt(9, 0, 0).unwrap().and_utc(),
        value: None,
        attributes: Default::default(),
        source: "crm".into(),
        source_event_id: n.into(),
    }
}

fn job(day: NaiveDate) -> PlanJob {
    PlanJob {
        run_id: None,
        as_of: Some(day),
    }
}

async fn stored(t: &TestDb, external: &str) -> Vec<attune::playbook::Existing> {
    let id = t.db.customer_id_map().await.unwrap()[external];
    t.db.nudges_between(id, id)
        .await
        .unwrap()
        .remove(&id)
        .unwrap_or_default()
}

fn noon(day: NaiveDate) -> i64 {
    day.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp()
}

async fn over_the_cap_defers_then_releases(t: &TestDb) {
    let day = d("2026-10-01");
    let id = treated_id("cap", &["complaint_follow_up", "renewal"]);
    let mut c = customer(&id, d("2024-03-15"), email_only());
    c.contract_end = Some(day + Days::new(40));
    t.db.upsert_customers(&[c]).await.unwrap();
    t.db.insert_events(&[event(
        &id,
        Meaning::ComplaintOpened,
        day - Days::new(2),
        "k1",
    )])
    .await
    .unwrap();
    let ctx = t.ctx(|c| c.playbook.max_nudges = 1);
    let r = plan::run(&ctx, &job(day)).await.unwrap();
    assert_eq!(r.summary.by_rule["complaint_follow_up"].proposed, 1);
    assert_eq!(r.summary.by_rule["renewal"].deferred, 1);
    let n = stored(t, &id).await;
    let follow_up = n.iter().find(|n| n.kind == "complaint_follow_up").unwrap();
    let renewal = n.iter().find(|n| n.kind == "renewal").unwrap();
    assert_eq!(follow_up.status, NudgeStatus::Proposed);
    assert_eq!(
        (renewal.status, renewal.send_after),
        (NudgeStatus::Deferred, Some(noon(day) + 14 * 86_400)),
        "deferred to the next free slot, not dropped"
    );

    // A week on: the follow-up, never reviewed, expires after its seven days; the
    // renewal waits for its time.
    let r = plan::run(&ctx, &job(day + Days::new(7))).await.unwrap();
    assert_eq!((r.queued, r.summary.totals.released), (0, 0));
    assert_eq!(r.summary.by_rule["complaint_follow_up"].expired, 1);

    // Fourteen days on, its slot has come: the renewal is released for review.
    let r = plan::run(&ctx, &job(day + Days::new(14))).await.unwrap();
    assert_eq!(r.summary.by_rule["renewal"].released, 1);
    let n = stored(t, &id).await;
    let renewal = n.iter().find(|n| n.kind == "renewal").unwrap();
    assert_eq!(
        (renewal.status, renewal.send_after),
        (NudgeStatus::Proposed, Some(noon(day + Days::new(14))))
    );
    let follow_up = n.iter().find(|n| n.kind == "complaint_follow_up").unwrap();
    assert_eq!(follow_up.status, NudgeStatus::Expired);
}
both_backends!(
    over_the_cap_defers_then_releases_when_a_slot_frees,
    super::over_the_cap_defers_then_releases
);

async fn duplicates_are_refused(t: &TestDb) {
    let day = d("2026-10-01");
    let a = treated_id("dup", &["welcome"]);
    t.db.upsert_customers(&[customer(&a, day - Days::new(2), email_only())])
        .await
        .unwrap();
    let ctx = t.ctx(|_| {});
    let first = plan::run(&ctx, &job(day)).await.unwrap();
    assert_eq!(
        (first.queued, first.summary.by_rule["welcome"].approved),
        (1, 1)
    );
    let again = plan::run(&ctx, &job(day)).await.unwrap();
    assert_eq!((again.queued, again.already_queued), (0, 1));
    // The next day the same signup is the same occasion.
    let next = plan::run(&ctx, &job(day + Days::new(1))).await.unwrap();
    assert_eq!((next.queued, next.already_queued), (0, 1));
    assert_eq!(t.db.counts().await.unwrap().nudges, 1);
    let rows = t.db.list_nudges(&NudgeFilter::default()).await.unwrap();
    assert_eq!(
        (
            rows[0].kind.as_str(),
            rows[0].occasion.clone(),
            rows[0].status.as_str()
        ),
        (
            "welcome",
            format!("signup:{}", day - Days::new(2)),
            "approved"
        )
    );
    assert_eq!(rows[0].decided_by.as_deref(), Some("playbook"));
}
both_backends!(
    duplicates_are_refused_across_runs,
    super::duplicates_are_refused
);

async fn opted_out_channels_are_skipped(t: &TestDb) {
    let day = d("2026-10-01");
    let signup = day - Days::new(3);
    let sms_opted_out = treated_id("optout", &["welcome"]);
    let nothing = treated_id("none", &["welcome"]);
    let sms_ok = treated_id("sms", &["welcome"]);
    let mut a = customer(&sms_opted_out, signup, email_only());
    a.preferred_channel = Channel::Sms;
    let mut b = customer(
        &sms_ok,
        signup,
        Consent {
            sms: true,
            email: true,
            ..Consent::default()
        },
    );
    b.preferred_channel = Channel::Sms;
    let c = customer(&nothing, signup, Consent::default());
    t.db.upsert_customers(&[a, b, c]).await.unwrap();
    let r = plan::run(&t.ctx(|_| {}), &job(day)).await.unwrap();
    assert_eq!((r.queued, r.summary.totals.no_consented_channel), (2, 1));
    let mut got: Vec<(String, String)> =
        t.db.list_nudges(&NudgeFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.external_id, n.channel))
            .collect();
    got.sort();
    let mut want = vec![
        (sms_opted_out, "email".to_owned()),
        (sms_ok, "sms".to_owned()),
    ];
    want.sort();
    assert_eq!(
        got, want,
        "the preferred channel first, an opted-out one never"
    );
}
both_backends!(
    opted_out_channels_are_skipped,
    super::opted_out_channels_are_skipped
);

async fn quiet_hours_shift_the_send_time(t: &TestDb) {
    let day = d("2026-10-01");
    let id = treated_id("tz", &["welcome"]);
    let mut c = customer(&id, day - Days::new(1), email_only());
    c.attributes.insert("timezone".into(), "Asia/Tokyo".into());
    let utc = treated_id("utc", &["welcome"]);
    t.db.upsert_customers(&[c, customer(&utc, day - Days::new(1), email_only())])
        .await
        .unwrap();
    plan::run(&t.ctx(|_| {}), &job(day)).await.unwrap();
    // Planned at noon UTC, 21:00 in Tokyo: quiet until 08:00 there, 23:00 UTC.
    let n = stored(t, &id).await;
    assert_eq!(n[0].send_after, Some(noon(day) + 11 * 3600));
    let n = stored(t, &utc).await;
    assert_eq!(n[0].send_after, Some(noon(day)));
}
both_backends!(
    quiet_hours_shift_the_send_time,
    super::quiet_hours_shift_the_send_time
);

/// An offer queued before a complaint is held once the complaint opens (by the recheck
/// before a decision and by planning), with the reason stored; planning leaves it held
/// while the complaint is open and proposes it again once it is resolved.
async fn offers_wait_while_a_complaint_is_open(t: &TestDb) {
    let today = attune::jobs::today();
    let id = treated_id("loyal", &["loyalty_price_match", "complaint_follow_up"]);
    let mut c = customer(&id, d("2023-01-10"), email_only());
    c.monthly_charge = 60.0; // "standard" costs a new customer 45.00
    t.db.upsert_customers(&[c]).await.unwrap();
    let ctx = t.ctx(|_| {});
    plan::run(&ctx, &PlanJob::default()).await.unwrap();
    let offer = |rows: Vec<attune::playbook::Existing>| {
        rows.into_iter()
            .find(|n| n.kind == "loyalty_price_match")
            .expect("the loyalty offer is queued")
    };
    let first = offer(stored(t, &id).await);
    assert_eq!(first.status, NudgeStatus::Proposed);

    let opened = today - Days::new(2);
    t.db.insert_events(&[event(&id, Meaning::ComplaintOpened, opened, "h1")])
        .await
        .unwrap();
    let reason = format!(
        "held while the complaint opened {opened} is unresolved: an offer waits until it is resolved"
    );
    assert_eq!(
        plan::recheck_nudge(&ctx, first.id).await.unwrap(),
        Outcome::Held {
            reason: reason.clone()
        }
    );
    let row = |status: NudgeStatus| {
        let db = t.db.clone();
        async move {
            db.list_nudges(&NudgeFilter {
                status: Some(status),
                kind: Some(attune::domain::RuleName::parse("loyalty_price_match").unwrap()),
                ..Default::default()
            })
            .await
            .unwrap()
        }
    };
    let held = row(NudgeStatus::Deferred).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].decision_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(offer(stored(t, &id).await).send_after, None);
    let r = plan::run(&ctx, &PlanJob::default()).await.unwrap();
    assert_eq!(r.summary.by_rule["loyalty_price_match"].released, 0);
    assert_eq!(offer(stored(t, &id).await).status, NudgeStatus::Deferred);

    t.db.insert_events(&[event(
        &id,
        Meaning::ComplaintResolved,
        today - Days::new(1),
        "h2",
    )])
    .await
    .unwrap();
    let r = plan::run(&ctx, &PlanJob::default()).await.unwrap();
    assert_eq!(r.summary.by_rule["loyalty_price_match"].released, 1);
    let back = row(NudgeStatus::Proposed).await;
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].id, back[0].decision_reason.as_deref()),
        (first.id, None)
    );
}
both_backends!(
    offers_are_held_while_a_complaint_is_open_and_released_after,
    super::offers_wait_while_a_complaint_is_open
);

async fn resolved_complaint_withdraws_follow_up(t: &TestDb) {
    let today = attune::jobs::today();
    let id = treated_id("resolved", &["complaint_follow_up"]);
    let other = treated_id("left", &["complaint_follow_up"]);
    t.db.upsert_customers(&[
        customer(&id, d("2024-01-10"), email_only()),
        customer(&other, d("2024-01-10"), email_only()),
    ])
    .await
    .unwrap();
    t.db.insert_events(&[
        event(&id, Meaning::ComplaintOpened, today - Days::new(3), "r1"),
        event(&other, Meaning::ComplaintOpened, today - Days::new(3), "r2"),
    ])
    .await
    .unwrap();
    let ctx = t.ctx(|_| {});
    plan::run(&ctx, &PlanJob::default()).await.unwrap();
    let follow_up = stored(t, &id)
        .await
        .into_iter()
        .find(|n| n.kind == "complaint_follow_up")
        .unwrap();
    assert_eq!(
        plan::recheck_nudge(&ctx, follow_up.id).await.unwrap(),
        Outcome::Holds
    );

    t.db.insert_events(&[event(
        &id,
        Meaning::ComplaintResolved,
        today - Days::new(1),
        "r3",
    )])
    .await
    .unwrap();
    let outcome = plan::recheck_nudge(&ctx, follow_up.id).await.unwrap();
    let reason = format!(
        "its trigger no longer holds: the complaint opened {} was resolved on {}",
        today - Days::new(3),
        today - Days::new(1)
    );
    assert_eq!(
        outcome,
        Outcome::Withdrawn {
            reason: reason.clone()
        }
    );
    let rows =
        t.db.list_nudges(&NudgeFilter {
            status: Some(NudgeStatus::Withdrawn),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decision_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(
        plan::recheck_nudge(&ctx, follow_up.id).await.unwrap(),
        Outcome::NotOpen {
            status: "withdrawn".into()
        }
    );
    assert_eq!(
        plan::recheck_nudge(&ctx, 999_999).await.unwrap(),
        Outcome::NotFound
    );

    // The other customer leaves: planning withdraws their open nudge.
    let mut gone = customer(&other, d("2024-01-10"), email_only());
    gone.churned_on = Some(today - Days::new(1));
    t.db.upsert_customers(&[gone]).await.unwrap();
    let r = plan::run(&ctx, &PlanJob::default()).await.unwrap();
    assert_eq!(r.summary.by_rule["complaint_follow_up"].withdrawn, 1);
    let n = stored(t, &other).await;
    assert_eq!(n[0].status, NudgeStatus::Withdrawn);
}
both_backends!(
    a_resolved_complaint_withdraws_its_follow_up,
    super::resolved_complaint_withdraws_follow_up
);

async fn contacts_by_role(t: &TestDb) {
    let day = d("2026-10-01");
    let id = treated_id("biz", &["renewal"]);
    let mut c = customer(&id, d("2024-03-15"), email_only());
    c.contract_end = Some(day + Days::new(30));
    c.attributes
        .insert("segment".into(), "small_business".into());
    t.db.upsert_customers(&[c]).await.unwrap();
    let roles = attune::playbook::Playbook::default_playbook().contact_roles;
    let text = format!(
        "customer_id,name,role,email,phone,consent\n{id},Ops Olu,operations,olu@example.com,,email\n{id},Dana Reyes,Decision maker,dana@example.com,,email\n{id},Bad,chief,x@example.com,,email\n"
    );
    let parsed = attune::playbook::contacts::parse(
        "contacts.csv",
        text.as_bytes(),
        attune::ingest::Format::Csv,
        &roles,
    )
    .unwrap();
    assert_eq!((parsed.rows.len(), parsed.rejected[0].line), (2, 4));
    let internal = t.db.customer_id_map().await.unwrap()[&id];
    let rows: Vec<_> = parsed
        .rows
        .into_iter()
        .map(|(_, c)| (internal, c))
        .collect();
    let counts = t.db.upsert_contacts(&rows).await.unwrap();
    assert_eq!((counts.inserted, counts.updated), (2, 0));
    assert_eq!(t.db.upsert_contacts(&rows).await.unwrap().updated, 2);
    plan::run(&t.ctx(|_| {}), &job(day)).await.unwrap();
    let n =
        t.db.list_nudges(&NudgeFilter {
            kind: Some("renewal".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].channel, "email");
    let why = n[0].reason.0["why"].as_str().unwrap();
    assert!(why.starts_with("contract ends"), "{why}");
    let contacts = t.db.contacts_between(internal, internal).await.unwrap();
    assert_eq!(contacts[&internal].len(), 2);
}
both_backends!(
    a_rule_reaches_the_contact_with_its_role,
    super::contacts_by_role
);

/// On the demo population: every default rule fires for someone, and simulation's
/// counts are what planning then stores.
async fn simulation_matches_planning(t: &TestDb) {
    let today = attune::jobs::today();
    attune::demo::populate(&t.db, 5000, 12, 7, today)
        .await
        .unwrap();
    let ctx = t.ctx(|_| {});
    attune::jobs::score::run(
        &ctx,
        &attune::jobs::score::ScoreJob {
            tick: None,
            as_of: Some(today),
            changed_only: false,
        },
    )
    .await
    .unwrap();
    let pb = ctx.playbook().unwrap();
    let sim = plan::simulate(&ctx, &PlanJob::default(), &pb)
        .await
        .unwrap();
    assert_eq!(
        t.db.counts().await.unwrap().nudges,
        0,
        "a simulation writes nothing"
    );
    for rule in &pb.rules {
        let fired = sim
            .report
            .summary
            .by_rule
            .get(rule.name.as_str())
            .map(|c| c.fired)
            .unwrap_or(0);
        assert!(fired > 0, "default rule {} fired for nobody", rule.name);
    }
    assert!(sim.nudges.iter().all(|n| !n.why.is_empty()));
    let r = plan::run(&ctx, &PlanJob::default()).await.unwrap();
    assert_eq!(r.summary.by_rule, sim.report.summary.by_rule);
    assert_eq!(r.queued as usize, sim.nudges.len());
    let mut stored: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for (kind, status, n) in t.db.nudge_counts_by_kind().await.unwrap() {
        stored.insert((kind, status), n);
    }
    let mut simulated: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for n in &sim.nudges {
        *simulated
            .entry((n.rule.clone(), n.status.as_str().to_owned()))
            .or_default() += 1;
    }
    assert_eq!(stored, simulated);
}
both_backends!(
    simulation_counts_match_planning_on_the_demo_population,
    super::simulation_matches_planning
);

#[test]
fn readme_documents_every_default_rule_trigger_and_contact_column() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let pb = attune::playbook::Playbook::default_playbook();
    for rule in &pb.rules {
        assert!(
            readme.contains(&format!("| `{}` |", rule.name)),
            "README does not document the default rule {}",
            rule.name
        );
        assert!(
            readme.contains(&format!("| `{}` |", rule.trigger.source.name())),
            "README does not document the trigger {}",
            rule.trigger.source.name()
        );
    }
    for (column, _) in attune::playbook::contacts::CONTACT_COLUMNS {
        assert!(
            readme.contains(&format!("`{column}`")),
            "README does not document the contact column {column}"
        );
    }
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/attune.example.toml"))
            .unwrap();
    for key in [
        "max_nudges",
        "window_days",
        "quiet_hours_start",
        "quiet_hours_end",
        "default_timezone",
        "value_horizon_months",
        "medium_risk_from",
        "high_risk_from",
        "file",
    ] {
        assert!(
            example.contains(key),
            "attune.example.toml does not document [playbook] {key}"
        );
    }
}
