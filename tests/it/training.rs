//! Training on history: point in time (no leaks), the retrain gate, and rollback.

use attune::domain::{ActivityEvent, CustomerId, Meaning};
use attune::features::FeatureSpec;
use attune::jobs::train::{HistoryOptions, TrainOptions, history_observations, train_from_history};
use attune::model::dataset::observation_dates;
use chrono::Days;

use super::helpers::{TestDb, customer, d, email_only};
use crate::both_backends;

fn event(id: &str, kind: Meaning, day: chrono::NaiveDate, n: usize) -> ActivityEvent {
    ActivityEvent {
        customer: CustomerId::parse(id).unwrap(),
        kind: kind.code(),
        occurred_at: day.and_hms_opt(12, 0, 0).unwrap().and_utc(),
        value: None,
        attributes: Default::default(),
        source: "test".into(),
        source_event_id: format!("{id}-{}-{n}", kind.as_str()),
    }
}

/// A feature known only once a customer has churned (failed payments on the day they
/// leave) must not reach the observations of the days before.
async fn planted_leak_is_not_seen(t: &TestDb) {
    let today = d("2026-09-30");
    let dates = observation_dates(today, 60, 3);
    assert_eq!(
        dates,
        vec![d("2026-06-01"), d("2026-07-01"), d("2026-08-01")]
    );
    let mut customers = Vec::new();
    let mut ordinary = Vec::new();
    for i in 0..120 {
        let id = format!("k{i:03}");
        let mut c = customer(&id, d("2025-01-01"), email_only());
        if i % 3 == 0 {
            c.churned_on = Some(d("2026-06-15") + Days::new(i as u64 % 40));
        }
        ordinary.push(event(&id, Meaning::Login, d("2026-05-10"), 0));
        ordinary.push(event(&id, Meaning::Usage, d("2026-05-20"), 0));
        customers.push(c);
    }
    t.db.upsert_customers(&customers).await.unwrap();
    t.db.insert_events(&ordinary).await.unwrap();
    let before = history_observations(&t.db, &FeatureSpec::default_spec(), &contract(60), &dates)
        .await
        .unwrap();

    // The leak: every churner fails two payments on the day they leave.
    let leak: Vec<ActivityEvent> = customers
        .iter()
        .filter_map(|c| c.churned_on.map(|day| (c, day)))
        .flat_map(|(c, day)| {
            (0..2).map(move |n| event(c.external_id.as_str(), Meaning::PaymentFailed, day, n))
        })
        .collect();
    assert_eq!(t.db.insert_events(&leak).await.unwrap().stored, 80);
    let after = history_observations(&t.db, &FeatureSpec::default_spec(), &contract(60), &dates)
        .await
        .unwrap();
    assert_eq!(before.obs.len(), after.obs.len());
    assert_eq!(
        before, after,
        "observations must not change when events after their day arrive"
    );
    // On the first day, churners are labelled but their failed payments are invisible.
    let first = after
        .obs
        .iter()
        .filter(|o| o.as_of == dates[0] && o.label)
        .count();
    assert!(first > 0);
    assert!(
        after
            .obs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_of == dates[0])
            .all(|(i, _)| after.frame.row(i)["payment_failures_90d"]
                == attune::features::FeatureValue::Num(0.0))
    );
}
both_backends!(
    planted_leak_is_invisible_to_the_point_in_time_builder,
    super::planted_leak_is_not_seen
);

fn history(today: chrono::NaiveDate, seed: u64) -> HistoryOptions {
    let training = attune::config::Training {
        horizon_days: 60,
        observation_count: 6,
        seed,
        ..Default::default()
    };
    HistoryOptions::from_config(&training, contract(60), today)
}

fn contract(horizon_days: u32) -> attune::features::churn::ChurnDefinition {
    attune::features::churn::ChurnDefinition::Contract { horizon_days }
}

async fn demo_population(
    t: &TestDb,
) -> (
    attune::jobs::JobContext,
    tempfile::TempDir,
    chrono::NaiveDate,
) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| c.pull.inbox = Some(inbox.path().to_owned()));
    let today = attune::jobs::today();
    attune::demo::run_cycle(&ctx, 2000, 5, today).await.unwrap();
    (ctx, inbox, today)
}

/// A model that knows nothing: every customer gets the base rate.
fn know_nothing(like: &attune::model::ModelArtifact) -> attune::model::ModelArtifact {
    let mut m = like.clone();
    m.version = "know-nothing".into();
    for f in &mut m.features {
        f.coefficient = 0.0;
    }
    m
}

async fn retrain_gate(t: &TestDb) {
    let (ctx, _inbox, today) = demo_population(t).await;
    let trained = train_from_history(
        &t.db,
        &attune::domain::EventKinds::builtin(),
        &FeatureSpec::default_spec(),
        &history(today, 5),
        &TrainOptions {
            seed: Some(5),
            version: Some("good".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // A champion that knows nothing: the real challenger is better and is promoted.
    let weak = know_nothing(&trained.model);
    attune::jobs::train::register(&t.db, &weak, None, true)
        .await
        .unwrap();
    let d1 = attune::jobs::retrain::decide(&ctx, &trained, "test")
        .await
        .unwrap();
    assert!(d1.promoted, "{:?}", d1);
    assert_eq!(
        t.db.champion_model().await.unwrap().unwrap().version,
        "good"
    );
    assert!(d1.champion.as_ref().unwrap().auc.unwrap() < d1.challenger.auc.unwrap());

    // Now a worse challenger: refused, the champion stays, and the log has both numbers.
    let mut worse = trained.clone();
    worse.model = know_nothing(&trained.model);
    worse.model.version = "worse".into();
    let d2 = attune::jobs::retrain::decide(&ctx, &worse, "test")
        .await
        .unwrap();
    assert!(!d2.promoted, "{:?}", d2);
    assert_eq!(
        t.db.champion_model().await.unwrap().unwrap().version,
        "good"
    );
    let audit = t.db.audit_entries(5).await.unwrap();
    let kept = audit
        .iter()
        .find(|a| a.action == "model.kept_champion")
        .expect("the refusal is logged");
    assert_eq!(kept.detail.0["challenger"]["version"], "worse");
    assert_eq!(kept.detail.0["champion"]["version"], "good");
    assert!(
        kept.detail.0["champion"]["auc"].is_number()
            && kept.detail.0["challenger"]["auc"].is_number()
    );
}
both_backends!(
    retrain_gate_refuses_worse_and_promotes_better,
    super::retrain_gate
);

async fn rollback_restores_scores(t: &TestDb) {
    let (ctx, _inbox, today) = demo_population(t).await;
    let job = attune::jobs::score::ScoreJob {
        tick: None,
        as_of: Some(today),
        changed_only: false,
    };
    let first = attune::jobs::score::run(&ctx, &job).await.unwrap();
    let scores_1 = t.db.scores_for_run(first.run_id).await.unwrap();

    let other = train_from_history(
        &t.db,
        &attune::domain::EventKinds::builtin(),
        &FeatureSpec::default_spec(),
        &history(today, 99),
        &TrainOptions {
            seed: Some(99),
            version: Some("other".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    attune::jobs::train::register(&t.db, &other.model, Some(&other.window), true)
        .await
        .unwrap();
    let second = attune::jobs::score::run(&ctx, &job).await.unwrap();
    assert_eq!(second.model_version, "other");
    let scores_2 = t.db.scores_for_run(second.run_id).await.unwrap();
    assert_ne!(
        scores_1.iter().map(|s| s.probability).collect::<Vec<_>>(),
        scores_2.iter().map(|s| s.probability).collect::<Vec<_>>()
    );

    let (restored, replaced) =
        t.db.rollback_model("test", "other model misbehaves")
            .await
            .unwrap();
    assert_eq!(
        (restored.as_str(), replaced.as_str()),
        (first.model_version.as_str(), "other")
    );
    let third = attune::jobs::score::run(&ctx, &job).await.unwrap();
    assert_eq!(third.model_version, first.model_version);
    let scores_3 = t.db.scores_for_run(third.run_id).await.unwrap();
    let pairs = |s: &[attune::store::ScoreRow]| {
        s.iter()
            .map(|r| (r.customer_id, r.probability))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(&scores_1),
        pairs(&scores_3),
        "rollback restores the previous champion's scores"
    );
}
both_backends!(
    rollback_restores_the_previous_champions_scores,
    super::rollback_restores_scores
);
