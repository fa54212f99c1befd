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
use crate::features::{Activity, FeatureRow, FeatureSpec, Lookback, compute, day_number};
use crate::model::ModelArtifact;
use crate::model::drift::{self, DriftRow};
use crate::model::explain::{self, DriverKey};
use crate::store::NewScore;

pub const QUEUE: &str = "attune.score";

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
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let day = day_number(as_of);
    tokio::spawn(async move {
        let mut after = i64::MIN;
        let mut chunks = ids.as_deref().map(|ids| ids.chunks(PAGE as usize));
        loop {
            let page: anyhow::Result<Option<Page>> = async {
                let customers = match &mut chunks {
                    None => {
                        let page = db
                            .customers_active_page(as_of, after, PAGE)
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
    let parts = super::par::in_chunks(page, |chunk: &[(i64, Customer)]| {
        let none = Activity::default();
        let rows: Vec<FeatureRow> = chunk
            .iter()
            .map(|(id, c)| compute(spec, c, activity.get(id).unwrap_or(&none), as_of))
            .collect();
        let scores: Vec<NewScore> = chunk
            .iter()
            .zip(&rows)
            .map(|((id, _), row)| {
                let mut drivers = Vec::with_capacity(16);
                explain::encode(model, row, DRIVERS, &mut drivers);
                NewScore {
                    customer_id: *id,
                    probability: model.predict(row).get(),
                    drivers,
                }
            })
            .collect();
        (scores, drift::count_all(&model.profiles, &rows))
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
/// accumulated page by page (shares weighted by page size).
struct DriftTally {
    rows: usize,
    features: Vec<Vec<f64>>,
    scores: Vec<f64>,
}

impl DriftTally {
    fn new(model: &ModelArtifact) -> Self {
        Self {
            rows: 0,
            features: model
                .profiles
                .iter()
                .map(|p| vec![0.0; p.expected().len()])
                .collect(),
            scores: vec![0.0; 10],
        }
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

pub async fn run(ctx: &JobContext, job: &ScoreJob) -> anyhow::Result<ScoreReport> {
    let as_of = job.as_of.unwrap_or_else(super::today);
    let model = std::sync::Arc::new(ctx.scoring_model().await?);
    let spec = model_spec(ctx, &model).await?;
    let churn = std::sync::Arc::new(ctx.churn().await?);
    let mut lookback = spec.lookback();
    lookback.merge(&churn.lookback());
    let trigger = job.tick.clone().unwrap_or_else(|| "manual".into());
    let scope = if job.changed_only { "changed" } else { "full" };
    let changed: Option<Vec<i64>> = if job.changed_only {
        Some(
            ctx.db
                .changed_customers(i64::MAX)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        )
    } else {
        None
    };
    let clock = std::time::Instant::now();
    // One scoring run at a time (full or changed), across every daemon.
    let lease = super::lease::Lease::take(ctx, "score", "a scoring run").await?;
    let key = DriverKey::new(&model, &|n| spec.words(n), &spec.currency);
    let key = serde_json::to_string(&key).context("writing the drivers key")?;
    let (run_id, started_at) = ctx
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
    let threshold = ctx.config.scoring.risk_threshold;
    let (mut customers, mut at_risk) = (0usize, 0usize);
    let mut drift = DriftTally::new(&model);
    let mut writing: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
    let mut pages = read_pages(ctx.db.clone(), as_of, changed.clone(), lookback);
    ctx.progress
        .stage(&format!("scoring run {run_id}"), "customers scored");
    while let Some(page) = pages.recv().await {
        let (mut page, activity) = page?;
        // Customers as the churn definition has them (an inactivity definition leaves
        // out those silent too long: they have left).
        let none = Activity::default();
        page.retain(|(id, c)| churn.is_active_on(c, activity.get(id).unwrap_or(&none), as_of));
        if page.is_empty() {
            continue;
        }
        let (spec2, model2) = (spec.clone(), model.clone());
        let mut tally = drift;
        let (tally, scores) = tokio::task::spawn_blocking(move || {
            let (scores, counts) = score_page(&spec2, &model2, &page, &activity, as_of);
            tally.add(counts, &scores);
            (tally, scores)
        })
        .await
        .context("scoring a page")?;
        drift = tally;
        at_risk += scores.iter().filter(|s| s.probability >= threshold).count();
        customers += scores.len();
        ctx.progress.advance(scores.len() as u64);
        // A page is written while the next one is scored; one write at a time, in order.
        if let Some(previous) = writing.take() {
            previous.await.context("writing scores")??;
        }
        let db = ctx.db.clone();
        writing = Some(tokio::spawn(async move {
            db.insert_scores(run_id, scores)
                .await
                .context("writing scores")
        }));
    }
    if let Some(previous) = writing.take() {
        previous.await.context("writing scores")??;
    }
    ctx.progress
        .stage("writing drift and finishing the run", "");
    if let Some((features, score_shares)) = drift.finish(&model) {
        let warn_at = ctx.config.scoring.psi_warning;
        for f in features.iter().filter(|f| f.psi > warn_at) {
            tracing::warn!(run_id, feature = %f.feature, psi = f.psi, threshold = warn_at, "feature has drifted from the training data");
        }
        if !model.score_profile.is_empty() {
            let psi = drift::psi(&model.score_profile, &score_shares);
            if psi > warn_at {
                tracing::warn!(
                    run_id,
                    psi,
                    threshold = warn_at,
                    "scores have drifted from the training data"
                );
            }
        }
        ctx.db
            .save_drift(run_id, &features, &score_shares)
            .await
            .context("writing drift")?;
    }
    if lease.lost() {
        anyhow::bail!(
            "scoring run {run_id} lost its lease (this process stalled for longer than [worker] lease_secs); it is not finished"
        );
    }
    ctx.db.finish_scoring_run(run_id, customers).await?;
    // Changes made after this run started stay marked for the next one.
    ctx.db
        .clear_changes(changed.as_deref(), started_at)
        .await
        .context("clearing the re-score marks")?;
    lease.release().await;
    crate::metrics::get().scored(scope, customers, clock.elapsed().as_secs_f64());
    // The run is done either way: a failed prune is tried again after the next one.
    if !job.changed_only
        && let Err(e) = prune(&ctx.db, ctx.config.scoring.keep_full_runs).await
    {
        tracing::warn!(error = %format!("{e:#}"), "retention could not prune old scores");
    }
    tracing::info!(run_id, model_version = %model.version, %as_of, scope, customers, at_risk, "scored");
    Ok(ScoreReport {
        run_id,
        model_version: model.version.clone(),
        as_of,
        customers,
        at_risk,
        risk_threshold: threshold,
        scope: scope.into(),
    })
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
