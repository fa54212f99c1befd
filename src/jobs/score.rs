//! The scoring job: every active customer's churn probability as of a day, with the top
//! three drivers of each, written as one scoring run (`full`, nightly), or just the
//! customers whose activity changed since their last score (`changed`, every few
//! minutes). Features come from the daily rollups through the feature spec. Customers are
//! scored a page at a time, so memory stays flat however many there are; the run counts
//! only once closed.

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::JobContext;
use std::collections::HashMap;

use crate::domain::Customer;
use crate::features::{Activity, FeatureSpec, Locator, Lookback, compute_values, day_number};
use crate::model::ModelArtifact;
use crate::model::drift::{self, DriftRow};
use crate::model::explain::{self, DriverKey};
use crate::store::{NewScore, ShardClaim};

pub const QUEUE: &str = "attune.score";

/// The queue scoring shards are offered on: every daemon takes from it.
pub const SHARD_QUEUE: &str = "attune.shard";

/// A shard offered to every daemon: any may take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardJob {
    pub run_id: i64,
    pub shard: i32,
}

/// Customers per page: large enough that per-page queries are cheap, small enough that a
/// page's feature rows stay a few tens of megabytes.
pub const PAGE: i64 = 25_000;

/// Drivers kept with each score.
pub const DRIVERS: usize = 3;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreJob {
    /// The tick that asked for this run, if a schedule did.
    pub tick: Option<String>,
    /// Score as of this day; today when unset.
    pub as_of: Option<NaiveDate>,
    /// Only the customers whose activity or record changed since their last score.
    #[serde(default)]
    pub changed_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub run_id: i64,
    pub model_version: String,
    pub as_of: NaiveDate,
    pub customers: usize,
    pub at_risk: usize,
    pub risk_threshold: f64,
    pub scope: String,
}

/// One page of customers and their rollups before the day.
pub type Page = (Vec<(i64, Customer)>, HashMap<i64, Activity>);

/// Reads the customers to score a page at a time on a task of its own, one page ahead of
/// the caller: every active customer, or just `ids`.
pub fn read_pages(
    db: crate::store::Db,
    as_of: NaiveDate,
    ids: Option<Vec<i64>>,
    lookback: Lookback,
) -> tokio::sync::mpsc::Receiver<anyhow::Result<Page>> {
    read_range(db, as_of, (i64::MIN, i64::MAX), ids, lookback)
}

/// [`read_pages`] of the customers with ids in `(after, upto]` (a shard's range).
pub fn read_range(
    db: crate::store::Db,
    as_of: NaiveDate,
    (after, upto): (i64, i64),
    ids: Option<Vec<i64>>,
    lookback: Lookback,
) -> tokio::sync::mpsc::Receiver<anyhow::Result<Page>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let day = day_number(as_of);
    tokio::spawn(async move {
        let mut after = after;
        let mut chunks = ids.as_deref().map(|ids| ids.chunks(PAGE as usize));
        loop {
            let page: anyhow::Result<Option<Page>> = async {
                let customers = match &mut chunks {
                    None => {
                        let page = db
                            .customers_active_page(as_of, after, upto, PAGE)
                            .await
                            .context("loading customers")?;
                        if let Some((last, _)) = page.last() {
                            after = *last;
                        }
                        page
                    }
                    Some(chunks) => {
                        let Some(ids) = chunks.next() else {
                            return Ok(None);
                        };
                        db.customers_with_ids(ids)
                            .await
                            .context("loading customers")?
                            .into_iter()
                            .filter(|(_, c)| c.is_active_on(as_of))
                            .collect()
                    }
                };
                let (Some(first), Some(last)) = (customers.first(), customers.last()) else {
                    return Ok(if chunks.is_some() {
                        Some((vec![], HashMap::new()))
                    } else {
                        None
                    });
                };
                let activity = if chunks.is_some() {
                    let ids: Vec<i64> = customers.iter().map(|(id, _)| *id).collect();
                    db.activity_of(&ids, day, &lookback).await
                } else {
                    db.activity_between(first.0, last.0, day, &lookback).await
                }
                .context("reading activity rollups")?;
                Ok(Some((customers, activity)))
            }
            .await;
            let stop = !matches!(page, Ok(Some(_)));
            let item = match page {
                Ok(Some(p)) => Ok(p),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    rx
}

/// Probability and top three drivers of one page of customers, with the page's drift
/// counts per profile bucket ([`drift::count_all`]), on every core. Each core computes,
/// counts and frees the feature rows of its own part of the page.
fn score_page(
    spec: &FeatureSpec,
    model: &ModelArtifact,
    page: &[(i64, Customer)],
    activity: &HashMap<i64, Activity>,
    as_of: NaiveDate,
) -> (Vec<NewScore>, Vec<Vec<usize>>) {
    // The model's sources and the profiles' found once among the spec's values, so a
    // customer's features are a vector, not a map by name (the same values: `compute`).
    let at_model = Locator::new(spec, model.features.iter().map(|f| f.source.as_str()));
    let at_profile = Locator::new(spec, model.profiles.iter().map(|p| p.source.as_str()));
    let parts = super::par::in_chunks(page, |chunk: &[(i64, Customer)]| {
        let none = Activity::default();
        let mut counter = drift::Counter::new(&model.profiles);
        let (mut values, mut for_model, mut for_profile) = (Vec::new(), Vec::new(), Vec::new());
        let scores: Vec<NewScore> = chunk
            .iter()
            .map(|(id, c)| {
                compute_values(
                    spec,
                    c,
                    activity.get(id).unwrap_or(&none),
                    as_of,
                    &mut values,
                );
                at_model.fill(c, &values, &mut for_model);
                at_profile.fill(c, &values, &mut for_profile);
                let value = |i| at_model.get(i, &values, &for_model);
                let mut drivers = Vec::with_capacity(16);
                explain::encode_by(model, value, DRIVERS, &mut drivers);
                counter.add(|i| at_profile.get(i, &values, &for_profile));
                NewScore {
                    customer_id: *id,
                    probability: model.predict_by(value).get(),
                    drivers,
                }
            })
            .collect();
        (scores, counter.counts)
    });
    let mut scores = Vec::with_capacity(page.len());
    let mut counts: Vec<Vec<usize>> = model
        .profiles
        .iter()
        .map(|p| vec![0; p.expected().len()])
        .collect();
    for (s, c) in parts {
        scores.extend(s);
        for (total, part) in counts.iter_mut().zip(c) {
            for (t, x) in total.iter_mut().zip(part) {
                *t += x;
            }
        }
    }
    (scores, counts)
}

/// The spec a model computes its features with: the one it carries (trained since attune
/// embedded it), else the configured one, checked to define every feature it reads.
pub async fn model_spec(
    ctx: &JobContext,
    model: &ModelArtifact,
) -> anyhow::Result<std::sync::Arc<FeatureSpec>> {
    match &model.training.feature_spec {
        Some(text) => {
            let kinds = ctx.kinds().await?;
            let mut spec =
                FeatureSpec::parse_with(text, &format!("model {}", model.version), &kinds)
                    .with_context(|| {
                        format!(
                            "reading the features model {} was trained on",
                            model.version
                        )
                    })
                    .map_err(super::Permanent::from)?;
            spec.currency = ctx.config.currency();
            Ok(std::sync::Arc::new(spec))
        }
        None => {
            let spec = ctx.planning_spec().await?;
            check_model_against_spec(model, &spec).map_err(super::Permanent::from)?;
            Ok(spec)
        }
    }
}

/// Refuses a model that reads features the spec does not produce: it would score everyone
/// as if those were unknown.
pub fn check_model_against_spec(model: &ModelArtifact, spec: &FeatureSpec) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = model
        .features
        .iter()
        .map(|f| f.source.as_str())
        .filter(|s| !spec.defines(s))
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        anyhow::bail!(
            "model {} reads features the feature spec does not define: {}; train a model on this spec or point [features] spec at the one it was trained on",
            model.version,
            missing.join(", ")
        );
    }
    Ok(())
}

/// Population stability of each feature and of the scores against the training data,
/// accumulated page by page (shares weighted by page size), with the customers at risk: a
/// shard's is stored with it (JSON) and the run's is the sum of its shards'.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DriftTally {
    rows: usize,
    #[serde(default)]
    at_risk: usize,
    features: Vec<Vec<f64>>,
    scores: Vec<f64>,
}

impl DriftTally {
    fn new(model: &ModelArtifact) -> Self {
        Self {
            rows: 0,
            at_risk: 0,
            features: model
                .profiles
                .iter()
                .map(|p| vec![0.0; p.expected().len()])
                .collect(),
            scores: vec![0.0; 10],
        }
    }

    /// Adds another tally (a shard's) to this one; one whose shape is not this model's
    /// is refused.
    fn merge(&mut self, other: DriftTally) -> anyhow::Result<()> {
        let same = other.features.len() == self.features.len()
            && other.scores.len() == self.scores.len()
            && self
                .features
                .iter()
                .zip(&other.features)
                .all(|(a, b)| a.len() == b.len());
        if !same {
            anyhow::bail!("a shard's drift counts do not fit the run's model");
        }
        for (acc, part) in self.features.iter_mut().zip(other.features) {
            for (a, x) in acc.iter_mut().zip(part) {
                *a += x;
            }
        }
        for (a, x) in self.scores.iter_mut().zip(other.scores) {
            *a += x;
        }
        self.rows += other.rows;
        self.at_risk += other.at_risk;
        Ok(())
    }

    /// Adds a page: its scores and its rows' counts per profile bucket.
    fn add(&mut self, counts: Vec<Vec<usize>>, scores: &[NewScore]) {
        let n = scores.len() as f64;
        for (acc, c) in self.features.iter_mut().zip(counts) {
            for (total, x) in acc.iter_mut().zip(c) {
                *total += x as f64;
            }
        }
        let probs: Vec<f64> = scores.iter().map(|s| s.probability).collect();
        for (a, share) in self.scores.iter_mut().zip(drift::score_profile(&probs)) {
            *a += share * n;
        }
        self.rows += scores.len();
    }

    /// Each feature's drift (worst first) and the scores' shares per bucket; `None` when
    /// the run scored no one, since there is then no distribution to compare (a `changed`
    /// run with nothing changed).
    fn finish(self, model: &ModelArtifact) -> Option<(Vec<DriftRow>, Vec<f64>)> {
        if self.rows == 0 {
            return None;
        }
        let n = self.rows as f64;
        let mut rows: Vec<DriftRow> = model
            .profiles
            .iter()
            .zip(self.features)
            .map(|(p, acc)| {
                let actual: Vec<f64> = acc.into_iter().map(|a| a / n).collect();
                let expected = p.expected();
                DriftRow {
                    feature: p.source.clone(),
                    psi: drift::psi(&expected, &actual),
                    actual,
                    expected,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.psi
                .total_cmp(&a.psi)
                .then_with(|| a.feature.cmp(&b.feature))
        });
        Some((rows, self.scores.into_iter().map(|a| a / n).collect()))
    }
}

/// What retention removed ([`prune`]).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub keep_full_runs: u32,
    /// Runs whose scores were removed.
    pub runs: u64,
    pub scores: u64,
}

/// Rows removed per transaction when pruning: other writers get their turn in between.
const PRUNE_BATCH: i64 = 50_000;

/// Retention: removes the scores of runs older than the `keep_full_runs` newest full runs
/// ([`crate::store::Db::prune_scores`]). Run after each full run and by `attune scores
/// prune`.
pub async fn prune(db: &crate::store::Db, keep_full_runs: u32) -> anyhow::Result<PruneReport> {
    let (runs, scores) = db
        .prune_scores(keep_full_runs, PRUNE_BATCH)
        .await
        .context("pruning old scores")?;
    if runs > 0 {
        tracing::info!(runs, scores, keep_full_runs, "pruned old scoring runs");
    }
    Ok(PruneReport {
        keep_full_runs,
        runs,
        scores,
    })
}

/// Where a scoring run's shards are offered to every daemon (the daemon's shard queue).
/// Without one, the process that runs the job works every shard itself.
pub trait OfferShards: Send + Sync {
    /// Offers shard `shard` of run `run_id` under `key` (once per key).
    fn offer(
        &self,
        run_id: i64,
        shard: i32,
        key: String,
    ) -> futures::future::BoxFuture<'_, anyhow::Result<()>>;
}

/// The key a shard is offered under, first (`attempt` 0) and when it wants a worker again.
pub fn shard_key(run_id: i64, shard: i32, attempt: i32, at: i64) -> String {
    if attempt == 0 {
        format!("shard@run-{run_id}/{shard}")
    } else {
        format!("shard@run-{run_id}/{shard}#{attempt}@{at}")
    }
}

/// A shard's holder lost it (its claim ran out and someone took the shard back, or the run
/// ended): what it computed is dropped; the new holder redoes the range.
#[derive(Debug, thiserror::Error)]
#[error(
    "shard {shard} of scoring run {run_id} was taken back from this process (its claim ran out); the new holder redoes it"
)]
pub struct ShardLost {
    pub run_id: i64,
    pub shard: i32,
}

/// What a scoring run's shards need: the run, its model, the features it computes with.
pub struct Prepared {
    pub run: crate::store::ScoringRun,
    model: std::sync::Arc<ModelArtifact>,
    spec: std::sync::Arc<FeatureSpec>,
    churn: std::sync::Arc<crate::features::churn::ChurnDefinition>,
    lookback: Lookback,
}

/// The model a run scores with: this process's scoring model when it is the run's version,
/// else that version from the registry. A shard never scores with another model than its
/// run's.
async fn run_model(ctx: &JobContext, version: &str) -> anyhow::Result<ModelArtifact> {
    let model = ctx.scoring_model().await?;
    if model.version == version {
        return Ok(model);
    }
    let Some(stored) = ctx.db.model(version).await? else {
        return Err(super::Permanent::from(anyhow::anyhow!(
            "scoring run's model {version} is neither this process's model ({}) nor in the registry",
            model.version
        )));
    };
    super::stored_model(stored)
}

/// Loads what run `run` needs to score its shards.
pub async fn prepare(ctx: &JobContext, run: crate::store::ScoringRun) -> anyhow::Result<Prepared> {
    let model = std::sync::Arc::new(run_model(ctx, &run.model_version).await?);
    let spec = model_spec(ctx, &model).await?;
    let churn = std::sync::Arc::new(ctx.churn().await?);
    let mut lookback = spec.lookback();
    lookback.merge(&churn.lookback());
    Ok(Prepared {
        run,
        model,
        spec,
        churn,
        lookback,
    })
}

/// Builds the SQLite blocks of rollup days stored before blocks existed (once), so the
/// scan reads blocks; a day without them would be read by rows, with the same result.
pub async fn seal_rollup_days(ctx: &JobContext) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let days = ctx
        .db
        .seal_rollup_days()
        .await
        .context("building the rollups' blocks")?;
    if days > 0 {
        tracing::info!(days, took = ?started.elapsed(), "built the blocks of rollup days stored before blocks");
    }
    Ok(())
}

/// Customers per shard: `[scoring] shard_customers` on PostgreSQL, where several daemons
/// share the work; everyone in one shard on SQLite, which has one daemon.
fn per_shard(ctx: &JobContext) -> i64 {
    match ctx.db {
        crate::store::Db::Sqlite(..) => i64::MAX,
        crate::store::Db::Postgres(_) => i64::from(ctx.config.scoring.shard_customers.max(1)),
    }
}

/// Runs a scoring job: opens the run (or carries on with the one this tick opened before,
/// when the job is retried or taken back from a daemon that died), splits it into shards,
/// offers them to every daemon, works shards itself until none is left to claim, and
/// returns once the run is finished (by whichever process finished its last shard).
pub async fn run(ctx: &JobContext, job: &ScoreJob) -> anyhow::Result<ScoreReport> {
    run_with(ctx, job, None).await
}

/// [`run`], offering the shards through `offer`.
pub async fn run_with(
    ctx: &JobContext,
    job: &ScoreJob,
    offer: Option<&dyn OfferShards>,
) -> anyhow::Result<ScoreReport> {
    let as_of = job.as_of.unwrap_or_else(super::today);
    let scope = if job.changed_only { "changed" } else { "full" };
    // One scoring run at a time (full or changed), across every daemon.
    let lease = super::lease::Lease::take(ctx, "score", "a scoring run").await?;
    seal_rollup_days(ctx).await?;
    let resumed = match &job.tick {
        Some(tick) => ctx
            .db
            .run_of_trigger(tick)
            .await?
            .filter(|r| r.scope == scope && r.as_of == as_of),
        None => None,
    };
    let prepared = match resumed {
        Some(run) => {
            tracing::info!(
                run_id = run.id,
                "carrying on with the scoring run this tick opened"
            );
            let run_id = run.id;
            let p = prepare(ctx, run).await?;
            if p.run.finished_at.is_none() && ctx.db.run_shards(run_id).await?.is_empty() {
                split(ctx, &p, job.changed_only).await?;
            }
            p
        }
        None => {
            let model = ctx.scoring_model().await?;
            let spec = model_spec(ctx, &model).await?;
            let key = DriverKey::new(&model, &|n| spec.words(n), &spec.currency);
            let key = serde_json::to_string(&key).context("writing the drivers key")?;
            let trigger = job.tick.clone().unwrap_or_else(|| "manual".into());
            let (run_id, _) = ctx
                .db
                .start_scoring_run(
                    &model.version,
                    as_of,
                    &trigger,
                    scope,
                    lease.holder(),
                    Some(&key),
                )
                .await?;
            let superseded = ctx.db.supersede_runs_before(run_id).await?;
            if superseded > 0 {
                tracing::warn!(
                    run_id,
                    superseded,
                    "earlier scoring runs left open are superseded by this one"
                );
            }
            let run = ctx
                .db
                .scoring_run(run_id)
                .await?
                .context("reading the run just opened")?;
            let p = prepare(ctx, run).await?;
            split(ctx, &p, job.changed_only).await?;
            p
        }
    };
    let run_id = prepared.run.id;
    if let Some(offer) = offer {
        for shard in ctx.db.run_shards(run_id).await? {
            if shard.status == "queued" {
                offer
                    .offer(run_id, shard.shard, shard_key(run_id, shard.shard, 0, 0))
                    .await?;
            }
        }
    }
    ctx.progress
        .stage(&format!("scoring run {run_id}"), "customers scored");
    let ttl = ctx.config.worker.lease_ttl_secs();
    loop {
        if lease.lost() {
            anyhow::bail!(
                "scoring run {run_id} lost its lease (this process stalled for longer than [worker] lease_secs); its shards go on without it"
            );
        }
        if let Some(claim) = ctx.db.claim_shard(run_id, None, &ctx.worker, ttl).await? {
            work_claimed(ctx, &prepared, claim).await?;
            continue;
        }
        let (finished, failed) = ctx.db.run_state(run_id).await?;
        if finished {
            break;
        }
        if let Some(error) = failed {
            anyhow::bail!("scoring run {run_id} failed: {error}");
        }
        let shards = ctx.db.run_shards(run_id).await?;
        if shards.iter().all(|s| s.status == "done") {
            finish_run(ctx, &prepared).await?;
            continue;
        }
        // Shards held by other daemons: wait for them (or for their claims to run out).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    lease.release().await;
    let tally = run_tally(ctx, &prepared).await?;
    Ok(ScoreReport {
        run_id,
        model_version: prepared.model.version.clone(),
        as_of,
        customers: tally.rows,
        at_risk: tally.at_risk,
        risk_threshold: ctx.config.scoring.risk_threshold,
        scope: scope.into(),
    })
}

/// Splits a new run into shards of about [`per_shard`] customers each.
async fn split(ctx: &JobContext, p: &Prepared, changed_only: bool) -> anyhow::Result<()> {
    let per = per_shard(ctx);
    let ranges = if changed_only {
        let mut ids: Vec<i64> = ctx
            .db
            .changed_customers(i64::MAX)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        crate::store::ranges_of_ids(&ids, usize::try_from(per).unwrap_or(usize::MAX))
    } else {
        ctx.db
            .shard_ranges(p.run.as_of, per)
            .await
            .context("splitting the run into shards")?
    };
    let n = ctx.db.split_run(p.run.id, &ranges).await?;
    tracing::info!(
        run_id = p.run.id,
        shards = n,
        "scoring run split into shards"
    );
    Ok(())
}

/// Claims shard `shard` of run `run_id` if it wants a worker (queued, or its claim ran
/// out) and works it: what a daemon does with a shard offered on its queue. A shard done
/// or held by a live claim is left alone.
pub async fn take_shard(ctx: &JobContext, run_id: i64, shard: i32) -> anyhow::Result<()> {
    let ttl = ctx.config.worker.lease_ttl_secs();
    let Some(claim) = ctx
        .db
        .claim_shard(run_id, Some(shard), &ctx.worker, ttl)
        .await?
    else {
        return Ok(());
    };
    let run = match ctx.db.scoring_run(run_id).await? {
        Some(run) => run,
        None => anyhow::bail!("scoring run {run_id} is gone"),
    };
    let prepared = match prepare(ctx, run).await {
        Ok(p) => p,
        Err(e) => {
            release(ctx, &claim, &e).await;
            return Err(e);
        }
    };
    work_claimed(ctx, &prepared, claim).await
}

/// Gives a claimed shard back after `e`: another attempt, or the run fails when `e` is
/// [`super::Permanent`] or the shard had its last attempt.
async fn release(ctx: &JobContext, claim: &ShardClaim, e: &anyhow::Error) {
    let max = if e.downcast_ref::<super::Permanent>().is_some() {
        0
    } else {
        ctx.config.worker.max_attempts.max(1) as i32
    };
    match ctx.db.release_shard(claim, &format!("{e:#}"), max).await {
        Ok(status) => {
            tracing::warn!(run_id = claim.run_id, shard = claim.shard, attempt = claim.attempt, status = ?status, error = %format!("{e:#}"), "a shard failed");
        }
        Err(r) => {
            tracing::warn!(run_id = claim.run_id, shard = claim.shard, error = %r, "giving a failed shard back failed; its claim runs out by itself")
        }
    }
    crate::metrics::get().shard_finished("failed", 0.0);
}

/// Works a claimed shard and, when it was the run's last, finishes the run. A shard that
/// fails is given back ([`release`]); one taken back from this process is dropped.
pub async fn work_claimed(ctx: &JobContext, p: &Prepared, claim: ShardClaim) -> anyhow::Result<()> {
    let clock = std::time::Instant::now();
    match work_shard(ctx, p, &claim).await {
        Ok(left) => {
            crate::metrics::get().shard_finished("done", clock.elapsed().as_secs_f64());
            if left == 0 {
                finish_run(ctx, p).await?;
            }
            Ok(())
        }
        Err(e) if e.downcast_ref::<ShardLost>().is_some() => {
            crate::metrics::get().shard_finished("lost", clock.elapsed().as_secs_f64());
            tracing::warn!(error = %e, "a shard was taken back");
            Ok(())
        }
        Err(e) => {
            release(ctx, &claim, &e).await;
            if e.downcast_ref::<super::Permanent>().is_some() {
                return Err(e);
            }
            Ok(())
        }
    }
}

/// Scores the customers of one claimed shard page by page, each page's write fenced by
/// the claim, then marks the shard done with its tally. Returns the run's shards left.
async fn work_shard(ctx: &JobContext, p: &Prepared, claim: &ShardClaim) -> anyhow::Result<i64> {
    let run_id = p.run.id;
    let as_of = p.run.as_of;
    let ttl = ctx.config.worker.lease_ttl_secs();
    let lost = || -> anyhow::Error {
        ShardLost {
            run_id,
            shard: claim.shard,
        }
        .into()
    };
    // Renews the claim while the shard is worked (every page's write renews it too).
    let still_held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewing = {
        let (db, claim, held) = (ctx.db.clone(), claim.clone(), still_held.clone());
        tokio::spawn(async move {
            let every = std::time::Duration::from_millis((ttl as u64 * 1000 / 3).max(500));
            loop {
                tokio::time::sleep(every).await;
                match db.renew_shard(&claim, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        held.store(false, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing a shard's claim failed; retrying")
                    }
                }
            }
        })
    };
    let _stop_renewing = AbortOnDrop(renewing);
    let threshold = ctx.config.scoring.risk_threshold;
    let mut drift = DriftTally::new(&p.model);
    let mut writing: Option<tokio::task::JoinHandle<anyhow::Result<bool>>> = None;
    let mut pages = read_range(
        ctx.db.clone(),
        as_of,
        (claim.range.after_id, claim.range.upto_id),
        claim.range.ids.clone(),
        p.lookback.clone(),
    );
    while let Some(page) = pages.recv().await {
        if !still_held.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(lost());
        }
        let (mut page, activity) = page?;
        // Customers as the churn definition has them (an inactivity definition leaves
        // out those silent too long: they have left).
        let none = Activity::default();
        let churn = p.churn.clone();
        page.retain(|(id, c)| churn.is_active_on(c, activity.get(id).unwrap_or(&none), as_of));
        if page.is_empty() {
            continue;
        }
        let (spec, model) = (p.spec.clone(), p.model.clone());
        let mut tally = drift;
        let (tally, scores) = tokio::task::spawn_blocking(move || {
            let (scores, counts) = score_page(&spec, &model, &page, &activity, as_of);
            tally.add(counts, &scores);
            tally.at_risk += scores.iter().filter(|s| s.probability >= threshold).count();
            (tally, scores)
        })
        .await
        .context("scoring a page")?;
        drift = tally;
        ctx.progress.advance(scores.len() as u64);
        // A page is written while the next one is scored; one write at a time, in order.
        if let Some(previous) = writing.take()
            && !previous.await.context("writing scores")??
        {
            return Err(lost());
        }
        let (db, claim) = (ctx.db.clone(), claim.clone());
        writing = Some(tokio::spawn(async move {
            db.insert_shard_scores(&claim, ttl, scores)
                .await
                .context("writing scores")
        }));
    }
    if let Some(previous) = writing.take()
        && !previous.await.context("writing scores")??
    {
        return Err(lost());
    }
    let scored = drift.rows as i64;
    let tally = serde_json::to_string(&drift).context("writing a shard's tally")?;
    match ctx.db.finish_shard(claim, scored, &tally).await? {
        Some(left) => {
            tracing::info!(
                run_id,
                shard = claim.shard,
                attempt = claim.attempt,
                scored,
                left,
                "shard done"
            );
            Ok(left)
        }
        None => Err(lost()),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sum of a run's shards' tallies.
async fn run_tally(ctx: &JobContext, p: &Prepared) -> anyhow::Result<DriftTally> {
    let mut total = DriftTally::new(&p.model);
    for text in ctx.db.shard_tallies(p.run.id).await? {
        let part: DriftTally = serde_json::from_str(&text).context("reading a shard's tally")?;
        total.merge(part)?;
    }
    Ok(total)
}

/// Finishes a run whose shards are all done: its drift from the sum of their tallies, then
/// the run closed, once (whoever else tries finds it closed). The process that closed it
/// clears the re-score marks it covered and applies retention. Returns whether this call
/// closed it.
pub async fn finish_run(ctx: &JobContext, p: &Prepared) -> anyhow::Result<bool> {
    let run_id = p.run.id;
    let drift = run_tally(ctx, p).await?;
    let customers = drift.rows;
    let at_risk = drift.at_risk;
    if let Some((features, score_shares)) = drift.finish(&p.model) {
        let warn_at = ctx.config.scoring.psi_warning;
        for f in features.iter().filter(|f| f.psi > warn_at) {
            tracing::warn!(run_id, feature = %f.feature, psi = f.psi, threshold = warn_at, "feature has drifted from the training data");
        }
        if !p.model.score_profile.is_empty() {
            let psi = drift::psi(&p.model.score_profile, &score_shares);
            if psi > warn_at {
                tracing::warn!(
                    run_id,
                    psi,
                    threshold = warn_at,
                    "scores have drifted from the training data"
                );
            }
        }
        // The same sums whoever writes them: a second finisher writes the same rows.
        ctx.db
            .save_drift(run_id, &features, &score_shares)
            .await
            .context("writing drift")?;
    }
    if !ctx
        .db
        .finish_scoring_run_once(run_id, customers as i64)
        .await?
    {
        return Ok(false);
    }
    // Changes made after this run started stay marked for the next one.
    let changed = ctx.db.shard_ids(run_id).await?;
    ctx.db
        .clear_changes(changed.as_deref(), p.run.started_at)
        .await
        .context("clearing the re-score marks")?;
    let seconds = (crate::store::now_secs() - p.run.started_at).max(0) as f64;
    crate::metrics::get().scored(&p.run.scope, customers, seconds);
    // The run is done either way: a failed prune is tried again after the next one.
    if p.run.scope == "full"
        && let Err(e) = prune(&ctx.db, ctx.config.scoring.keep_full_runs).await
    {
        tracing::warn!(error = %format!("{e:#}"), "retention could not prune old scores");
    }
    tracing::info!(run_id, model_version = %p.model.version, as_of = %p.run.as_of, scope = %p.run.scope, customers, at_risk, "scored");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelArtifact {
        serde_json::from_str(crate::jobs::DEFAULT_MODEL).unwrap()
    }

    #[test]
    fn a_run_that_scored_no_one_has_no_drift() {
        // Before, an empty run divided zero counts by one and reported every feature as
        // drifted (PSI around 6.8) on each `changed` run that found nothing to score.
        let model = model();
        assert!(!model.profiles.is_empty());
        assert!(DriftTally::new(&model).finish(&model).is_none());
    }

    #[test]
    fn a_run_that_scored_someone_has_drift_for_every_profiled_feature() {
        let model = model();
        let mut tally = DriftTally::new(&model);
        let counts: Vec<Vec<usize>> = model
            .profiles
            .iter()
            .map(|p| {
                let mut c = vec![0; p.expected().len()];
                c[0] = 1;
                c
            })
            .collect();
        let score = NewScore {
            customer_id: 1,
            probability: 0.2,
            drivers: vec![],
        };
        tally.add(counts, &[score]);
        let (features, shares) = tally.finish(&model).unwrap();
        assert_eq!(features.len(), model.profiles.len());
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
