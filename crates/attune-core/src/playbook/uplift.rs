//! Uplift: churn among customers a rule nudged against customers it held out, the
//! difference with a 95% confidence interval, and a plain statement when there are too
//! few customers to tell.
//!
//! The interval for the difference of two proportions is Newcombe's hybrid score interval
//! (method 10 in Newcombe, "Interval estimation for the difference between independent
//! proportions", Statistics in Medicine 17, 1998): Wilson score intervals for each
//! proportion, combined. Unlike the Wald interval it stays inside [-1, 1] and keeps its
//! coverage when churn is rare or a group is small.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::Serialize;

/// 97.5th percentile of the standard normal.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `k` successes in `n`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's interval for p1 - p2 (`k1` of `n1` against `k2` of `n2`).
pub fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> (f64, f64) {
    let p1 = k1 as f64 / n1.max(1) as f64;
    let p2 = k2 as f64 / n2.max(1) as f64;
    let (l1, u1) = wilson(k1, n1, z);
    let (l2, u2) = wilson(k2, n2, z);
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (lower, upper)
}

/// One rule's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleUplift {
    pub rule: String,
    pub treated: u64,
    pub treated_churned: u64,
    pub held_out: u64,
    pub held_out_churned: u64,
    /// Customers whose horizon has not ended yet: not counted on either side.
    pub pending: u64,
    pub treated_churn: Option<f64>,
    pub held_out_churn: Option<f64>,
    /// Treated minus held out: negative means the nudges reduced churn.
    pub difference: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// `significant`, `not_significant` or `too_few`.
    pub verdict: &'static str,
    pub note: String,
    /// The same held-out customers against the nudged customers a nudge of the rule was
    /// delivered to (accepted by the receiver, not reported bounced). Not randomised:
    /// customers who could be reached differ from those who could not, so this reads
    /// beside the comparison above, never instead of it. `None` when nothing was
    /// delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Box<RuleUplift>>,
}

/// Compares treated and held-out churn; below `min_per_group` customers in either
/// group there is no result, only the counts and a sentence saying so.
pub fn compare(
    rule: &str,
    (treated, treated_churned): (u64, u64),
    (held_out, held_out_churned): (u64, u64),
    pending: u64,
    min_per_group: u64,
) -> RuleUplift {
    let mut out = RuleUplift {
        rule: rule.to_owned(),
        treated,
        treated_churned,
        held_out,
        held_out_churned,
        pending,
        treated_churn: None,
        held_out_churn: None,
        difference: None,
        ci_low: None,
        ci_high: None,
        verdict: "too_few",
        note: String::new(),
        delivered: None,
    };
    if treated < min_per_group || held_out < min_per_group {
        out.note = format!(
            "too few customers to tell: {treated} nudged and {held_out} held out with a full horizon; at least {min_per_group} in each are needed"
        );
        return out;
    }
    let p1 = treated_churned as f64 / treated as f64;
    let p2 = held_out_churned as f64 / held_out as f64;
    let (lo, hi) = newcombe(treated_churned, treated, held_out_churned, held_out, Z95);
    out.treated_churn = Some(p1);
    out.held_out_churn = Some(p2);
    out.difference = Some(p1 - p2);
    out.ci_low = Some(lo);
    out.ci_high = Some(hi);
    if hi < 0.0 {
        out.verdict = "significant";
        out.note = format!(
            "nudged customers churned less: {:.1} points lower (95% CI {:.1} to {:.1})",
            -(p1 - p2) * 100.0,
            -hi * 100.0,
            -lo * 100.0
        );
    } else if lo > 0.0 {
        out.verdict = "significant";
        out.note = format!(
            "nudged customers churned MORE: {:.1} points higher (95% CI {:.1} to {:.1})",
            (p1 - p2) * 100.0,
            lo * 100.0,
            hi * 100.0
        );
    } else {
        out.verdict = "not_significant";
        out.note = format!(
            "no significant effect: difference {:+.1} points, 95% CI {:+.1} to {:+.1} includes 0",
            (p1 - p2) * 100.0,
            lo * 100.0,
            hi * 100.0
        );
    }
    out
}

/// One customer's first nudge of a rule, and whether they churned in the horizon after
/// it (as the business's churn definition says).
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort<'a> {
    pub rule: &'a str,
    pub first_day: NaiveDate,
    /// `None` when the customer's nudges of the rule disagree (the share was changed):
    /// such a customer is left out.
    pub held_out: Option<bool>,
    /// Churned within the horizon after `first_day`.
    pub churned: bool,
    /// A nudge of the rule reached the customer (delivered, not bounced).
    pub delivered: bool,
}

/// Churn within `horizon_days` of each customer's first nudge of each rule, nudged
/// against held out (intent to treat: every customer the rule chose counts on their side,
/// whatever later became of the nudge), for customers whose horizon ended by `as_of`.
pub fn report<'a>(
    cohorts: impl IntoIterator<Item = Cohort<'a>>,
    as_of: NaiveDate,
    horizon_days: u32,
    min_per_group: u64,
) -> Vec<RuleUplift> {
    #[derive(Default)]
    struct Tally {
        treated: (u64, u64),
        delivered: (u64, u64),
        held: (u64, u64),
        pending: u64,
    }
    let mut by_rule: BTreeMap<&str, Tally> = BTreeMap::new();
    for c in cohorts {
        let t = by_rule.entry(c.rule).or_default();
        let Some(held) = c.held_out else { continue };
        let end = c.first_day + Days::new(horizon_days as u64);
        let churned = c.churned;
        if end > as_of {
            t.pending += 1;
            continue;
        }
        let side = if held { &mut t.held } else { &mut t.treated };
        side.0 += 1;
        side.1 += churned as u64;
        if !held && c.delivered {
            t.delivered.0 += 1;
            t.delivered.1 += churned as u64;
        }
    }
    by_rule
        .into_iter()
        .map(|(rule, t)| {
            let mut u = compare(rule, t.treated, t.held, t.pending, min_per_group);
            if t.delivered.0 > 0 {
                let mut d = compare(rule, t.delivered, t.held, t.pending, min_per_group);
                d.note = format!(
                    "delivered against held out (not randomised: who could be reached differs): {}",
                    d.note
                        .replace("nudged customers", "customers delivered to")
                        .replace("nudged and", "delivered to and")
                );
                u.delivered = Some(Box::new(d));
            }
            u
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcombe_matches_the_published_examples() {
        // Newcombe (1998), table II: 56/70 against 48/80, method 10 gives 0.0524 to 0.3339.
        let (lo, hi) = newcombe(56, 70, 48, 80, Z95);
        assert!(
            (lo - 0.0524).abs() < 5e-4 && (hi - 0.3339).abs() < 5e-4,
            "{lo} {hi}"
        );
        // 9/10 against 3/10: 0.1705 to 0.8090.
        let (lo, hi) = newcombe(9, 10, 3, 10, Z95);
        assert!(
            (lo - 0.1705).abs() < 5e-4 && (hi - 0.8090).abs() < 5e-4,
            "{lo} {hi}"
        );
        // Wilson for 0 of 10 stays in [0, 1].
        let (lo, hi) = wilson(0, 10, Z95);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 5e-4, "{lo} {hi}");
    }

    #[test]
    fn verdicts_and_too_few() {
        let u = compare("r", (5000, 500), (600, 120), 3, 100);
        assert_eq!(u.verdict, "significant");
        assert!(u.difference.unwrap() < 0.0 && u.ci_high.unwrap() < 0.0);
        let u = compare("r", (5000, 500), (600, 61), 0, 100);
        assert_eq!(u.verdict, "not_significant");
        let u = compare("r", (5000, 500), (40, 4), 0, 100);
        assert_eq!((u.verdict, u.difference), ("too_few", None));
        assert!(
            u.note.starts_with("too few customers to tell"),
            "{}",
            u.note
        );
    }

    #[test]
    fn report_counts_full_horizons_only() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let contract = crate::features::churn::ChurnDefinition::Contract { horizon_days: 60 };
        let c = |held, first: &str, churned: Option<&str>| Cohort {
            rule: "r",
            first_day: d(first),
            held_out: held,
            churned: contract.churned_after(
                churned.map(d),
                &crate::features::Activity::default(),
                d(first),
            ),
            // The first nudged customer's nudge was delivered; the second's was not.
            delivered: churned == Some("2026-02-01"),
        };
        let rows = vec![
            c(Some(false), "2026-01-01", Some("2026-02-01")),
            c(Some(false), "2026-01-01", Some("2026-04-01")),
            c(Some(true), "2026-01-01", None),
            c(Some(true), "2026-01-01", Some("2026-01-20")),
            c(Some(false), "2026-03-01", Some("2026-03-05")),
            c(None, "2026-01-01", None),
        ];
        let r = report(rows, d("2026-03-10"), 60, 1);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].treated, r[0].treated_churned), (2, 1));
        assert_eq!(
            (r[0].held_out, r[0].held_out_churned, r[0].pending),
            (2, 1, 1)
        );
        assert_eq!(r[0].difference, Some(0.0));
        // Delivered against held out: the one delivered to (who churned), against the same
        // held-out customers.
        let d = r[0].delivered.as_ref().expect("one was delivered");
        assert_eq!((d.treated, d.treated_churned, d.held_out), (1, 1, 2));
        assert_eq!(d.difference, Some(0.5));
        assert!(
            d.note
                .starts_with("delivered against held out (not randomised"),
            "{}",
            d.note
        );
    }
}
