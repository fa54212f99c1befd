//! A backtest a data team can trust: rolling origins, a split by customer, metrics pooled
//! and per day, each with a 95% interval, and a plain warning when the test side holds too
//! few churners for any of it to mean much.
//!
//! Rolling origin: each of the latest observation days is tested on by a model trained
//! only on the days whose labels were known by then (a day's label is known once its
//! horizon has passed), as a model deployed that day would have been. The customers are
//! split once by a hash of their id: test customers are never trained on, on any day.
//!
//! Intervals are bootstrap percentiles clustered by customer: a customer observed on three
//! days is resampled with all three rows, so the interval does not pretend those rows are
//! independent. Rows are ranked once and every resample is a set of per-customer weights,
//! so 1,000 resamples of 100,000 rows take a fraction of a second. Pure.

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

/// A 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// One rolling origin: the day tested on and what it was tested with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginResult {
    pub day: NaiveDate,
    /// The observation days its model was trained on (labels known by `day`).
    pub trained_on: Vec<NaiveDate>,
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_churners: usize,
    pub auc: Option<f64>,
    pub auc_interval: Option<Interval>,
    pub top_decile_lift: Option<f64>,
}

/// Every origin's test rows together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pooled {
    pub test_rows: usize,
    pub test_customers: usize,
    pub test_churners: usize,
    pub auc: Option<f64>,
    pub auc_interval: Option<Interval>,
    pub top_decile_lift: Option<f64>,
    pub lift_interval: Option<Interval>,
}

/// The backtest of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    /// In words: what was trained on what and tested where.
    pub design: String,
    pub origins: Vec<OriginResult>,
    pub pooled: Pooled,
    /// The test churners below which the numbers are called noise.
    pub min_test_churners: usize,
    pub resamples: usize,
    /// Set when the test side holds fewer churners than `min_test_churners`: the metrics
    /// are reported, but nothing should be decided on them.
    pub warning: Option<String>,
}

impl Backtest {
    /// Whether its numbers may decide anything (enough churners on the test side).
    pub fn is_decisive(&self) -> bool {
        self.warning.is_none()
    }
}

/// The warning for too few churners on the test side, in words; `None` with enough.
pub fn too_few_churners(churners: usize, rows: usize, min: usize) -> Option<String> {
    (churners < min).then(|| {
        format!(
            "only {churners} churner{} among {rows} test rows (fewer than {min}): the metrics and their intervals are too uncertain to decide on; import more history, add observation days or lower [training] min_test_churners knowingly",
            if churners == 1 { "" } else { "s" }
        )
    })
}

/// The rolling origins: the latest `count` of `days` (oldest first), each with the days
/// before it whose label was known by then (`day + horizon <= origin`). Origins with no
/// such day are left out.
pub fn origins(
    days: &[NaiveDate],
    horizon_days: u32,
    count: usize,
) -> Vec<(NaiveDate, Vec<NaiveDate>)> {
    let mut sorted = days.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let start = sorted.len().saturating_sub(count);
    sorted[start..]
        .iter()
        .filter_map(|&origin| {
            let known: Vec<NaiveDate> = sorted
                .iter()
                .copied()
                .filter(|&d| d < origin && d + Days::new(horizon_days as u64) <= origin)
                .collect();
            (!known.is_empty()).then_some((origin, known))
        })
        .collect()
}

/// Test rows with their scores and customers, ranked once for every resample.
pub struct Scored<'a> {
    labels: &'a [bool],
    /// Each row's customer as an index into `0..customers`.
    cluster: Vec<u32>,
    customers: usize,
    /// The rows by score, lowest first (ties by row index): each row's score, customer
    /// and label side by side, so a resample's walk reads memory in order.
    ascending: Vec<Ranked>,
}

/// A row as the bootstrap walks it.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f64,
    cluster: u32,
    label: bool,
}

impl<'a> Scored<'a> {
    /// `customers[i]` identifies the customer of row `i` (any id; rows of one customer
    /// are resampled together).
    pub fn new(labels: &'a [bool], scores: &[f64], customers: &[i64]) -> Self {
        assert_eq!(labels.len(), scores.len());
        assert_eq!(labels.len(), customers.len());
        let mut ids: Vec<i64> = customers.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let cluster: Vec<u32> = customers
            .iter()
            .map(|c| ids.binary_search(c).expect("present") as u32)
            .collect();
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        let ascending = order
            .into_iter()
            .map(|r| Ranked {
                score: scores[r],
                cluster: cluster[r],
                label: labels[r],
            })
            .collect();
        Self {
            labels,
            cluster,
            customers: ids.len(),
            ascending,
        }
    }

    pub fn customers(&self) -> usize {
        self.customers
    }

    /// ROC AUC with each row weighted by its customer's weight (ties count a half).
    fn auc(&self, weight: &[f64]) -> Option<f64> {
        let (mut neg_below, mut num, mut pos_total) = (0.0, 0.0, 0.0);
        let mut i = 0;
        let order = &self.ascending;
        while i < order.len() {
            let s = order[i].score;
            let (mut gp, mut gn) = (0.0, 0.0);
            while i < order.len() && order[i].score == s {
                let r = order[i];
                let w = weight[r.cluster as usize];
                if r.label {
                    gp += w;
                } else {
                    gn += w;
                }
                i += 1;
            }
            num += gp * (neg_below + 0.5 * gn);
            neg_below += gn;
            pos_total += gp;
        }
        (pos_total > 0.0 && neg_below > 0.0).then(|| num / (pos_total * neg_below))
    }

    /// The churn rate of the highest-scored tenth (by weight) over the overall rate.
    fn top_decile_lift(&self, weight: &[f64]) -> Option<f64> {
        let w = |r: usize| weight[self.cluster[r] as usize];
        let total: f64 = (0..self.labels.len()).map(w).sum();
        let positives: f64 = (0..self.labels.len())
            .filter(|&r| self.labels[r])
            .map(w)
            .sum();
        if total <= 0.0 || positives <= 0.0 {
            return None;
        }
        let (mut taken, mut pos) = (0.0, 0.0);
        for r in self.ascending.iter().rev() {
            if taken >= total / 10.0 {
                break;
            }
            let w = weight[r.cluster as usize];
            taken += w;
            if r.label {
                pos += w;
            }
        }
        (taken > 0.0).then(|| (pos / taken) / (positives / total))
    }

    fn unit(&self) -> Vec<f64> {
        vec![1.0; self.customers]
    }

    /// AUC and top-decile lift, each with its 95% bootstrap interval (customers
    /// resampled with replacement `resamples` times, from `seed`).
    pub fn with_intervals(
        &self,
        resamples: usize,
        seed: u64,
    ) -> (Option<f64>, Option<Interval>, Option<f64>, Option<Interval>) {
        let unit = self.unit();
        let auc = self.auc(&unit);
        let lift = self.top_decile_lift(&unit);
        if self.customers == 0 {
            return (auc, None, lift, None);
        }
        // Resample r draws the r-th run of `customers` numbers from one SplitMix stream,
        // which can start anywhere: the resamples are shared between the cores and give
        // what drawing them one after another gives.
        let start = SplitMix(seed ^ 0x5eed_ba5e);
        let n = self.customers;
        let parts = super::frame::in_chunks(resamples, super::frame::threads(), |range| {
            let mut weight = vec![0.0; n];
            range
                .map(|r| {
                    let mut rng = start.skip((r as u64).wrapping_mul(n as u64));
                    weight.iter_mut().for_each(|w| *w = 0.0);
                    for _ in 0..n {
                        weight[rng.below(n)] += 1.0;
                    }
                    (self.auc(&weight), self.top_decile_lift(&weight))
                })
                .collect::<Vec<_>>()
        });
        let (mut aucs, mut lifts): (Vec<f64>, Vec<f64>) =
            (Vec::with_capacity(resamples), Vec::new());
        for (a, l) in parts.into_iter().flatten() {
            aucs.extend(a);
            lifts.extend(l);
        }
        (
            auc,
            percentile_interval(&mut aucs, resamples),
            lift,
            percentile_interval(&mut lifts, resamples),
        )
    }
}

/// The 2.5th and 97.5th percentiles; none when fewer than nine in ten resamples had a
/// value (one class in most of them).
fn percentile_interval(values: &mut [f64], resamples: usize) -> Option<Interval> {
    if values.is_empty() || values.len() * 10 < resamples * 9 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((values.len() - 1) as f64 * q).round() as usize;
        values[i]
    };
    Some(Interval {
        low: at(0.025),
        high: at(0.975),
    })
}

/// SplitMix64: a small, fast, seeded generator (the bootstrap needs no more).
struct SplitMix(u64);

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The generator after `k` draws of this one (its state only ever adds a constant).
    fn skip(&self, k: u64) -> SplitMix {
        SplitMix(self.0.wrapping_add(k.wrapping_mul(GOLDEN_GAMMA)))
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }
}

/// One origin's test rows, scored by that origin's model.
pub struct OriginRows<'a> {
    pub day: NaiveDate,
    pub trained_on: Vec<NaiveDate>,
    pub train_rows: usize,
    pub labels: &'a [bool],
    pub scores: &'a [f64],
    pub customers: &'a [i64],
}

/// The backtest's numbers from each origin's scored test rows.
pub fn summarize(
    origins: &[OriginRows<'_>],
    min_test_churners: usize,
    resamples: usize,
    seed: u64,
    design: String,
) -> Backtest {
    let mut results = Vec::new();
    let (mut labels, mut scores, mut customers) = (Vec::new(), Vec::new(), Vec::new());
    for o in origins {
        let s = Scored::new(o.labels, o.scores, o.customers);
        let (auc, auc_interval, lift, _) = s.with_intervals(resamples, seed);
        results.push(OriginResult {
            day: o.day,
            trained_on: o.trained_on.clone(),
            train_rows: o.train_rows,
            test_rows: o.labels.len(),
            test_churners: o.labels.iter().filter(|&&y| y).count(),
            auc,
            auc_interval,
            top_decile_lift: lift,
        });
        labels.extend_from_slice(o.labels);
        scores.extend_from_slice(o.scores);
        customers.extend_from_slice(o.customers);
    }
    let s = Scored::new(&labels, &scores, &customers);
    let (auc, auc_interval, lift, lift_interval) = s.with_intervals(resamples, seed);
    let churners = labels.iter().filter(|&&y| y).count();
    Backtest {
        design,
        pooled: Pooled {
            test_rows: labels.len(),
            test_customers: s.customers(),
            test_churners: churners,
            auc,
            auc_interval,
            top_decile_lift: lift,
            lift_interval,
        },
        origins: results,
        min_test_churners,
        resamples,
        warning: too_few_churners(churners, labels.len(), min_test_churners),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::roc_auc;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn origins_train_only_on_days_whose_labels_were_known() {
        let days: Vec<NaiveDate> = [
            "2026-01-01",
            "2026-02-01",
            "2026-03-01",
            "2026-04-01",
            "2026-05-01",
        ]
        .map(d)
        .to_vec();
        let o = origins(&days, 60, 2);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].0, d("2026-04-01"));
        // 2026-02-01 + 60 days = 2026-04-02: not known on 2026-04-01.
        assert_eq!(o[0].1, vec![d("2026-01-01")]);
        assert_eq!(
            o[1].1,
            vec![d("2026-01-01"), d("2026-02-01"), d("2026-03-01")]
        );
        // An origin with nothing known before it is left out.
        assert!(origins(&days[..1], 60, 3).is_empty());
    }

    #[test]
    fn unweighted_auc_equals_the_plain_one_with_ties() {
        let labels = [true, false, true, false, false, true, false, true];
        let scores = [0.9, 0.9, 0.4, 0.2, 0.4, 0.7, 0.1, 0.2];
        let customers: Vec<i64> = (0..8).collect();
        let s = Scored::new(&labels, &scores, &customers);
        let a = s.auc(&s.unit()).unwrap();
        assert!(
            (a - roc_auc(&labels, &scores).unwrap()).abs() < 1e-12,
            "{a}"
        );
        // A weight of 2 is the same as the customer's rows twice.
        let mut w = s.unit();
        w[0] = 2.0;
        let l2 = [true, true, false, true, false, false, true, false, true];
        let s2 = [0.9, 0.9, 0.9, 0.4, 0.2, 0.4, 0.7, 0.1, 0.2];
        assert!((s.auc(&w).unwrap() - roc_auc(&l2, &s2).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn the_walk_in_rank_order_sums_as_the_walk_by_row_did() {
        // The walk before rows were kept in rank order: indices sorted by score, each
        // row's score, customer and label looked up by index. The same sums in the same
        // order: equal to the bit, so no interval changes.
        fn by_index(
            labels: &[bool],
            scores: &[f64],
            cluster: &[u32],
            w: &[f64],
        ) -> (Option<f64>, Option<f64>) {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
            let (mut neg_below, mut num, mut pos_total, mut i) = (0.0, 0.0, 0.0, 0);
            while i < order.len() {
                let s = scores[order[i]];
                let (mut gp, mut gn) = (0.0, 0.0);
                while i < order.len() && scores[order[i]] == s {
                    let r = order[i];
                    let x = w[cluster[r] as usize];
                    if labels[r] {
                        gp += x
                    } else {
                        gn += x
                    }
                    i += 1;
                }
                num += gp * (neg_below + 0.5 * gn);
                neg_below += gn;
                pos_total += gp;
            }
            let auc = (pos_total > 0.0 && neg_below > 0.0).then(|| num / (pos_total * neg_below));
            let wt = |r: usize| w[cluster[r] as usize];
            let total: f64 = (0..labels.len()).map(wt).sum();
            let positives: f64 = (0..labels.len()).filter(|&r| labels[r]).map(wt).sum();
            let (mut taken, mut pos) = (0.0, 0.0);
            for &r in order.iter().rev() {
                if taken >= total / 10.0 {
                    break;
                }
                taken += wt(r);
                if labels[r] {
                    pos += wt(r);
                }
            }
            let lift = (total > 0.0 && positives > 0.0 && taken > 0.0)
                .then(|| (pos / taken) / (positives / total));
            (auc, lift)
        }
        let mut rng = SplitMix(11);
        let labels: Vec<bool> = (0..5000).map(|_| rng.below(7) == 0).collect();
        let scores: Vec<f64> = (0..5000).map(|_| rng.below(400) as f64 / 397.0).collect();
        let customers: Vec<i64> = (0..5000).map(|i| (i * 7919 % 1700) as i64).collect();
        let sc = Scored::new(&labels, &scores, &customers);
        for _ in 0..20 {
            let w: Vec<f64> = (0..sc.customers)
                .map(|_| rng.below(4) as f64 * 0.75)
                .collect();
            let want = by_index(&labels, &scores, &sc.cluster, &w);
            let got = (sc.auc(&w), sc.top_decile_lift(&w));
            assert_eq!(got.0.map(f64::to_bits), want.0.map(f64::to_bits));
            assert_eq!(got.1.map(f64::to_bits), want.1.map(f64::to_bits));
            assert!(got.0.is_some() && got.1.is_some());
        }
    }

    #[test]
    fn resamples_on_every_core_are_the_resamples_one_after_another() {
        // Two rows per customer, ties among the scores.
        let mut rng = SplitMix(3);
        let labels: Vec<bool> = (0..3000).map(|_| rng.below(5) == 0).collect();
        let scores: Vec<f64> = (0..3000).map(|i| (i % 97) as f64 / 97.0).collect();
        let customers: Vec<i64> = (0..3000).map(|i| i / 2).collect();
        let sc = Scored::new(&labels, &scores, &customers);
        // The draws as they were made before: one stream, resample after resample.
        let (resamples, seed) = (101, 9);
        let mut rng = SplitMix(seed ^ 0x5eed_ba5e);
        let (mut aucs, mut lifts) = (Vec::new(), Vec::new());
        let mut weight = vec![0.0; sc.customers];
        for _ in 0..resamples {
            weight.iter_mut().for_each(|w| *w = 0.0);
            for _ in 0..sc.customers {
                weight[rng.below(sc.customers)] += 1.0;
            }
            aucs.extend(sc.auc(&weight));
            lifts.extend(sc.top_decile_lift(&weight));
        }
        let (_, auc_iv, _, lift_iv) = sc.with_intervals(resamples, seed);
        assert_eq!(auc_iv, percentile_interval(&mut aucs, resamples));
        assert_eq!(lift_iv, percentile_interval(&mut lifts, resamples));
        assert!(auc_iv.is_some());
    }

    #[test]
    fn intervals_cover_the_estimate_and_narrow_with_more_customers() {
        let make = |n: usize| {
            let mut labels = Vec::new();
            let mut scores = Vec::new();
            let mut rng = SplitMix(7);
            for _ in 0..n {
                let y = rng.below(4) == 0;
                labels.push(y);
                scores.push(rng.below(1000) as f64 / 1000.0 + if y { 0.3 } else { 0.0 });
            }
            (labels, scores)
        };
        let width = |n: usize| {
            let (l, s) = make(n);
            let c: Vec<i64> = (0..n as i64).collect();
            let sc = Scored::new(&l, &s, &c);
            let (auc, iv, lift, liv) = sc.with_intervals(400, 1);
            let (auc, iv, lift, liv) = (auc.unwrap(), iv.unwrap(), lift.unwrap(), liv.unwrap());
            assert!(iv.low <= auc && auc <= iv.high, "{iv:?} {auc}");
            assert!(liv.low <= lift && lift <= liv.high, "{liv:?} {lift}");
            iv.high - iv.low
        };
        assert!(width(400) > width(6400) * 2.0);
    }

    #[test]
    fn clustered_intervals_are_wider_than_pretending_rows_are_independent() {
        // Each customer's three rows share label and score: 100 customers, not 300 rows.
        let mut labels = Vec::new();
        let mut scores = Vec::new();
        let mut cust = Vec::new();
        let mut rng = SplitMix(3);
        for c in 0..100 {
            let y = rng.below(3) == 0;
            let s = rng.below(100) as f64 / 100.0 + if y { 0.2 } else { 0.0 };
            for _ in 0..3 {
                labels.push(y);
                scores.push(s);
                cust.push(c);
            }
        }
        let rows: Vec<i64> = (0..300).collect();
        let clustered = Scored::new(&labels, &scores, &cust)
            .with_intervals(500, 2)
            .1
            .unwrap();
        let naive = Scored::new(&labels, &scores, &rows)
            .with_intervals(500, 2)
            .1
            .unwrap();
        assert!(
            clustered.high - clustered.low > (naive.high - naive.low) * 1.3,
            "{clustered:?} vs {naive:?}"
        );
    }

    #[test]
    fn too_few_churners_is_said_in_words() {
        let w = too_few_churners(8, 332, 50).unwrap();
        assert!(
            w.starts_with("only 8 churners among 332 test rows (fewer than 50)"),
            "{w}"
        );
        assert!(too_few_churners(50, 332, 50).is_none());
        let labels = [true, false, false];
        let b = summarize(
            &[OriginRows {
                day: d("2026-01-01"),
                trained_on: vec![],
                train_rows: 10,
                labels: &labels,
                scores: &[0.9, 0.1, 0.2],
                customers: &[1, 2, 3],
            }],
            50,
            200,
            1,
            "test".into(),
        );
        assert!(!b.is_decisive());
        assert_eq!(b.pooled.test_churners, 1);
        assert_eq!(b.origins[0].test_rows, 3);
    }
}
