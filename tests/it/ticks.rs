//! Scheduled ticks run once, however many daemons see them.

use attune::jobs::daemon::{JobKind, Queues, fire_tick, sweep_stranded_ticks, tick_id};

use super::helpers::TestDb;
use crate::both_backends;

async fn same_tick_twice_enqueues_once(t: &TestDb) {
    let queues = Queues::new(&t.db).await.unwrap();
    let at = 1_795_000_000;
    assert!(
        fire_tick(&t.db, &queues, JobKind::Score, at, "daemon-a", None)
            .await
            .unwrap()
    );
    assert!(
        !fire_tick(&t.db, &queues, JobKind::Score, at, "daemon-b", None)
            .await
            .unwrap()
    );
    assert!(
        !fire_tick(&t.db, &queues, JobKind::Score, at, "daemon-a", None)
            .await
            .unwrap()
    );
    assert_eq!(t.apalis_jobs(attune::jobs::score::QUEUE).await, 1);
    let queued = t.db.job_runs(Some("queued"), 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].job_key, tick_id(JobKind::Score, at));
    // The next tick is a different identity; it finds the first still queued and would
    // only wait behind it: it is claimed and recorded as skipped, with the reason.
    assert!(
        fire_tick(
            &t.db,
            &queues,
            JobKind::Score,
            at + 86_400,
            "daemon-b",
            None
        )
        .await
        .unwrap()
    );
    assert_eq!(t.apalis_jobs(attune::jobs::score::QUEUE).await, 1);
    let skipped = t.db.job_runs(Some("skipped"), 10).await.unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].job_key, tick_id(JobKind::Score, at + 86_400));
    assert!(
        skipped[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("a score job (score@"),
        "{:?}",
        skipped[0].error
    );
    // A changed-customers re-score waits behind any scoring: skipped too.
    assert!(
        fire_tick(&t.db, &queues, JobKind::Rescore, at + 60, "daemon-a", None)
            .await
            .unwrap()
    );
    assert_eq!(t.db.job_runs(Some("skipped"), 10).await.unwrap().len(), 2);
    // A pull is other work: it is queued.
    assert!(
        fire_tick(&t.db, &queues, JobKind::Pull, at + 60, "daemon-a", None)
            .await
            .unwrap()
    );
    assert_eq!(t.apalis_jobs(attune::jobs::pull::QUEUE).await, 1);

    // Enqueueing is idempotent by the tick's key, so a repeat push is a no-op.
    queues
        .enqueue(JobKind::Score, &tick_id(JobKind::Score, at))
        .await
        .unwrap();
    assert_eq!(t.apalis_jobs(attune::jobs::score::QUEUE).await, 1);
}
both_backends!(
    same_tick_twice_gives_one_job,
    super::same_tick_twice_enqueues_once
);

async fn stranded_tick_is_enqueued_by_the_sweep(t: &TestDb) {
    // A daemon claimed the tick and died before enqueueing it.
    let id = tick_id(JobKind::Pull, 1_795_000_300);
    assert!(
        t.db.claim_tick(&id, "pull", 1_795_000_300, "dead-daemon")
            .await
            .unwrap()
    );
    let queues = Queues::new(&t.db).await.unwrap();
    assert_eq!(sweep_stranded_ticks(&t.db, &queues, 0).await.unwrap(), 1);
    assert_eq!(t.apalis_jobs(attune::jobs::pull::QUEUE).await, 1);
    assert_eq!(sweep_stranded_ticks(&t.db, &queues, 0).await.unwrap(), 0);
    assert_eq!(t.apalis_jobs(attune::jobs::pull::QUEUE).await, 1);
}
both_backends!(
    stranded_tick_is_enqueued_once,
    super::stranded_tick_is_enqueued_by_the_sweep
);

/// A re-score due on the same second as a full run is skipped with the reason however
/// the two ticks are ordered: with nothing queued yet, and before the full tick fires.
async fn a_rescore_on_a_full_runs_second_is_skipped(t: &TestDb) {
    use attune::jobs::daemon::covered_by_full_run;
    use std::str::FromStr;
    let queues = Queues::new(&t.db).await.unwrap();
    let full = cron::Schedule::from_str("*/7 * * * * *").unwrap();
    let at = 1_795_000_020 + 21;
    let covered = covered_by_full_run(JobKind::Rescore, at, 0, &full);
    assert!(covered.is_some());
    assert!(
        fire_tick(&t.db, &queues, JobKind::Rescore, at, "daemon-a", covered)
            .await
            .unwrap()
    );
    assert_eq!(t.apalis_jobs(attune::jobs::score::QUEUE).await, 0);
    let skipped = t.db.job_runs(Some("skipped"), 10).await.unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].job_key, tick_id(JobKind::Rescore, at));
    assert_eq!(
        skipped[0].error.as_deref(),
        Some(
            format!(
                "a full scoring run ({}) is due at the same second and re-scores everyone",
                tick_id(JobKind::Score, at)
            )
            .as_str()
        )
    );
    // The full run's tick is then queued as usual.
    assert!(
        fire_tick(&t.db, &queues, JobKind::Score, at, "daemon-a", None)
            .await
            .unwrap()
    );
    assert_eq!(t.apalis_jobs(attune::jobs::score::QUEUE).await, 1);
    // A re-score on another second is queued (nothing covers it but the queued full
    // run, which busy_reason finds).
    let other = at + 3;
    assert_eq!(covered_by_full_run(JobKind::Rescore, other, 0, &full), None);
}
both_backends!(
    a_rescore_on_a_full_runs_second_is_skipped_whatever_the_order,
    super::a_rescore_on_a_full_runs_second_is_skipped
);

/// A re-score whose full run is queued behind it gives way (skipped, with the reason)
/// instead of making the full run start late by a whole re-score.
async fn a_rescore_gives_way_to_a_queued_full_run(t: &TestDb) {
    let queues = Queues::new(&t.db).await.unwrap();
    let ctx = t.ctx(|_| {});
    let now = chrono::Utc::now().timestamp_millis();
    t.db.queue_job_run("score", "score@2026-12-05T10:00:00Z", 1, now - 10)
        .await
        .unwrap();
    let job = attune::jobs::daemon::AnyJob::Score(attune::jobs::score::ScoreJob {
        tick: Some("rescore@2026-12-05T10:00:00Z".into()),
        as_of: None,
        changed_only: true,
    });
    let outcome = attune::jobs::daemon::execute(
        &ctx,
        &queues,
        job,
        Some("rescore@2026-12-05T10:00:00Z".into()),
    )
    .await
    .unwrap();
    assert_eq!(outcome, attune::jobs::daemon::Outcome::Skipped);
    let run = t.db.job_runs(Some("skipped"), 10).await.unwrap();
    assert_eq!(run.len(), 1);
    assert!(
        run[0]
            .error
            .as_deref()
            .unwrap()
            .contains("a full scoring run (score@2026-12-05T10:00:00Z) is queued"),
        "{:?}",
        run[0].error
    );
}
both_backends!(
    rescore_gives_way_to_a_queued_full_run,
    super::a_rescore_gives_way_to_a_queued_full_run
);

/// A failure a retry may fix (the model file is not there yet) is retried after a
/// backoff, as a run of its own; one no retry can fix (a playbook that does not parse)
/// ends at once as aborted with the reason, and nothing is queued after it. Before, every
/// failure was retried three times at once, bad input included.
async fn retries_back_off_and_permanent_errors_abort(t: &TestDb) {
    use attune::jobs::daemon::{AnyJob, Outcome, execute};
    let dir = tempfile::tempdir().unwrap();
    let queues = Queues::new(&t.db).await.unwrap();
    let missing = dir.path().join("not-yet.json");
    let ctx = t.ctx(|c| c.scoring.model = Some(missing.clone()));
    let key = "score@2026-12-05T10:00:00Z";
    t.db.queue_job_run("score", key, 1, chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let before = chrono::Utc::now().timestamp();
    let outcome = execute(
        &ctx,
        &queues,
        AnyJob::of(JobKind::Score, key),
        Some(key.into()),
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Failed);
    let runs = t.db.job_runs(None, 10).await.unwrap();
    let failed = runs.iter().find(|r| r.job_key == key).unwrap();
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.as_deref().unwrap().contains("not-yet.json"),
        "{failed:?}"
    );
    // The first retry waits 5 s, give or take a quarter.
    let retry_at = failed.retry_at.expect("a retry time");
    assert!(
        (before + 3..=before + 7).contains(&retry_at),
        "{retry_at} vs {before}"
    );
    let next = runs
        .iter()
        .find(|r| r.job_key != key)
        .expect("the retry is queued");
    assert_eq!(
        (next.status.as_str(), next.attempt),
        ("queued", 2),
        "{next:?}"
    );
    assert!(next.due_ms >= (before + 3) * 1000, "{next:?}");

    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, "[[rules]\nname = = broken\n").unwrap();
    let ctx = t.ctx(|c| c.playbook.file = Some(playbook.clone()));
    let key = "plan@run-7";
    let outcome = execute(
        &ctx,
        &queues,
        AnyJob::of(JobKind::Plan, key),
        Some(key.into()),
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Aborted);
    let runs = t.db.job_runs(None, 10).await.unwrap();
    let aborted = runs.iter().find(|r| r.job_key == key).unwrap();
    assert_eq!(aborted.status, "aborted");
    assert!(aborted.retry_at.is_none());
    assert!(
        aborted.error.as_deref().unwrap().contains("playbook.toml"),
        "the reason names the file: {aborted:?}"
    );
    assert!(
        !runs.iter().any(|r| r.job_key.starts_with("plan@run-7#")),
        "nothing queued after an abort"
    );
}
both_backends!(
    retries_back_off_and_permanent_errors_abort_at_once,
    super::retries_back_off_and_permanent_errors_abort
);

/// A queued execution long past its due time that never started is marked lost (so ticks
/// of its kind are no longer skipped behind it); a retry waiting for its backoff is not.
async fn stale_queued_executions_are_lost_but_delayed_retries_wait(t: &TestDb) {
    let now = chrono::Utc::now().timestamp_millis();
    t.db.queue_job_run("pull", "pull@stuck", 1, now - 120_000)
        .await
        .unwrap();
    t.db.queue_job_run("pull", "pull@later#2", 2, now + 600_000)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    t.db.sweep_jobs(3, 0).await.unwrap();
    assert!(
        t.db.queued_job_run("pull@stuck").await.unwrap().is_none(),
        "stuck one is lost"
    );
    assert!(
        t.db.queued_job_run("pull@later#2").await.unwrap().is_some(),
        "the retry waits"
    );
}
both_backends!(
    a_stale_queued_execution_is_lost_and_a_delayed_retry_is_not,
    super::stale_queued_executions_are_lost_but_delayed_retries_wait
);
