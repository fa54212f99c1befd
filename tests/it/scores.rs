//! The score history: drivers stored as codes and read back in words, the same as scoring
//! computed them; retention keeps the newest full runs' scores and every run's summary.

use std::collections::HashMap;

use attune::jobs::score::{self, ScoreJob};

use super::helpers::{TestDb, scalar};
use crate::both_backends;

/// Every stored score's drivers, read back through its run's key, are the drivers the
/// model computes from the customer's features as scoring computes them.
async fn drivers_read_back_are_those_scoring_computed(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.money = attune::domain::Currency::parse("EUR", None).unwrap();
    });
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 1200, 5, today).await.unwrap();
    let run = summary.score.run_id;
    let stored: HashMap<i64, Vec<attune::model::Driver>> =
        t.db.scores_for_run(run)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.customer_id, s.drivers))
            .collect();
    assert_eq!(stored.len(), summary.score.customers);

    let model = ctx.scoring_model().await.unwrap();
    let spec = score::model_spec(&ctx, &model).await.unwrap();
    let mut lookback = spec.lookback();
    lookback.merge(&ctx.churn().await.unwrap().lookback());
    let mut pages = score::read_pages(t.db.clone(), today, None, lookback);
    let (mut compared, mut with_drivers, mut money) = (0, 0, 0);
    while let Some(page) = pages.recv().await {
        let (customers, activity) = page.unwrap();
        let none = attune::features::Activity::default();
        for (id, c) in &customers {
            let Some(read) = stored.get(id) else { continue };
            let row = attune::features::compute(&spec, c, activity.get(id).unwrap_or(&none), today);
            let computed = model.drivers_with(&row, score::DRIVERS, &|n, v| spec.describe(n, v));
            assert_eq!(read, &computed, "customer {id}");
            compared += 1;
            with_drivers += usize::from(!read.is_empty());
            money += read.iter().filter(|d| d.description.contains('€')).count();
        }
    }
    assert_eq!(compared, stored.len());
    assert!(
        with_drivers > compared / 2,
        "{with_drivers} of {compared} have drivers"
    );
    // The key kept the currency the run scored in.
    assert!(money > 0, "no driver in euros");

    // The other readers read the same drivers.
    let (&someone, drivers) = stored.iter().find(|(_, d)| d.len() == 3).unwrap();
    let history = t.db.customer_scores(someone, 5).await.unwrap();
    assert_eq!(&history[0].drivers, drivers);
    assert_eq!(history[0].run_id, run);
    let current = t.db.current_scores().await.unwrap();
    let now = current.iter().find(|s| s.customer_id == someone).unwrap();
    assert_eq!(&now.drivers, drivers);
    let page =
        t.db.run_scores_page(run, Some(someone - 1), None, 1)
            .await
            .unwrap();
    assert_eq!((page[0].customer_id, &page[0].drivers), (someone, drivers));
}
both_backends!(
    stored_drivers_are_the_computed_drivers,
    super::drivers_read_back_are_those_scoring_computed
);

/// With `keep_full_runs = 2`, each full run prunes the scores of the runs before the
/// second newest full run; runs, counts and drift stay; current scores are untouched.
async fn retention_keeps_the_newest_full_runs(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.scoring.keep_full_runs = 2;
    });
    let today = attune::jobs::today();
    let summary = attune::demo::run_cycle(&ctx, 600, 3, today).await.unwrap();
    let n = summary.score.customers as i64;
    let run = |changed_only: bool| {
        let job = ScoreJob {
            tick: None,
            as_of: Some(today),
            changed_only,
        };
        let ctx = ctx.clone();
        async move { score::run(&ctx, &job).await.unwrap().run_id }
    };
    let (full, changed) = (|| run(false), || run(true));
    let first = summary.score.run_id;
    let between = changed().await; // a changed run between two full runs
    let second = full().await;
    let scores_of = |run: i64| {
        let db = t.db.clone();
        async move {
            scalar(
                &db,
                &format!("SELECT COUNT(*) FROM scores WHERE run_id = {run}"),
            )
            .await
        }
    };
    // Two full runs: nothing pruned yet.
    assert_eq!(scores_of(first).await, n);
    assert!(
        t.db.scoring_run(first)
            .await
            .unwrap()
            .unwrap()
            .pruned_at
            .is_none()
    );

    let third = full().await;
    // The first full run and the changed run after it are older than the second newest
    // full run: their scores go, their runs and drift stay.
    for run in [first, between] {
        assert_eq!(scores_of(run).await, 0, "run {run}");
        let r = t.db.scoring_run(run).await.unwrap().unwrap();
        assert!(r.pruned_at.is_some() && r.finished_at.is_some(), "{r:?}");
    }
    assert_eq!(t.db.scoring_run(first).await.unwrap().unwrap().customers, n);
    assert!(!t.db.drift_for_run(first).await.unwrap().is_empty());
    assert_eq!((scores_of(second).await, scores_of(third).await), (n, n));
    assert_eq!(t.db.counts().await.unwrap().scores, 2 * n);
    let current = t.db.current_scores().await.unwrap();
    assert_eq!(current.len() as i64, n);

    // A customer's history now starts at the second run; pruning again removes nothing.
    let someone = current[0].customer_id;
    let runs: Vec<i64> =
        t.db.customer_scores(someone, 10)
            .await
            .unwrap()
            .iter()
            .map(|s| s.run_id)
            .collect();
    assert_eq!(runs, [third, second]);
    let again = score::prune(&t.db, 2).await.unwrap();
    assert_eq!((again.runs, again.scores), (0, 0));
    // Keeping one: the second run goes too, in batches smaller than a run.
    let (runs, removed) = t.db.prune_scores(1, 7).await.unwrap();
    assert_eq!((runs, removed as i64), (1, n));
    assert_eq!(t.db.counts().await.unwrap().scores, n);
    assert_eq!(t.db.current_scores().await.unwrap(), current);
}
both_backends!(
    retention_prunes_old_runs_scores_and_keeps_their_summaries,
    super::retention_keeps_the_newest_full_runs
);
