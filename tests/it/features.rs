//! Features from the database's rollups: the same values whatever arrived after the day,
//! and the same values whether the rollups are read whole or only as far back as the spec
//! needs.

use std::collections::HashMap;

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

/// Thousands of events in one batch, some stored before and some sent twice in the batch:
/// every duplicate is found (SQLite writes many rows a statement and tells which were new
/// by the ids they got), and the rollups hold exactly what the events add up to.
async fn duplicates_in_a_large_batch(t: &TestDb) {
    let today: NaiveDate = "2026-06-30".parse().unwrap();
    let pop = attune::demo::synth::generate(&attune::demo::synth::SynthOptions::new(300, 3, today));
    t.db.upsert_customers(&pop.customers).await.unwrap();
    let events = pop.events.clone();
    assert!(events.len() > 1_000, "a batch many statements long");
    let earlier: Vec<ActivityEvent> = events.iter().step_by(3).cloned().collect();
    let first = t.db.insert_events(&earlier).await.unwrap();
    assert_eq!(first.stored as usize, earlier.len());

    // Everything, with 70 events sent a second time inside the batch.
    let mut again = events.clone();
    again.extend(events.iter().skip(1).step_by(3).take(70).cloned());
    let r = t.db.insert_events(&again).await.unwrap();
    assert_eq!(
        (r.stored as usize, r.duplicate as usize),
        (events.len() - earlier.len(), earlier.len() + 70)
    );
    assert_eq!(t.db.counts().await.unwrap().events as usize, events.len());

    // The rollups of every customer are those of their events, counted once.
    let ids = t.db.customer_ids().await.unwrap();
    let mut by_customer: HashMap<i64, Vec<ActivityEvent>> = HashMap::new();
    for e in &events {
        let id = ids
            .get(e.customer.as_str())
            .expect("every customer is known");
        by_customer.entry(id).or_default().push(e.clone());
    }
    let wanted: Vec<i64> = by_customer.keys().copied().collect();
    let stored =
        t.db.activity_of(&wanted, day_number(today) + 1, &Lookback::everything())
            .await
            .unwrap();
    assert_eq!(stored.len(), by_customer.len());
    for (id, evs) in &by_customer {
        assert_eq!(stored[id], Activity::from_events(evs), "customer {id}");
    }
}
both_backends!(
    duplicates_anywhere_in_a_large_batch_are_found_exactly,
    super::duplicates_in_a_large_batch
);
