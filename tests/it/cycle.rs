//! A full cycle from files in the inbox to nudges queued for review, and the daemon
//! running it from its schedule.

use std::time::Duration;

use attune::domain::NudgeStatus;
use attune::jobs::daemon;
use attune::store::NudgeFilter;

use super::helpers::TestDb;
use crate::both_backends;

async fn import_to_queued_nudges(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| c.pull.inbox = Some(inbox.path().to_owned()));
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 1500, 11, today)
        .await
        .unwrap();

    assert_eq!(summary.pulled.len(), 2);
    let (customers, events) = (&summary.pulled[0], &summary.pulled[1]);
    assert_eq!((customers.stored, customers.rejected), (1500, 0));
    assert_eq!(
        (events.stored as usize, events.rejected, events.duplicate),
        (summary.events, 0, 0)
    );
    assert_eq!(
        (customers.outcome.as_str(), events.outcome.as_str()),
        ("done", "done")
    );
    assert!(
        inbox.path().join("done/events.csv").exists(),
        "pulled files move to done/"
    );

    let auc = summary.model_holdout.as_ref().and_then(|m| m.auc).unwrap();
    assert!(
        auc > 0.65,
        "the demo's churn depends on behaviour, so the model must find it: AUC {auc}"
    );
    let counts = t.db.counts().await.unwrap();
    assert_eq!(counts.scores as usize, summary.score.customers);
    assert!(summary.plan.queued > 20, "{:?}", summary.plan);

    let nudges = t.db.list_nudges(&NudgeFilter::default()).await.unwrap();
    assert_eq!(nudges.len() as u64, summary.plan.queued);
    for n in &nudges {
        let status: NudgeStatus = n.status.parse().unwrap();
        assert!(
            matches!(
                status,
                NudgeStatus::Proposed
                    | NudgeStatus::Approved
                    | NudgeStatus::Deferred
                    | NudgeStatus::Holdout
            ),
            "{n:?}"
        );
        assert!(
            n.reason.0["rule"].is_string() && n.reason.0["why"].is_string(),
            "{:?}",
            n.reason
        );
        assert!(n.reason.0["drivers"].is_array());
    }
    // The contact cap holds: at most two nudges per customer go out now (regulatory
    // notices aside); the rest are deferred or held out.
    let regulatory = ["ombudsman_notice"];
    let mut now_per_customer: std::collections::HashMap<i64, usize> = Default::default();
    for n in nudges.iter().filter(|n| {
        matches!(n.status.as_str(), "proposed" | "approved")
            && !regulatory.contains(&n.kind.as_str())
    }) {
        *now_per_customer.entry(n.customer_id).or_default() += 1;
    }
    assert!(
        now_per_customer.values().all(|n| *n <= 2),
        "{now_per_customer:?}"
    );

    // Scoring recorded each feature's stability against the training data.
    let drift = t.db.drift_for_run(summary.score.run_id).await.unwrap();
    assert!(!drift.is_empty());
    assert!(drift.iter().all(|d| d.psi.is_finite() && d.psi >= 0.0));
    assert!(
        drift.windows(2).all(|w| w[0].psi >= w[1].psi),
        "highest PSI first"
    );

    // The same cycle's planning again queues nothing new.
    let again = attune::jobs::plan::run(
        &ctx,
        &attune::jobs::plan::PlanJob {
            run_id: Some(summary.score.run_id),
            as_of: Some(today),
        },
    )
    .await
    .unwrap();
    assert_eq!(again.queued, 0);
    assert_eq!(
        t.db.counts().await.unwrap().nudges as u64,
        summary.plan.queued
    );
}
both_backends!(
    full_cycle_from_inbox_to_queued_nudges,
    super::import_to_queued_nudges
);

/// Planning after a re-score of a few changed customers (basis: the full run and the
/// re-score) reads every other customer's score from the full run, so it changes none
/// of their nudges: only the re-scored customers' nudges may be withdrawn or added.
async fn planning_after_a_rescore_keeps_the_others(t: &TestDb) {
    use attune::jobs::{plan, score};
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| c.pull.inbox = Some(inbox.path().to_owned()));
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 1500, 11, today)
        .await
        .unwrap();
    let before: std::collections::HashMap<i64, (i64, String)> =
        t.db.list_nudges(&NudgeFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.id, (n.customer_id, n.status.clone())))
            .collect();
    assert!(before.len() as u64 == summary.plan.queued && !before.is_empty());

    // Ten customers log in now; nothing else changes.
    let ids = t.db.customer_id_map().await.unwrap();
    let mut names: Vec<(&String, &i64)> = ids.iter().collect();
    names.sort();
    let changed: Vec<(String, i64)> = names
        .iter()
        .step_by(150)
        .map(|(n, id)| ((*n).clone(), **id))
        .collect();
    assert_eq!(changed.len(), 10);
    let events: Vec<attune::domain::ActivityEvent> = changed
        .iter()
        .map(|(name, _)| super::helpers::login_now(name, "rescore"))
        .collect();
    let stored = t.db.insert_events(&events).await.unwrap();
    assert_eq!(stored.customers_changed, 10);
    let rescore = score::run(
        &ctx,
        &score::ScoreJob {
            tick: None,
            as_of: Some(today),
            changed_only: true,
        },
    )
    .await
    .unwrap();
    // Customers who left before today are not scored.
    assert_eq!(rescore.scope, "changed");
    assert!((1..=10).contains(&rescore.customers), "{rescore:?}");
    assert_eq!(
        t.db.score_basis(Some(rescore.run_id)).await.unwrap(),
        Some((summary.score.run_id, rescore.run_id))
    );
    let report = plan::run(
        &ctx,
        &plan::PlanJob {
            run_id: Some(rescore.run_id),
            as_of: Some(today),
        },
    )
    .await
    .unwrap();
    let rescored: std::collections::HashSet<i64> = changed.iter().map(|c| c.1).collect();
    let after = t.db.list_nudges(&NudgeFilter::default()).await.unwrap();
    let mut moved = Vec::new();
    for n in &after {
        if rescored.contains(&n.customer_id) {
            continue;
        }
        match before.get(&n.id) {
            Some((_, status)) if *status == n.status => {}
            was => moved.push((
                n.id,
                n.customer_id,
                n.kind.clone(),
                was.cloned(),
                n.status.clone(),
            )),
        }
    }
    assert!(
        moved.is_empty(),
        "{} nudges of customers the re-score did not touch changed (of {}; plan {:?}): {:?}",
        moved.len(),
        after.len(),
        report.summary.totals,
        &moved[..moved.len().min(10)]
    );
}
both_backends!(
    planning_after_a_rescore_changes_only_the_rescored_customers_nudges,
    super::planning_after_a_rescore_keeps_the_others
);

/// The overview counts every customer's current score (the full run, replaced by any
/// re-score after it), agreeing with `current_scores`, the definition planning reads; a
/// re-score that found nobody changed leaves the figures as they were and says so.
async fn the_overview_reads_current_scores(t: &TestDb) {
    use attune::jobs::score;
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| c.pull.inbox = Some(inbox.path().to_owned()));
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 600, 5, today).await.unwrap();
    let agree = |threshold: f64| {
        let db = t.db.clone();
        async move {
            let o = db.overview(threshold, 0).await.unwrap();
            let current = db.current_scores().await.unwrap();
            let risky: Vec<_> = current
                .iter()
                .filter(|s| s.probability >= threshold)
                .collect();
            assert_eq!(o.scored, current.len() as i64);
            assert_eq!(o.at_risk, risky.len() as i64, "threshold {threshold}");
            let sum = |xs: &mut dyn Iterator<Item = f64>| xs.sum::<f64>();
            assert!(
                (o.monthly_revenue - sum(&mut current.iter().map(|s| s.monthly_charge))).abs()
                    < 1e-6
            );
            assert!(
                (o.monthly_revenue_at_risk - sum(&mut risky.iter().map(|s| s.monthly_charge)))
                    .abs()
                    < 1e-6
            );
            o
        }
    };
    let before: std::collections::HashMap<i64, f64> =
        t.db.current_scores()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.customer_id, s.probability))
            .collect();
    let o = agree(0.5).await;
    assert_eq!(o.run_id, Some(summary.score.run_id));
    assert_eq!((o.rescores_since, o.latest_rescore), (0, None));

    // Twenty customers logged in yesterday (arriving now) and are re-scored: features
    // see the days before the day scored.
    let ids = t.db.customer_id_map().await.unwrap();
    let mut names: Vec<&String> = ids.keys().collect();
    names.sort();
    let now = chrono::Utc::now();
    let events: Vec<attune::domain::ActivityEvent> = names
        .iter()
        .step_by(30)
        .map(|name| attune::domain::ActivityEvent {
            customer: attune::domain::CustomerId::parse(name).unwrap(),
            kind: attune::domain::Meaning::Login.code(),
            occurred_at: now - chrono::Duration::days(1),
            value: None,
            attributes: Default::default(),
            source: "app".into(),
            source_event_id: format!("overview-{name}"),
        })
        .collect();
    t.db.insert_events(&events).await.unwrap();
    let rescore = |tag: &'static str| {
        let ctx = ctx.clone();
        async move {
            score::run(
                &ctx,
                &score::ScoreJob {
                    tick: None,
                    as_of: Some(today),
                    changed_only: true,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e:#}"))
        }
    };
    let first = rescore("first").await;
    assert!(first.customers > 0, "{first:?}");
    // A threshold between a re-scored customer's old and new score, so one crosses it.
    let after: std::collections::HashMap<i64, f64> =
        t.db.current_scores()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.customer_id, s.probability))
            .collect();
    let moved = after
        .iter()
        .filter_map(|(c, p)| Some((*p, *before.get(c)?)))
        .max_by(|a, b| (a.0 - a.1).abs().total_cmp(&(b.0 - b.1).abs()))
        .unwrap();
    assert!(
        moved.0 != moved.1,
        "a login changed nobody's score: {moved:?}"
    );
    let threshold = (moved.0 + moved.1) / 2.0;
    let o = agree(threshold).await;
    assert_eq!(o.run_id, Some(summary.score.run_id), "still the full run");
    assert_eq!(o.rescores_since, 1);
    assert_eq!(o.rescored_customers, first.customers as i64);
    assert_eq!(o.latest_rescore.map(|r| r.1), Some(first.customers as i64));

    // Nobody changed since: the next re-score scores no one, and the figures stay.
    let second = rescore("second").await;
    assert_eq!(second.customers, 0, "{second:?}");
    let o2 = agree(threshold).await;
    assert_eq!(o2.latest_rescore.map(|r| r.1), Some(0));
    assert_eq!(
        (
            o2.run_id,
            o2.scored,
            o2.at_risk,
            o2.rescored_customers,
            o2.rescores_since
        ),
        (o.run_id, o.scored, o.at_risk, o.rescored_customers, 2)
    );
}
both_backends!(
    the_overview_counts_current_scores_and_a_rescore_that_changed_nothing_leaves_it,
    super::the_overview_reads_current_scores
);

/// The daemon on a one-second schedule: ticks become apalis jobs, workers score and then
/// plan, and a shutdown signal stops it cleanly.
async fn daemon_runs_scheduled_jobs(t: &TestDb) {
    let ctx = t.ctx(|c| {
        c.schedule.score = "* * * * * *".parse().unwrap();
        c.schedule.pull = "0 0 0 1 1 *".parse().unwrap();
        c.worker.shutdown_grace = std::time::Duration::from_secs(5);
    });
    let today = attune::jobs::today();
    t.db.upsert_customers(&[super::helpers::customer(
        "new-1",
        today,
        super::helpers::email_only(),
    )])
    .await
    .unwrap();
    let db = t.db.clone();
    let stop = async move {
        // Long enough for a tick, the score job and the plan job it enqueues, even while
        // the rest of the suite keeps both cores busy (about 2 s alone).
        for _ in 0..180 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if db.counts().await.map(|c| c.nudges > 0).unwrap_or(false) {
                break;
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), daemon::run(ctx, stop))
        .await
        .expect("daemon stops on its signal")
        .unwrap();
    let counts = t.db.counts().await.unwrap();
    assert!(counts.scores >= 1, "a scheduled score job ran");
    let welcomes =
        t.db.list_nudges(&NudgeFilter {
            kind: Some("welcome".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        welcomes.len(),
        1,
        "the plan job after scoring welcomed the new customer once: {:?}",
        t.db.list_nudges(&NudgeFilter::default()).await.unwrap()
    );
    assert!(t.db.tick_count("score").await.unwrap() >= 1);
}
both_backends!(
    daemon_turns_ticks_into_jobs_and_stops_on_signal,
    super::daemon_runs_scheduled_jobs
);
