//! Training sets from history: observations of customers at a series of past days, each
//! with the features known on that day and whether the customer churned within the horizon
//! after it. Pure: the store gathers the inputs.
//!
//! Splits keep evaluation honest: a customer is either on the training side or on the
//! test side, never both (a customer's own history would otherwise leak across), and the
//! backtest ([`super::backtest`]) tests each day with a model trained on earlier days.

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub customer_id: i64,
    pub as_of: NaiveDate,
    /// Churned within the horizon after `as_of`.
    pub label: bool,
}

/// What a training set holds, for the summary a data team reads first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingWindow {
    /// Observation days, oldest first.
    pub dates: Vec<NaiveDate>,
    /// Days of the series left out because they fall before the first day of imported
    /// activity: a day with no history is not a day of zero activity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days_before_history: Vec<NaiveDate>,
    /// What churn means for the labels, in words.
    #[serde(default)]
    pub churn_definition: String,
    pub horizon_days: u64,
    pub observations: usize,
    pub churned: usize,
    pub churn_rate: f64,
    pub train_observations: usize,
    pub validation_observations: usize,
    /// The day validated on (the latest observation day).
    pub validation_date: Option<NaiveDate>,
    /// Share of customers set aside for validation.
    pub validation_customer_share: f64,
}

impl TrainingWindow {
    /// `first..last` of the observation days, as recorded in the registry.
    pub fn span(&self) -> String {
        match (self.dates.first(), self.dates.last()) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => String::new(),
        }
    }
}

/// Which days a training set observes customers on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaySeries {
    /// The first of each month.
    MonthStarts,
    /// Mondays.
    WeekStarts,
    /// These days.
    Dates(Vec<NaiveDate>),
}

/// The first days of the `count` months up to the latest month start whose horizon has
/// ended by `today`, oldest first. Features as of the first of a month see everything
/// up to the end of the month before.
pub fn observation_dates(today: NaiveDate, horizon_days: u64, count: usize) -> Vec<NaiveDate> {
    observation_days(&DaySeries::MonthStarts, today, horizon_days, count, None).0
}

/// The observation days of `series`: those whose horizon has ended by `today`, the latest
/// `count` of them (every listed date for [`DaySeries::Dates`]), oldest first; and, apart,
/// the days left out because they are not after `first_activity`, the first day of
/// imported activity (a day before any history would read as a day of no activity).
pub fn observation_days(
    series: &DaySeries,
    today: NaiveDate,
    horizon_days: u64,
    count: usize,
    first_activity: Option<NaiveDate>,
) -> (Vec<NaiveDate>, Vec<NaiveDate>) {
    let Some(latest_allowed) = today.checked_sub_days(Days::new(horizon_days)) else {
        return (vec![], vec![]);
    };
    let mut dates: Vec<NaiveDate> = match series {
        DaySeries::Dates(list) => {
            let mut d: Vec<NaiveDate> = list
                .iter()
                .copied()
                .filter(|d| *d <= latest_allowed)
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        }
        DaySeries::MonthStarts | DaySeries::WeekStarts => {
            let mut day = match series {
                DaySeries::MonthStarts => {
                    NaiveDate::from_ymd_opt(latest_allowed.year(), latest_allowed.month(), 1)
                        .expect("first of month")
                }
                _ => {
                    latest_allowed
                        - Days::new(latest_allowed.weekday().num_days_from_monday() as u64)
                }
            };
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                out.push(day);
                let previous = match series {
                    DaySeries::MonthStarts => day.checked_sub_months(Months::new(1)),
                    _ => day.checked_sub_days(Days::new(7)),
                };
                match previous {
                    Some(d) => day = d,
                    None => break,
                }
            }
            out.reverse();
            out
        }
    };
    let mut before = Vec::new();
    if let Some(first) = first_activity {
        before = dates.iter().copied().filter(|d| *d <= first).collect();
        dates.retain(|d| *d > first);
    }
    (dates, before)
}

/// Whether a customer is set aside for validation: stable across runs, about `share` of
/// customers, decided by hashing the id with the seed (SplitMix64).
pub fn is_validation_customer(customer_id: i64, seed: u64, share: f64) -> bool {
    let mut z = (customer_id as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 <= share
}

/// Splits observations: train = earlier days and training customers; validation = the
/// latest day and validation customers. Observations of validation customers on earlier
/// days and of training customers on the latest day are used by neither, so no customer
/// crosses over and no training row comes from the validation day.
pub fn split_by_time_and_customer(
    obs: &[Observation],
    share: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let Some(latest) = obs.iter().map(|o| o.as_of).max() else {
        return (vec![], vec![]);
    };
    let mut train = Vec::new();
    let mut validation = Vec::new();
    for (i, o) in obs.iter().enumerate() {
        let held = is_validation_customer(o.customer_id, seed, share);
        match (o.as_of == latest, held) {
            (false, false) => train.push(i),
            (true, true) => validation.push(i),
            _ => {}
        }
    }
    (train, validation)
}

pub fn window(
    obs: &[Observation],
    dates: &[NaiveDate],
    horizon_days: u64,
    train: usize,
    validation: usize,
    share: f64,
) -> TrainingWindow {
    let churned = obs.iter().filter(|o| o.label).count();
    TrainingWindow {
        dates: dates.to_vec(),
        days_before_history: Vec::new(),
        churn_definition: String::new(),
        horizon_days,
        observations: obs.len(),
        churned,
        churn_rate: if obs.is_empty() {
            0.0
        } else {
            churned as f64 / obs.len() as f64
        },
        train_observations: train,
        validation_observations: validation,
        validation_date: obs.iter().map(|o| o.as_of).max(),
        validation_customer_share: share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn observation_days_are_month_starts_whose_horizon_has_ended() {
        let dates = observation_dates(d("2026-11-23"), 60, 3);
        assert_eq!(
            dates,
            vec![d("2026-07-01"), d("2026-08-01"), d("2026-09-01")]
        );
        assert!(dates.iter().all(|x| *x + Days::new(60) <= d("2026-11-23")));
    }

    #[test]
    fn weeks_lists_and_no_day_before_the_first_activity() {
        let (weeks, before) = observation_days(
            &DaySeries::WeekStarts,
            d("2026-11-23"),
            30,
            4,
            Some(d("2026-10-05")),
        );
        // 2026-11-23 - 30 days = 2026-10-24 (a Saturday): Mondays up to 2026-10-19.
        assert_eq!(weeks, vec![d("2026-10-12"), d("2026-10-19")]);
        assert_eq!(before, vec![d("2026-09-28"), d("2026-10-05")]);
        let (listed, _) = observation_days(
            &DaySeries::Dates(vec![d("2026-09-15"), d("2026-06-01"), d("2026-11-01")]),
            d("2026-11-23"),
            30,
            1,
            None,
        );
        assert_eq!(
            listed,
            vec![d("2026-06-01"), d("2026-09-15")],
            "every listed day whose horizon ended"
        );
    }

    #[test]
    fn validation_customers_are_stable_and_about_the_share() {
        let n = 100_000;
        let held = (0..n)
            .filter(|&id| is_validation_customer(id, 42, 0.25))
            .count();
        assert!((held as f64 / n as f64 - 0.25).abs() < 0.01, "{held}");
        assert_eq!(
            is_validation_customer(7, 42, 0.25),
            is_validation_customer(7, 42, 0.25)
        );
    }

    #[test]
    fn no_customer_is_in_both_parts_and_validation_is_the_latest_day() {
        let days = [d("2026-01-01"), d("2026-02-01"), d("2026-03-01")];
        let obs: Vec<Observation> = (0..300)
            .flat_map(|c| {
                days.iter().map(move |&day| Observation {
                    customer_id: c,
                    as_of: day,
                    label: c % 5 == 0,
                })
            })
            .collect();
        let (train, validation) = split_by_time_and_customer(&obs, 0.25, 1);
        let train_customers: std::collections::HashSet<i64> =
            train.iter().map(|&i| obs[i].customer_id).collect();
        assert!(
            validation
                .iter()
                .all(|&i| !train_customers.contains(&obs[i].customer_id))
        );
        assert!(validation.iter().all(|&i| obs[i].as_of == d("2026-03-01")));
        assert!(train.iter().all(|&i| obs[i].as_of < d("2026-03-01")));
        assert!(!train.is_empty() && !validation.is_empty());
    }
}
