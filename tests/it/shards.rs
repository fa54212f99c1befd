//! Scoring runs split into shards (issue 22): on PostgreSQL a run is cut into ranges of
//! customer ids that any daemon may take; the scores are those one unsplit run computes,
//! every customer once; a shard taken back from a holder that stopped is redone, and what
//! the holder wrote is gone and it can write no more. SQLite scores a run as one shard.

use std::collections::HashMap;

use attune::jobs::score::{self, ScoreJob};
use attune::store::Db;

use super::helpers::{TestDb, scalar};
use crate::both_backends;

/// Each customer's probability and drivers (as stored) in run `run`.
async fn scores_of(db: &Db, run: i64) -> HashMap<i64, (f64, Vec<u8>)> {
    let rows: Vec<(i64, f64, Vec<u8>)> = match db {
        Db::Sqlite(p, ..) => {
            sqlx::query_as("SELECT customer_id, probability, drivers FROM scores WHERE run_id = $1")
                .bind(run)
                .fetch_all(p)
                .await
                .unwrap()
        }
        Db::Postgres(p) => {
            sqlx::query_as("SELECT customer_id, probability, drivers FROM scores WHERE run_id = $1")
                .bind(run)
                .fetch_all(p)
                .await
                .unwrap()
        }
    };
    let n = rows.len();
    let map: HashMap<i64, (f64, Vec<u8>)> = rows.into_iter().map(|(c, p, d)| (c, (p, d))).collect();
    assert_eq!(map.len(), n, "a customer scored twice in run {run}");
    map
}

fn full(today: chrono::NaiveDate, tick: Option<&str>) -> ScoreJob {
    ScoreJob {
        tick: tick.map(str::to_owned),
        as_of: Some(today),
        changed_only: false,
    }
}

/// A run split into shards of 100 customers (PostgreSQL) scores every customer once with
/// the probability and drivers a run in one shard gives, with the same drift; so does a
/// `changed` run, which also clears the marks it covered. On SQLite every run is one shard.
async fn a_run_in_shards_scores_as_one_run_would(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let sharded = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.scoring.shard_customers = 100;
    });
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&sharded, 1500, 21, today)
        .await
        .unwrap();
    let split = summary.score.run_id;
    let whole = t.ctx(|c| c.scoring.shard_customers = 10_000_000);
    let one = score::run(&whole, &full(today, None)).await.unwrap();

    let shards = t.db.run_shards(split).await.unwrap();
    let expect_shards = if t.db.backend() == "sqlite" {
        1..=1
    } else {
        // 1,500 customers, some gone before today: about a shard per 100.
        10..=15
    };
    assert!(
        expect_shards.contains(&shards.len()),
        "{} shards",
        shards.len()
    );
    assert!(shards.iter().all(|s| s.status == "done" && s.attempts == 1));
    assert_eq!(t.db.run_shards(one.run_id).await.unwrap().len(), 1);
    // The ranges cover the id space without overlap.
    assert_eq!(shards[0].after_id, i64::MIN);
    assert_eq!(shards.last().unwrap().upto_id, i64::MAX);
    assert!(shards.windows(2).all(|w| w[0].upto_id == w[1].after_id));
    assert_eq!(
        shards.iter().map(|s| s.scored.unwrap()).sum::<i64>() as usize,
        summary.score.customers
    );

    let a = scores_of(&t.db, split).await;
    let b = scores_of(&t.db, one.run_id).await;
    assert_eq!(a.len(), summary.score.customers);
    assert_eq!(a.len(), one.customers);
    assert_eq!(
        (summary.score.at_risk, summary.score.customers),
        (one.at_risk, one.customers)
    );
    for (id, (p, drivers)) in &b {
        let (q, d) = a
            .get(id)
            .unwrap_or_else(|| panic!("customer {id} not in the split run"));
        assert_eq!((p, drivers), (q, d), "customer {id}");
    }
    let (da, db) = (
        t.db.drift_for_run(split).await.unwrap(),
        t.db.drift_for_run(one.run_id).await.unwrap(),
    );
    assert_eq!(da.len(), db.len());
    assert!(!da.is_empty());
    for (x, y) in da.iter().zip(&db) {
        assert_eq!(x.feature, y.feature);
        assert!(
            (x.psi - y.psi).abs() < 1e-9,
            "{} {} {}",
            x.feature,
            x.psi,
            y.psi
        );
    }

    // A `changed` run: 300 customers log in.
    let ids = t.db.customer_id_map().await.unwrap();
    let mut names: Vec<(&String, &i64)> = ids.iter().collect();
    names.sort();
    let now = chrono::Utc::now();
    let events: Vec<attune::domain::ActivityEvent> = names
        .iter()
        .step_by(5)
        .map(|(name, _)| attune::domain::ActivityEvent {
            customer: attune::domain::CustomerId::parse(name).unwrap(),
            kind: attune::domain::Meaning::Login.code(),
            occurred_at: now - chrono::Duration::minutes(5),
            value: None,
            attributes: Default::default(),
            source: "app".into(),
            source_event_id: format!("shards-{name}"),
        })
        .collect();
    let stored = t.db.insert_events(&events).await.unwrap();
    assert_eq!(stored.customers_changed, 300);
    let changed = score::run(
        &sharded,
        &ScoreJob {
            tick: None,
            as_of: Some(today),
            changed_only: true,
        },
    )
    .await
    .unwrap();
    let shards = t.db.run_shards(changed.run_id).await.unwrap();
    let expect_shards = if t.db.backend() == "sqlite" { 1 } else { 3 };
    assert_eq!(shards.len(), expect_shards);
    let c = scores_of(&t.db, changed.run_id).await;
    assert_eq!(c.len(), changed.customers);
    // Those still customers today: the 300, less those who left.
    assert!((200..=300).contains(&c.len()), "{}", c.len());
    let logged_in: std::collections::HashSet<i64> =
        names.iter().step_by(5).map(|(_, id)| **id).collect();
    assert!(c.keys().all(|id| logged_in.contains(id)));
    assert!(t.db.changed_customers(10).await.unwrap().is_empty());
}
both_backends!(
    a_run_in_shards_scores_as_one_run_would,
    super::a_run_in_shards_scores_as_one_run_would
);

/// A run whose process died mid-shard: its shard's claim runs out, the tick's job (retried
/// or taken back by another daemon) carries on with the same run, takes the shard back,
/// removes what the dead holder wrote and redoes it; the old holder can no longer write
/// or finish. Every customer is scored once, as a fresh run scores them.
async fn a_shard_taken_back_is_redone_once(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.scoring.shard_customers = 100;
    });
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 800, 5, today).await.unwrap();
    let reference = scores_of(&t.db, summary.score.run_id).await;

    // A daemon opens the tick's run, splits it and dies inside its first shard, after
    // writing two scores of its own.
    let tick = "score@2026-12-07T21:00:00Z";
    let model = ctx.scoring_model().await.unwrap();
    let (run, _) =
        t.db.start_scoring_run(&model.version, today, tick, "full", "ghost", None)
            .await
            .unwrap();
    let per = if t.db.backend() == "sqlite" {
        i64::MAX
    } else {
        100
    };
    let ranges = t.db.shard_ranges(today, per).await.unwrap();
    t.db.split_run(run, &ranges).await.unwrap();
    let ghost =
        t.db.claim_shard(run, None, "ghost", -1)
            .await
            .unwrap()
            .unwrap();
    assert_eq!((ghost.shard, ghost.attempt), (0, 1));
    let mine: Vec<i64> = {
        let mut ids: Vec<i64> = reference
            .keys()
            .copied()
            .filter(|id| *id > ghost.range.after_id && *id <= ghost.range.upto_id)
            .collect();
        ids.sort_unstable();
        ids.truncate(2);
        ids
    };
    let bogus = |ids: &[i64]| -> Vec<attune::store::NewScore> {
        ids.iter()
            .map(|id| attune::store::NewScore {
                customer_id: *id,
                probability: 0.123,
                drivers: vec![],
            })
            .collect()
    };
    assert!(
        t.db.insert_shard_scores(&ghost, -1, bogus(&mine))
            .await
            .unwrap()
    );

    // The tick's job again: the same run, carried on.
    let report = score::run(&ctx, &full(today, Some(tick))).await.unwrap();
    assert_eq!(report.run_id, run);
    let redone = t.db.run_shards(run).await.unwrap();
    assert_eq!(redone[0].attempts, 2, "{redone:?}");
    assert!(redone.iter().all(|s| s.status == "done"));
    // The ghost's claim is fenced off: nothing it writes or finishes counts.
    assert!(
        !t.db
            .insert_shard_scores(&ghost, 60, bogus(&mine[..1]))
            .await
            .unwrap()
    );
    assert_eq!(t.db.finish_shard(&ghost, 2, "{}").await.unwrap(), None);
    let got = scores_of(&t.db, run).await;
    assert_eq!(got.len(), reference.len());
    assert_eq!(got.len(), report.customers);
    for (id, (p, _)) in &reference {
        assert_eq!(got.get(id).map(|g| g.0), Some(*p), "customer {id}");
    }
    let finished = t.db.scoring_run(run).await.unwrap().unwrap();
    assert_eq!(finished.customers as usize, reference.len());
    // Running the tick's job once more changes nothing: the run is finished.
    let again = score::run(&ctx, &full(today, Some(tick))).await.unwrap();
    assert_eq!((again.run_id, again.customers), (run, report.customers));
    assert_eq!(
        scalar(
            &t.db,
            &format!("SELECT COUNT(*) FROM scores WHERE run_id = {run}")
        )
        .await,
        reference.len() as i64
    );
}
both_backends!(
    a_shard_taken_back_is_redone_once,
    super::a_shard_taken_back_is_redone_once
);
