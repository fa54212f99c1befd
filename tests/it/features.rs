//! Features from the database's rollups: the same values whatever arrived after the day,
//! and the same values whether the rollups are read whole or only as far back as the spec
//! needs.

use std::collections::HashMap;

use attune::domain::{ActivityEvent, CustomerId, Meaning};
use attune::features::{Activity, FeatureRow, FeatureSpec, Lookback, compute, day_number};
use attune::store::Db;
use chrono::{Days, NaiveDate};

use super::helpers::{TestDb, scalar};
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
                Meaning::ComplaintOpened.code(),
                Meaning::Usage.code(),
                Meaning::PaymentFailed.code(),
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
    assert_rollups_match(&t.db, &events, today).await;
}
both_backends!(
    duplicates_anywhere_in_a_large_batch_are_found_exactly,
    super::duplicates_in_a_large_batch
);

/// The rollups of every customer with events in `events` are exactly those events'.
pub(super) async fn assert_rollups_match(db: &Db, events: &[ActivityEvent], today: NaiveDate) {
    let ids = db.customer_ids().await.unwrap();
    let mut by_customer: HashMap<i64, Vec<ActivityEvent>> = HashMap::new();
    for e in events {
        let id = ids
            .get(e.customer.as_str())
            .expect("every customer is known");
        by_customer.entry(id).or_default().push(e.clone());
    }
    let wanted: Vec<i64> = by_customer.keys().copied().collect();
    let stored = db
        .activity_of(&wanted, day_number(today) + 1, &Lookback::everything())
        .await
        .unwrap();
    assert_eq!(stored.len(), by_customer.len());
    for (id, evs) in &by_customer {
        assert_eq!(stored[id], Activity::from_events(evs), "customer {id}");
    }
}

fn batch(events: Vec<ActivityEvent>) -> attune::store::IngestBatch {
    attune::store::IngestBatch {
        source: "import".into(),
        events,
        ..Default::default()
    }
}

/// A transaction large enough to write in bulk (on PostgreSQL: `COPY` for days holding no
/// events yet, row by row for the days that do): events already stored, events sent twice
/// in one batch and in two batches of the transaction are each found, and the rollups
/// hold exactly what the events add up to.
async fn bulk_transactions(t: &TestDb) {
    let today: NaiveDate = "2026-06-30".parse().unwrap();
    let pop = attune::demo::synth::generate(&attune::demo::synth::SynthOptions::new(900, 3, today));
    t.db.upsert_customers(&pop.customers).await.unwrap();
    let events = pop.events.clone();
    assert!(
        events.len() > 25_000,
        "{} events: a bulk batch",
        events.len()
    );
    // A third of the events before June: those days hold events (written row by row).
    let june = "2026-06-01T00:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let earlier: Vec<ActivityEvent> = events
        .iter()
        .filter(|e| e.occurred_at < june)
        .step_by(3)
        .cloned()
        .collect();
    assert!(earlier.len() > 1_000);
    t.db.insert_events(&earlier).await.unwrap();

    // Everything, with 70 June events (days with none yet) sent twice in the first batch
    // and 50 more again in a second batch of the same transaction.
    let in_june: Vec<&ActivityEvent> = events.iter().filter(|e| e.occurred_at >= june).collect();
    assert!(in_june.len() > 2_000);
    let mut first = events.clone();
    first.extend(in_june.iter().step_by(7).take(70).map(|e| (*e).clone()));
    let second: Vec<ActivityEvent> = in_june
        .iter()
        .skip(3)
        .step_by(11)
        .take(50)
        .map(|e| (*e).clone())
        .collect();
    let ids = t.db.customer_ids().await.unwrap();
    let stream = |fail| {
        let (db, ids) = (t.db.clone(), ids.clone());
        let (first, second) = (batch(first.clone()), batch(second.clone()));
        async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(2);
            tx.send(first).await.unwrap();
            tx.send(second).await.unwrap();
            drop(tx);
            db.ingest_stream(&ids, &mut rx, usize::MAX, fail).await
        }
    };
    // A crash after every write but before the commit keeps nothing of it.
    stream(attune::store::FailPoint::BeforeCommit)
        .await
        .unwrap_err();
    assert_eq!(t.db.counts().await.unwrap().events as usize, earlier.len());
    let r = stream(attune::store::FailPoint::Never)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.stored as usize, r.duplicate as usize),
        (events.len() - earlier.len(), earlier.len() + 70 + 50)
    );
    assert_eq!(t.db.counts().await.unwrap().events as usize, events.len());
    assert_rollups_match(&t.db, &events, today).await;

    // The whole file again: every event a duplicate, nothing added.
    let again = t.db.insert_events(&events).await.unwrap();
    assert_eq!((again.stored, again.duplicate as usize), (0, events.len()));
    assert_rollups_match(&t.db, &events, today).await;
}
both_backends!(
    bulk_transactions_find_every_duplicate_and_roll_up_exactly,
    super::bulk_transactions
);

/// A request writing a day while a bulk transaction holds it: it waits for the bulk
/// transaction's commit, then finds the event the two share already stored. Here the bulk
/// transaction copies the shared event in its second batch, after the request came: had
/// the request not waited, its commit would have broken the bulk transaction's `COPY`.
/// Whichever order they end in, each event is stored once and counted once.
async fn bulk_and_request_on_one_day(t: &TestDb) {
    let today: NaiveDate = "2026-06-30".parse().unwrap();
    let pop = attune::demo::synth::generate(&attune::demo::synth::SynthOptions::new(900, 3, today));
    t.db.upsert_customers(&pop.customers).await.unwrap();
    let mut events = pop.events.clone();
    let shared = events.pop().unwrap();
    let mut fresh = shared.clone();
    fresh.source_event_id = format!("{}-request-only", shared.source_event_id);
    assert!(
        events
            .iter()
            .any(|e| e.occurred_at.date_naive() == shared.occurred_at.date_naive()),
        "the bulk transaction's first batch holds the shared event's day"
    );
    let ids = t.db.customer_ids().await.unwrap();

    // The bulk transaction writes its first batch, then waits for more with its days held.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tx.send(batch(events.clone())).await.unwrap();
    let bulk = {
        let (db, ids) = (t.db.clone(), ids.clone());
        tokio::spawn(async move {
            db.ingest_stream(&ids, &mut rx, usize::MAX, attune::store::FailPoint::Never)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let request = {
        let (db, ids) = (t.db.clone(), ids.clone());
        let body = vec![shared.clone(), fresh.clone()];
        tokio::spawn(async move {
            db.ingest(&ids, &batch(body), attune::store::FailPoint::Never)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tx.send(batch(vec![shared.clone()])).await.unwrap();
    drop(tx);
    let bulk = tokio::time::timeout(std::time::Duration::from_secs(60), bulk)
        .await
        .expect("the bulk transaction ends")
        .unwrap()
        .unwrap()
        .unwrap();
    let request = tokio::time::timeout(std::time::Duration::from_secs(60), request)
        .await
        .expect("the request ends")
        .unwrap()
        .unwrap();
    assert_eq!(bulk.stored + request.stored, events.len() as u64 + 2);
    assert_eq!(bulk.duplicate + request.duplicate, 1);
    assert_eq!(
        t.db.counts().await.unwrap().events as usize,
        events.len() + 2
    );
    events.push(shared);
    events.push(fresh);
    assert_rollups_match(&t.db, &events, today).await;
}
both_backends!(
    a_request_and_a_bulk_transaction_on_one_day_store_each_event_once,
    super::bulk_and_request_on_one_day
);

/// SQLite's rollups by column (`store::events::blocks`): ingest keeps each day's blocks with
/// its rows; days stored before blocks existed are read from their rows until
/// `seal_rollup_days` builds their blocks; late events into either kind of day; and every
/// way gives the activity the events add up to. At the end every row's count is made wrong
/// and the blocks alone still give the right activity: the scans read them, and they are
/// complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rollup_blocks_read_as_the_rows_do() {
    let t = TestDb::sqlite().await;
    let Db::Sqlite(pool, ..) = &t.db else {
        unreachable!()
    };
    let sql = |q: &'static str| async move {
        sqlx::raw_sql(q).execute(pool).await.unwrap();
    };
    let today: NaiveDate = "2026-06-30".parse().unwrap();
    let pop = attune::demo::synth::generate(&attune::demo::synth::SynthOptions::new(600, 5, today));
    t.db.upsert_customers(&pop.customers).await.unwrap();
    let june = "2026-06-01T00:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let (before, after): (Vec<ActivityEvent>, Vec<ActivityEvent>) = pop
        .events
        .iter()
        .cloned()
        .partition(|e| e.occurred_at < june);
    t.db.insert_events(&before).await.unwrap();
    let days = "SELECT COUNT(DISTINCT day) FROM activity_daily";
    let sealed = "SELECT COUNT(*) FROM activity_block_days";
    assert!(scalar(&t.db, days).await > 100);
    assert_eq!(scalar(&t.db, sealed).await, scalar(&t.db, days).await);
    assert_rollups_match(&t.db, &before, today).await;

    // The days before June as if stored before blocks: read from their rows.
    sql("DELETE FROM activity_blocks; DELETE FROM activity_block_days").await;
    assert_rollups_match(&t.db, &before, today).await;

    // June's days are new (sealed as they are written); late events land on old days,
    // which stay unsealed, and on a June day, whose touched blocks are rebuilt.
    t.db.insert_events(&after).await.unwrap();
    let late: Vec<ActivityEvent> = pop
        .customers
        .iter()
        .step_by(2)
        .flat_map(|c| {
            ["2026-03-03T10:00:00Z", "2026-06-15T10:00:00Z"].map(|at| ActivityEvent {
                customer: CustomerId::parse(c.external_id.as_str()).unwrap(),
                kind: Meaning::Usage.code(),
                occurred_at: at.parse().unwrap(),
                value: Some(1.5),
                attributes: Default::default(),
                source: "late".into(),
                source_event_id: format!("{}-{at}", c.external_id),
            })
        })
        .collect();
    t.db.insert_events(&late).await.unwrap();
    let all: Vec<ActivityEvent> = pop.events.iter().cloned().chain(late).collect();
    let june_days = scalar(&t.db, sealed).await;
    assert!(
        (25..=31).contains(&june_days),
        "{june_days} June days sealed"
    );
    assert_rollups_match(&t.db, &all, today).await;

    // Sealing builds the old days' blocks once.
    let old_days = t.db.seal_rollup_days().await.unwrap() as i64;
    assert_eq!(old_days + june_days, scalar(&t.db, days).await);
    assert_eq!(t.db.seal_rollup_days().await.unwrap(), 0);
    assert_rollups_match(&t.db, &all, today).await;

    // The blocks alone.
    sql("UPDATE activity_daily SET n = n + 1000").await;
    assert_rollups_match(&t.db, &all, today).await;
}
