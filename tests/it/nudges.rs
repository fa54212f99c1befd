//! The playbook's guardrails against a real database, and marketing's review.

use attune::domain::{Channel, Consent, NudgeStatus};
use attune::jobs::plan::{self, PlanJob};
use attune::store::NudgeFilter;

use super::helpers::{TestDb, customer, d, email_only};
use crate::both_backends;

async fn consent_and_cap_hold(t: &TestDb) {
    let today = d("2026-11-23");
    let signup = d("2026-11-20");
    let none = customer("no-consent", signup, Consent::default());
    let mut post_only = customer(
        "post-only",
        signup,
        Consent {
            post: true,
            ..Consent::default()
        },
    );
    post_only.preferred_channel = Channel::Email;
    t.db.upsert_customers(&[customer("ok", signup, email_only()), none, post_only])
        .await
        .unwrap();
    let ctx = t.ctx(|_| {});
    let r = plan::run(
        &ctx,
        &PlanJob {
            run_id: None,
            as_of: Some(today),
        },
    )
    .await
    .unwrap();
    assert_eq!((r.queued, r.summary.totals.no_consented_channel), (2, 1));
    let nudges = t.db.list_nudges(&NudgeFilter::default()).await.unwrap();
    let mut got: Vec<(String, String, String)> = nudges
        .iter()
        .map(|n| (n.external_id.clone(), n.kind.clone(), n.channel.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("ok".into(), "welcome".into(), "email".into()),
            ("post-only".into(), "welcome".into(), "post".into())
        ]
    );

    // A complaint a day before: with one nudge allowed in the window, the follow-up is
    // deferred behind the welcome, not dropped.
    let ids = t.db.customer_id_map().await.unwrap();
    let complaint = attune::domain::ActivityEvent {
        customer: attune::domain::CustomerId::parse("ok").unwrap(),
        kind: attune::domain::Meaning::ComplaintOpened.code(),
        occurred_at: d("2026-11-22").and_hms_opt(9, 0, 0).unwrap().and_utc(),
        value: None,
        attributes: Default::default(),
        source: "crm".into(),
        source_event_id: "c-1".into(),
    };
    t.db.insert_events(&[complaint]).await.unwrap();
    let ctx = t.ctx(|c| c.playbook.max_nudges = 1);
    let r = plan::run(
        &ctx,
        &PlanJob {
            run_id: None,
            as_of: Some(today),
        },
    )
    .await
    .unwrap();
    assert_eq!(r.queued, 1);
    let follow_up =
        t.db.list_nudges(&NudgeFilter {
            kind: Some("complaint_follow_up".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(follow_up.len(), 1);
    assert_eq!(follow_up[0].customer_id, ids["ok"]);
    assert_eq!(
        (follow_up[0].channel.as_str(), follow_up[0].status.as_str()),
        ("email", "deferred"),
        "no consent to calls, so not by phone; over the cap, so deferred"
    );
    // Run twice: nothing new, the same occasions are already queued.
    let r = plan::run(
        &ctx,
        &PlanJob {
            run_id: None,
            as_of: Some(today),
        },
    )
    .await
    .unwrap();
    assert_eq!((r.queued, r.already_queued), (0, 3));
}
both_backends!(consent_and_seven_day_cap_hold, super::consent_and_cap_hold);

async fn review_decisions_are_audited(t: &TestDb) {
    // Two customers two months before their contract ends: renewals wait for review.
    let signup = d("2024-01-01");
    let mut x = customer("x", signup, email_only());
    x.contract_end = Some(d("2026-12-20"));
    let mut y = customer("y", signup, email_only());
    y.contract_end = Some(d("2026-12-20"));
    t.db.upsert_customers(&[x, y]).await.unwrap();
    let ctx = t.ctx(|_| {});
    plan::run(
        &ctx,
        &PlanJob {
            run_id: None,
            as_of: Some(d("2026-11-23")),
        },
    )
    .await
    .unwrap();
    let ids: Vec<i64> =
        t.db.list_nudges(&NudgeFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
    assert_eq!(ids.len(), 2);

    let o =
        t.db.decide_nudges(&[ids[0]], NudgeStatus::Approved, "maria", None)
            .await
            .unwrap();
    assert_eq!(o.decided, vec![ids[0]]);
    let o =
        t.db.decide_nudges(
            &[ids[1], ids[0], 9999],
            NudgeStatus::Rejected,
            "tom",
            Some("wrong tone"),
        )
        .await
        .unwrap();
    assert_eq!(o.decided, vec![ids[1]]);
    assert_eq!(o.already_decided, vec![(ids[0], "approved".to_string())]);
    assert_eq!(o.not_found, vec![9999]);

    let approved =
        t.db.list_nudges(&NudgeFilter {
            status: Some(NudgeStatus::Approved),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (approved.len(), approved[0].decided_by.as_deref()),
        (1, Some("maria"))
    );
    let rejected =
        t.db.list_nudges(&NudgeFilter {
            status: Some(NudgeStatus::Rejected),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rejected[0].decision_reason.as_deref(), Some("wrong tone"));

    let audit = t.db.audit_entries(10).await.unwrap();
    let got: Vec<(String, String, String)> = audit
        .iter()
        .map(|a| (a.actor.clone(), a.action.clone(), a.subject.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "tom".into(),
                "nudge.rejected".into(),
                format!("nudge:{}", ids[1])
            ),
            (
                "maria".into(),
                "nudge.approved".into(),
                format!("nudge:{}", ids[0])
            ),
        ]
    );
    assert_eq!(audit[0].detail.0["reason"], "wrong tone");
}
both_backends!(
    review_decisions_are_audited_and_never_overwritten,
    super::review_decisions_are_audited
);
