//! How well churn probabilities rank and calibrate against what happened.
//!
//! Each function matches its scikit-learn namesake so numbers can be checked against a
//! notebook: `roc_auc` is `roc_auc_score` (ties share their average rank), `pr_auc` is
//! `average_precision_score` (step-wise, tied scores form one threshold), `log_loss`
//! clips probabilities to `[1e-15, 1 - 1e-15]`, `brier` is `brier_score_loss`.

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]` before taking logs.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Area under the ROC curve: the chance that a random churner scores above a random
/// stayer, ties counting one half. `None` when `labels` lacks either class or the
/// lengths differ.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() {
        return None;
    }
    let positives = labels.iter().filter(|&&y| y).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        let group_positives = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += average_rank * group_positives as f64;
        i = j + 1;
    }
    let p = positives as f64;
    let n = negatives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (area under the precision-recall curve, step-wise): the sum over
/// distinct score thresholds, highest first, of precision times the gain in recall.
/// `None` when there are no positives or the lengths differ.
pub fn pr_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() {
        return None;
    }
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut previous_recall = 0.0;
    let mut ap = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let precision = tp as f64 / (tp + fp) as f64;
        let recall = tp as f64 / positives as f64;
        ap += (recall - previous_recall) * precision;
        previous_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// Mean negative log-likelihood of `labels` under `probs` (natural log), with
/// probabilities clipped to `[1e-15, 1 - 1e-15]`. NaN for empty input.
pub fn log_loss(labels: &[bool], probs: &[f64]) -> f64 {
    if labels.is_empty() || labels.len() != probs.len() {
        return f64::NAN;
    }
    let total: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / labels.len() as f64
}

/// Mean squared difference between probability and outcome (0 or 1). NaN for empty input.
pub fn brier(labels: &[bool], probs: &[f64]) -> f64 {
    if labels.is_empty() || labels.len() != probs.len() {
        return f64::NAN;
    }
    let total: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let d = p - if y { 1.0 } else { 0.0 };
            d * d
        })
        .sum();
    total / labels.len() as f64
}

/// The quality of a model's probabilities on one set of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub rows: usize,
    pub positives: usize,
    /// ROC AUC; absent when the rows hold only one class.
    pub auc: Option<f64>,
    /// Average precision; absent when the rows hold no churners.
    pub pr_auc: Option<f64>,
    pub log_loss: f64,
    pub brier: f64,
}

impl Metrics {
    /// All metrics of `probs` against `labels` (same length, at least one row expected).
    pub fn compute(labels: &[bool], probs: &[f64]) -> Self {
        Self {
            rows: labels.len(),
            positives: labels.iter().filter(|&&y| y).count(),
            auc: roc_auc(labels, probs),
            pr_auc: pr_auc(labels, probs),
            log_loss: log_loss(labels, probs),
            brier: brier(labels, probs),
        }
    }

    /// Every number is finite and the areas are within `[0, 1]`.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("auc", self.auc), ("pr_auc", self.pr_auc)] {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=1.0).contains(&v))
            {
                return Err(format!("{name} {v} is not within [0, 1]"));
            }
        }
        for (name, v) in [("log_loss", self.log_loss), ("brier", self.brier)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} {v} is not a finite non-negative number"));
            }
        }
        if self.positives > self.rows {
            return Err(format!(
                "{} positives among {} rows",
                self.positives, self.rows
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[u8]) -> Vec<bool> {
        v.iter().map(|&x| x == 1).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn roc_auc_matches_sklearn_example() {
        let auc = roc_auc(&b(&[0, 0, 1, 1]), &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!(close(auc, 0.75), "{auc}");
    }

    #[test]
    fn roc_auc_averages_tied_ranks() {
        // All tied: 0.5. One positive tied with one negative, the other above everything:
        // pairs (p1>n1, p1>n2, p2>n2, p2~n1) = 3.5 / 4.
        assert!(close(roc_auc(&b(&[0, 1, 0, 1]), &[0.5; 4]).unwrap(), 0.5));
        let auc = roc_auc(&b(&[0, 0, 1, 1]), &[0.1, 0.5, 0.5, 0.9]).unwrap();
        assert!(close(auc, 0.875), "{auc}");
    }

    #[test]
    fn roc_auc_extremes_and_undefined() {
        assert!(close(
            roc_auc(&b(&[0, 0, 1]), &[0.1, 0.2, 0.3]).unwrap(),
            1.0
        ));
        assert!(close(
            roc_auc(&b(&[1, 0, 0]), &[0.9, 0.95, 0.99]).unwrap(),
            0.0
        ));
        assert_eq!(roc_auc(&b(&[1, 1]), &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&b(&[0, 0]), &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&b(&[0, 1]), &[0.1]), None);
    }

    #[test]
    fn average_precision_matches_sklearn_example() {
        let ap = pr_auc(&b(&[0, 0, 1, 1]), &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!(close(ap, 0.5 + 1.0 / 3.0), "{ap}");
    }

    #[test]
    fn average_precision_groups_ties() {
        // One threshold holding everything: precision 2/4 at recall 1.
        assert!(close(pr_auc(&b(&[0, 1, 0, 1]), &[0.5; 4]).unwrap(), 0.5));
        // Thresholds 0.9 (1 tp), 0.5 (tp 2, fp 1), 0.1 (tp 2, fp 2):
        // 0.5 * 1 + 0.5 * 2/3 + 0 = 0.8333...
        let ap = pr_auc(&b(&[1, 1, 0, 0]), &[0.9, 0.5, 0.5, 0.1]).unwrap();
        assert!(close(ap, 0.5 + 1.0 / 3.0), "{ap}");
        assert_eq!(pr_auc(&b(&[0, 0]), &[0.1, 0.2]), None);
    }

    #[test]
    fn log_loss_and_brier_by_hand() {
        let labels = b(&[1, 0]);
        let probs = [0.8, 0.3];
        let expected = -(0.8f64.ln() + 0.7f64.ln()) / 2.0;
        assert!(close(log_loss(&labels, &probs), expected));
        assert!(close(brier(&labels, &probs), (0.04 + 0.09) / 2.0));
        // Clipping keeps a confident mistake finite: -ln(1e-15).
        let clipped = log_loss(&b(&[1]), &[0.0]);
        assert!(close(clipped, -(1e-15f64).ln()), "{clipped}");
        assert!(log_loss(&[], &[]).is_nan());
    }

    #[test]
    fn metrics_compute_collects_everything() {
        let m = Metrics::compute(&b(&[0, 0, 1, 1]), &[0.1, 0.4, 0.35, 0.8]);
        assert_eq!((m.rows, m.positives), (4, 2));
        assert!(close(m.auc.unwrap(), 0.75));
        assert!(close(m.pr_auc.unwrap(), 0.5 + 1.0 / 3.0));
        assert!(m.check().is_ok());
    }
}
