//! The evaluation tables data teams already read: calibration by predicted probability,
//! lift and capture by decile, precision and recall at a contact capacity, and the ROC
//! curve, next to the headline [`Metrics`].
//!
//! Pure and deterministic: rows are ranked by probability, highest first, ties broken by
//! row index (earlier rows first), so the same inputs always give the same tables.

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;

/// Number of equal-width calibration bins over `[0, 1]`.
pub const CALIBRATION_BINS: usize = 10;
/// Number of risk groups in the decile table.
pub const DECILES: usize = 10;
/// The ROC curve is thinned to at most this many points (endpoints always kept).
pub const ROC_MAX_POINTS: usize = 200;

/// How one set of churn probabilities did against what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub metrics: Metrics,
    /// Ten equal-width bins of predicted probability, lowest first:
    /// `[0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]`.
    pub calibration: Vec<CalibrationBin>,
    /// Ten risk groups, riskiest first (see [`DecileRow`]).
    pub deciles: Vec<DecileRow>,
    /// Lift of the riskiest decile; absent when there are no churners (or no rows).
    pub top_decile_lift: Option<f64>,
    /// Precision and recall of contacting the top `k` customers, one per capacity asked.
    pub at_k: Vec<AtK>,
    /// `(false positive rate, true positive rate)` from `(0, 0)` to `(1, 1)`, one point
    /// per distinct probability (tied rows move together), collinear points dropped and
    /// thinned to at most [`ROC_MAX_POINTS`]. Empty when the rows lack either class.
    pub roc_curve: Vec<(f64, f64)>,
}

/// Rows whose predicted probability falls in `[lower, upper)` (the last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub positives: usize,
    /// Mean predicted probability of the bin's rows; absent when the bin is empty.
    pub mean_predicted: Option<f64>,
    /// Share of the bin's rows that churned; absent when the bin is empty.
    pub observed_rate: Option<f64>,
}

/// One of ten groups of rows ranked by probability, highest first. Group sizes differ by
/// at most one (the first `n % 10` groups hold one row more); with fewer than ten rows
/// the last groups are empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecileRow {
    /// 1 = riskiest.
    pub decile: usize,
    pub count: usize,
    pub positives: usize,
    /// Lowest and highest probability in the group; absent when it is empty.
    pub min_probability: Option<f64>,
    pub max_probability: Option<f64>,
    /// Share of the group that churned; absent when the group is empty.
    pub churn_rate: Option<f64>,
    /// `churn_rate` divided by the churn rate of all rows; absent when the group is empty
    /// or no row churned.
    pub lift: Option<f64>,
    /// Share of all churners found in this and the riskier groups (capture); absent when
    /// no row churned.
    pub cumulative_positives_share: Option<f64>,
}

/// Contacting the `k` riskiest rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtK {
    /// The capacity asked for.
    pub k: usize,
    /// Rows actually selected: `min(k, rows)`.
    pub selected: usize,
    /// Churners among the selected rows.
    pub positives: usize,
    /// Churners among the selected rows over `selected`; absent when nothing is selected.
    pub precision: Option<f64>,
    /// Churners among the selected rows over all churners; absent when no row churned.
    pub recall: Option<f64>,
}

impl Evaluation {
    /// Evaluates `probs` (each expected within `[0, 1]`) against `labels`
    /// (`true` = churned) for each contact capacity in `capacities`.
    ///
    /// # Panics
    ///
    /// When `labels` and `probs` differ in length.
    pub fn compute(labels: &[bool], probs: &[f64], capacities: &[usize]) -> Evaluation {
        assert_eq!(
            labels.len(),
            probs.len(),
            "Evaluation::compute needs one probability per label"
        );
        let order = rank(probs);
        let deciles = deciles(labels, probs, &order);
        Evaluation {
            metrics: Metrics::compute(labels, probs),
            calibration: calibration(labels, probs),
            top_decile_lift: deciles.first().and_then(|d| d.lift),
            deciles,
            at_k: capacities
                .iter()
                .map(|&k| at_k(labels, &order, k))
                .collect(),
            roc_curve: roc_curve(labels, probs, &order),
        }
    }
}

/// Row indices by probability, highest first; ties by index.
fn rank(probs: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The calibration bin of `p`: `i` such that `i / 10 <= p < (i + 1) / 10`, with 1.0 (and
/// anything above) in the last bin and anything below 0 (or NaN) in the first.
fn bin_of(p: f64) -> usize {
    let n = CALIBRATION_BINS;
    if p.is_nan() || p <= 0.0 {
        return 0;
    }
    let mut i = ((p * n as f64).floor() as usize).min(n - 1);
    // Correct the float product against the edges as written (`i / 10`).
    if i > 0 && p < i as f64 / n as f64 {
        i -= 1;
    }
    if i + 1 < n && p >= (i + 1) as f64 / n as f64 {
        i += 1;
    }
    i
}

fn calibration(labels: &[bool], probs: &[f64]) -> Vec<CalibrationBin> {
    let n = CALIBRATION_BINS;
    let mut count = vec![0usize; n];
    let mut positives = vec![0usize; n];
    let mut sum = vec![0.0f64; n];
    for (&y, &p) in labels.iter().zip(probs) {
        let i = bin_of(p);
        count[i] += 1;
        positives[i] += y as usize;
        sum[i] += p;
    }
    (0..n)
        .map(|i| CalibrationBin {
            lower: i as f64 / n as f64,
            upper: (i + 1) as f64 / n as f64,
            count: count[i],
            positives: positives[i],
            mean_predicted: (count[i] > 0).then(|| sum[i] / count[i] as f64),
            observed_rate: ratio(positives[i], count[i]),
        })
        .collect()
}

fn deciles(labels: &[bool], probs: &[f64], order: &[usize]) -> Vec<DecileRow> {
    let n = order.len();
    let total_positives = labels.iter().filter(|&&y| y).count();
    let overall_rate = ratio(total_positives, n).filter(|&r| r > 0.0);
    let mut start = 0;
    let mut cumulative = 0;
    (0..DECILES)
        .map(|d| {
            let size = n / DECILES + usize::from(d < n % DECILES);
            let group = &order[start..start + size];
            start += size;
            let positives = group.iter().filter(|&&i| labels[i]).count();
            cumulative += positives;
            let churn_rate = ratio(positives, size);
            DecileRow {
                decile: d + 1,
                count: size,
                positives,
                // Ranked highest first: the group's first row is its maximum.
                min_probability: group.last().map(|&i| probs[i]),
                max_probability: group.first().map(|&i| probs[i]),
                churn_rate,
                lift: churn_rate.zip(overall_rate).map(|(r, o)| r / o),
                cumulative_positives_share: ratio(cumulative, total_positives),
            }
        })
        .collect()
}

fn at_k(labels: &[bool], order: &[usize], k: usize) -> AtK {
    let selected = k.min(order.len());
    let positives = order[..selected].iter().filter(|&&i| labels[i]).count();
    let total_positives = labels.iter().filter(|&&y| y).count();
    AtK {
        k,
        selected,
        positives,
        precision: ratio(positives, selected),
        recall: ratio(positives, total_positives),
    }
}

fn roc_curve(labels: &[bool], probs: &[f64], order: &[usize]) -> Vec<(f64, f64)> {
    let total_positives = labels.iter().filter(|&&y| y).count();
    let total_negatives = labels.len() - total_positives;
    if total_positives == 0 || total_negatives == 0 {
        return Vec::new();
    }
    // (false positives, true positives) after each group of tied probabilities.
    let mut counts: Vec<(usize, usize)> = vec![(0, 0)];
    let (mut fp, mut tp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && probs[order[j + 1]] == probs[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        counts.push((fp, tp));
        i = j + 1;
    }
    // Drop points on a straight line between their neighbours (exact, on counts).
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(counts.len());
    for (idx, &point) in counts.iter().enumerate() {
        if let (Some(&prev), Some(&next)) = (kept.last(), counts.get(idx + 1)) {
            let cross = (point.0 - prev.0) as u128 * (next.1 - prev.1) as u128;
            let cross2 = (point.1 - prev.1) as u128 * (next.0 - prev.0) as u128;
            if cross == cross2 {
                continue;
            }
        }
        kept.push(point);
    }
    let kept = thin(&kept, ROC_MAX_POINTS);
    let (p, n) = (total_positives as f64, total_negatives as f64);
    kept.iter()
        .map(|&(fp, tp)| (fp as f64 / n, tp as f64 / p))
        .collect()
}

/// At most `max` (at least 2) evenly spaced items of `points`, first and last included.
fn thin<T: Copy>(points: &[T], max: usize) -> Vec<T> {
    let max = max.max(2);
    if points.len() <= max {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..max)
        .map(|i| points[(i * last + (max - 1) / 2) / (max - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => close(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Twenty rows with probabilities 0.95, 0.90, ..., 0.00 (row i has (19 - i) / 20);
    /// churners at ranks 1, 2, 3, 5, 8 and 13 (6 of 20, base rate 0.3).
    fn twenty() -> (Vec<bool>, Vec<f64>) {
        let churners = [1, 2, 3, 5, 8, 13];
        let labels = (1..=20).map(|r| churners.contains(&r)).collect();
        let probs = (0..20).map(|i| (19 - i) as f64 / 20.0).collect();
        (labels, probs)
    }

    #[test]
    fn calibration_by_hand() {
        let (labels, probs) = twenty();
        let e = Evaluation::compute(&labels, &probs, &[]);
        assert_eq!(e.calibration.len(), 10);
        // Bins from [0, 0.1) up: each holds two rows.
        let observed = [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0];
        for (i, bin) in e.calibration.iter().enumerate() {
            assert!(close(bin.lower, i as f64 / 10.0));
            assert!(close(bin.upper, (i + 1) as f64 / 10.0));
            assert_eq!(bin.count, 2, "bin {i}");
            assert!(
                close_opt(bin.mean_predicted, Some(i as f64 / 10.0 + 0.025)),
                "bin {i}: {:?}",
                bin.mean_predicted
            );
            assert!(close_opt(bin.observed_rate, Some(observed[i])), "bin {i}");
        }
        assert_eq!(e.calibration[9].positives, 2);
    }

    #[test]
    fn calibration_edges_and_empty_bins() {
        let probs = [0.0, 0.1, 0.3, 0.7, 0.9, 1.0, 0.0999];
        let labels = [false, true, false, true, false, true, true];
        let e = Evaluation::compute(&labels, &probs, &[]);
        let counts: Vec<usize> = e.calibration.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 0, 1, 0, 0, 0, 1, 0, 2]);
        assert_eq!(e.calibration[2].mean_predicted, None);
        assert_eq!(e.calibration[2].observed_rate, None);
        assert!(close_opt(e.calibration[9].mean_predicted, Some(0.95)));
        assert!(close_opt(e.calibration[9].observed_rate, Some(0.5)));
        assert!(close_opt(e.calibration[0].observed_rate, Some(0.5)));
    }

    #[test]
    fn deciles_by_hand() {
        let (labels, probs) = twenty();
        let e = Evaluation::compute(&labels, &probs, &[]);
        let positives = [2, 1, 1, 1, 0, 0, 1, 0, 0, 0];
        let capture = [2, 3, 4, 5, 5, 5, 6, 6, 6, 6];
        for (d, row) in e.deciles.iter().enumerate() {
            assert_eq!(row.decile, d + 1);
            assert_eq!(row.count, 2);
            assert_eq!(row.positives, positives[d], "decile {}", d + 1);
            let rate = positives[d] as f64 / 2.0;
            assert!(close_opt(row.churn_rate, Some(rate)));
            assert!(close_opt(row.lift, Some(rate / 0.3)), "decile {}", d + 1);
            assert!(close_opt(
                row.cumulative_positives_share,
                Some(capture[d] as f64 / 6.0)
            ));
            assert!(close_opt(
                row.max_probability,
                Some((19 - 2 * d) as f64 / 20.0)
            ));
            assert!(close_opt(
                row.min_probability,
                Some((18 - 2 * d) as f64 / 20.0)
            ));
        }
        assert!(close_opt(e.top_decile_lift, Some(1.0 / 0.3)));
    }

    #[test]
    fn deciles_split_unevenly_and_break_ties_by_index() {
        // 23 rows: the first three deciles hold 3 rows, the rest 2.
        let probs = vec![0.5; 23];
        let labels: Vec<bool> = (0..23).map(|i| i < 3).collect();
        let e = Evaluation::compute(&labels, &probs, &[]);
        let counts: Vec<usize> = e.deciles.iter().map(|d| d.count).collect();
        assert_eq!(counts, [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        // All tied: earlier rows rank first, so the three churners fill decile 1.
        assert_eq!(e.deciles[0].positives, 3);
        assert!(close_opt(e.top_decile_lift, Some(1.0 / (3.0 / 23.0))));
        assert!(close_opt(
            e.deciles[0].cumulative_positives_share,
            Some(1.0)
        ));

        // Four rows: deciles 5 to 10 are empty.
        let labels = [true, false, true, false];
        let probs = [0.5, 0.5, 0.5, 0.9];
        let e = Evaluation::compute(&labels, &probs, &[2]);
        let got: Vec<(usize, usize)> = e.deciles.iter().map(|d| (d.count, d.positives)).collect();
        assert_eq!(
            got,
            [
                (1, 0),
                (1, 1),
                (1, 0),
                (1, 1),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0)
            ]
        );
        assert_eq!(e.deciles[4].churn_rate, None);
        assert_eq!(e.deciles[4].lift, None);
        assert_eq!(e.deciles[4].min_probability, None);
        assert!(close_opt(
            e.deciles[9].cumulative_positives_share,
            Some(1.0)
        ));
        assert_eq!(e.top_decile_lift, Some(0.0));
        // Top 2 = row 3 (0.9), then row 0 (first of the tied 0.5s).
        assert_eq!(e.at_k[0].positives, 1);
        // ROC with the three tied rows moving together.
        assert_eq!(e.roc_curve, [(0.0, 0.0), (0.5, 0.0), (1.0, 1.0)]);
    }

    #[test]
    fn precision_and_recall_at_k_by_hand() {
        let (labels, probs) = twenty();
        let e = Evaluation::compute(&labels, &probs, &[0, 1, 5, 10, 25]);
        let got: Vec<(usize, usize, usize)> = e
            .at_k
            .iter()
            .map(|a| (a.k, a.selected, a.positives))
            .collect();
        assert_eq!(
            got,
            [(0, 0, 0), (1, 1, 1), (5, 5, 4), (10, 10, 5), (25, 20, 6)]
        );
        assert_eq!(e.at_k[0].precision, None);
        assert!(close_opt(e.at_k[0].recall, Some(0.0)));
        assert!(close_opt(e.at_k[1].precision, Some(1.0)));
        assert!(close_opt(e.at_k[1].recall, Some(1.0 / 6.0)));
        assert!(close_opt(e.at_k[2].precision, Some(0.8)));
        assert!(close_opt(e.at_k[2].recall, Some(4.0 / 6.0)));
        assert!(close_opt(e.at_k[3].precision, Some(0.5)));
        assert!(close_opt(e.at_k[3].recall, Some(5.0 / 6.0)));
        assert!(close_opt(e.at_k[4].precision, Some(0.3)));
        assert!(close_opt(e.at_k[4].recall, Some(1.0)));
    }

    #[test]
    fn roc_curve_by_hand() {
        let (labels, probs) = twenty();
        let e = Evaluation::compute(&labels, &probs, &[]);
        // Ranked labels P P P N P N N P N N N N P N N N N N N N; corners of the staircase
        // in (false positives, true positives), collinear points dropped.
        let corners = [
            (0, 0),
            (0, 3),
            (1, 3),
            (1, 4),
            (3, 4),
            (3, 5),
            (7, 5),
            (7, 6),
            (14, 6),
        ];
        let expected: Vec<(f64, f64)> = corners
            .iter()
            .map(|&(fp, tp)| (fp as f64 / 14.0, tp as f64 / 6.0))
            .collect();
        assert_eq!(e.roc_curve, expected);
        // Area under the staircase equals the rank AUC: 73 of 84 pairs.
        let area: f64 = e
            .roc_curve
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!(close(area, 73.0 / 84.0));
        assert!(close(e.metrics.auc.unwrap(), 73.0 / 84.0));
        assert_eq!((e.metrics.rows, e.metrics.positives), (20, 6));
    }

    #[test]
    fn roc_curve_is_thinned_keeping_endpoints() {
        // 1000 distinct probabilities alternating labels: a zig-zag of 1001 corners.
        let probs: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let labels: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect();
        let e = Evaluation::compute(&labels, &probs, &[]);
        assert_eq!(e.roc_curve.len(), ROC_MAX_POINTS);
        assert_eq!(e.roc_curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(e.roc_curve.last(), Some(&(1.0, 1.0)));
        assert_eq!(thin(&[1, 2, 3, 4, 5], 3), [1, 3, 5]);
        assert_eq!(thin(&[1, 2, 3], 10), [1, 2, 3]);
    }

    #[test]
    fn one_class_and_empty_inputs_do_not_panic() {
        let probs = [0.9, 0.2, 0.4, 0.4, 0.1];
        let none = Evaluation::compute(&[false; 5], &probs, &[2, 10]);
        assert_eq!(none.top_decile_lift, None);
        assert!(none.deciles.iter().all(|d| d.lift.is_none()));
        assert!(
            none.deciles
                .iter()
                .all(|d| d.cumulative_positives_share.is_none())
        );
        assert!(none.roc_curve.is_empty());
        assert_eq!(none.metrics.auc, None);
        assert_eq!(none.at_k[0].recall, None);
        assert!(close_opt(none.at_k[0].precision, Some(0.0)));

        let all = Evaluation::compute(&[true; 5], &probs, &[2]);
        assert!(close_opt(all.top_decile_lift, Some(1.0)));
        assert!(
            all.deciles
                .iter()
                .filter(|d| d.count > 0)
                .all(|d| close_opt(d.lift, Some(1.0)))
        );
        assert!(close_opt(
            all.deciles[9].cumulative_positives_share,
            Some(1.0)
        ));
        assert!(all.roc_curve.is_empty());
        assert!(close_opt(all.at_k[0].recall, Some(0.4)));

        let empty = Evaluation::compute(&[], &[], &[5]);
        assert!(empty.deciles.iter().all(|d| d.count == 0));
        assert!(empty.calibration.iter().all(|b| b.count == 0));
        assert_eq!(empty.top_decile_lift, None);
        assert_eq!(empty.at_k[0].selected, 0);
        assert!(empty.roc_curve.is_empty());
    }

    #[test]
    fn evaluation_round_trips_through_json() {
        // serde_json (without its float_roundtrip feature) may read a float back one ulp
        // off, so compare the JSON text after a round trip, not the values.
        let (labels, probs) = twenty();
        let e = Evaluation::compute(&labels, &probs, &[5]);
        let text = serde_json::to_string(&e).unwrap();
        let back: Evaluation = serde_json::from_str(&text).unwrap();
        assert_eq!(back.deciles.len(), 10);
        assert_eq!(back.at_k, e.at_k);
        let again = serde_json::to_string(&back).unwrap();
        let reread: Evaluation = serde_json::from_str(&again).unwrap();
        assert_eq!(reread, back);
    }

    proptest! {
        #[test]
        fn tables_are_consistent(
            rows in proptest::collection::vec((any::<bool>(), 0u32..=20), 0..300),
            k in 0usize..400,
        ) {
            // Coarse probabilities (multiples of 0.05) make ties common.
            let labels: Vec<bool> = rows.iter().map(|r| r.0).collect();
            let probs: Vec<f64> = rows.iter().map(|r| r.1 as f64 / 20.0).collect();
            let n = labels.len();
            let positives = labels.iter().filter(|&&y| y).count();
            let e = Evaluation::compute(&labels, &probs, &[k]);

            prop_assert_eq!(e.deciles.len(), 10);
            prop_assert_eq!(e.deciles.iter().map(|d| d.count).sum::<usize>(), n);
            prop_assert_eq!(e.deciles.iter().map(|d| d.positives).sum::<usize>(), positives);
            let sizes: Vec<usize> = e.deciles.iter().map(|d| d.count).collect();
            prop_assert!(sizes.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            prop_assert_eq!(e.calibration.iter().map(|b| b.count).sum::<usize>(), n);
            if positives > 0 {
                let last = e.deciles[9].cumulative_positives_share.unwrap();
                prop_assert!(close(last, 1.0), "{}", last);
                let shares: Vec<f64> = e
                    .deciles
                    .iter()
                    .map(|d| d.cumulative_positives_share.unwrap())
                    .collect();
                prop_assert!(shares.windows(2).all(|w| w[0] <= w[1]));
            }
            // Probabilities never increase from one decile to the next.
            let ranges: Vec<(f64, f64)> = e
                .deciles
                .iter()
                .filter_map(|d| d.min_probability.zip(d.max_probability))
                .collect();
            prop_assert!(ranges.windows(2).all(|w| w[0].0 >= w[1].1));

            if positives > 0 && positives < n {
                let roc = &e.roc_curve;
                prop_assert!(roc.len() >= 2 && roc.len() <= ROC_MAX_POINTS);
                prop_assert_eq!(roc[0], (0.0, 0.0));
                prop_assert_eq!(*roc.last().unwrap(), (1.0, 1.0));
                prop_assert!(roc.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
                let area: f64 = roc
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
                    .sum();
                let auc = e.metrics.auc.unwrap();
                prop_assert!((area - auc).abs() < 1e-9, "{} vs {}", area, auc);
            } else {
                prop_assert!(e.roc_curve.is_empty());
            }

            let a = &e.at_k[0];
            prop_assert_eq!(a.selected, k.min(n));
            prop_assert!(a.positives <= a.selected && a.positives <= positives);
            if positives > 0 && k >= n {
                prop_assert!(close(a.recall.unwrap(), 1.0));
            }
        }
    }
}
