//! Features from the database's rollups: the same values whatever arrived after the day,
//! and the same values whether the rollups are read whole or only as far back as the spec
//! needs.

use attune::domain::{ActivityEvent, CustomerId, EventKind};
use attune::features::{Activity, FeatureRow, FeatureSpec, Lookback, compute, day_number};
use attune::store::Db;
use chrono::{Days, NaiveDate};

use super::helpers::TestDb;
use crate::both_backends;

async fn features_as_of(db: &Db, day: NaiveDate, lookback: &Lookback) -> Vec<(i64, FeatureRow)> {
    let spec = FeatureSpec::default_spec();
    let customers = db.customers_active_on(day).await.unwrap();
    let ids: Vec<i64> = customers.iter().map(|(id, _)| *id).collect();
    let activity = db
        .activity_of(&ids, day_number(day), lookback)
        .await
        .unwrap();
    let none = Activity::default();
    customers
        .iter()
        .map(|(id, c)| {
            (
                *id,
                compute(&spec, c, activity.get(id).unwrap_or(&none), day),
            )
        })
        .collect()
}

async fn point_in_time(t: &TestDb) {
    let today: NaiveDate = "2026-06-30".parse().unwrap();
    let pop = attune::demo::synth::generate(&attune::demo::synth::SynthOptions::new(400, 3, today));
    t.db.upsert_customers(&pop.customers).await.unwrap();
    let day = today - Days::new(90);
    // History up to the day, then everything after it in a second delivery.
    let cut = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let (before, after): (Vec<ActivityEvent>, Vec<ActivityEvent>) = pop
        .events
        .iter()
        .cloned()
        .partition(|e| e.occurred_at < cut);
    assert!(!before.is_empty() && !after.is_empty());
    t.db.insert_events(&before).await.unwrap();
    let spec = FeatureSpec::default_spec();
    let early = features_as_of(&t.db, day, &spec.lookback()).await;
    assert_eq!(
        early,
        features_as_of(&t.db, day, &Lookback::everything()).await,
        "reading only what the spec needs gives the same features"
    );

    t.db.insert_events(&after).await.unwrap();
    // Late, out-of-order events dated after the day, for everyone: complaints, usage.
    let late: Vec<ActivityEvent> = pop
        .customers
        .iter()
        .flat_map(|c| {
            [
                EventKind::ComplaintOpened,
                EventKind::Usage,
                EventKind::PaymentFailed,
            ]
            .map(|kind| ActivityEvent {
                customer: CustomerId::parse(c.external_id.as_str()).unwrap(),
                kind,
                occurred_at: cut + chrono::Duration::hours(1),
                value: Some(5.0),
                attributes: Default::default(),
                source: "late".into(),
                source_event_id: format!("{}-{kind}", c.external_id),
            })
        })
        .collect();
    t.db.insert_events(&late).await.unwrap();
    assert_eq!(
        early,
        features_as_of(&t.db, day, &spec.lookback()).await,
        "features as of a past day do not move when later events arrive"
    );
    let next_day = features_as_of(&t.db, day + Days::new(1), &spec.lookback()).await;
    let moved = early
        .iter()
        .zip(&next_day)
        .filter(|(a, b)| a.1["complaints_90d"] != b.1["complaints_90d"])
        .count();
    assert!(
        moved > 300,
        "the day after sees the late complaints: {moved} customers moved"
    );
    assert_eq!(
        next_day,
        features_as_of(&t.db, day + Days::new(1), &Lookback::everything()).await
    );
}
both_backends!(
    features_as_of_a_past_day_ignore_later_events,
    super::point_in_time
);
