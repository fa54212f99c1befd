//! Weekly review budgets: marketing says how many nudges of a rule it can review in a week
//! (`attune playbook budget RULE N`, or the overview's form); the most valuable nudges
//! waiting for review get the week's places and the rest wait, deferred, for a later week.
//!
//! Pure: the store reads a rule's nudges, [`allot`] says which change, the store writes.

use chrono::{Datelike, Days, NaiveDate};

/// Monday 00:00 UTC of the week `day` is in (unix seconds): the budget's week.
pub fn week_start(day: NaiveDate) -> i64 {
    let monday = day - Days::new(day.weekday().num_days_from_monday() as u64);
    monday
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
}

/// Why a nudge waits: said on the nudge page and in the queue of deferred nudges.
pub fn waiting_reason(weekly: u64) -> String {
    format!(
        "waiting for a place in this rule's weekly review budget ({weekly} a week): the most valuable nudges are reviewed first"
    )
}

/// One nudge of a budgeted rule, as the budget sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: i64,
    /// Probability x monthly charge x horizon; a nudge without one ranks last.
    pub expected_value: Option<f64>,
    pub place: Place,
}

/// Where a nudge stands against its rule's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Proposed since the last budget pass: not yet counted against any week.
    New,
    /// Proposed and counted against this week's budget, not yet decided.
    InReview,
    /// Counted against this week's budget and decided (or released, waiting for a contact
    /// slot): its place is taken for good.
    Used,
    /// Deferred by the budget, waiting for a place.
    Waiting,
}

/// What the budget pass does to a rule's nudges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allotment {
    /// New nudges that take a place this week (they stay proposed).
    pub admit: Vec<i64>,
    /// Waiting nudges that take a place this week: released to planning, which proposes
    /// them when the customer's contact cap allows.
    pub release: Vec<i64>,
    /// New or in-review nudges over the budget: deferred until a place frees.
    pub defer: Vec<i64>,
    /// Places taken this week once the changes are made.
    pub used: u64,
}

/// Gives this week's `budget` places to the most valuable nudges (ties by id, oldest
/// first); places already used by decided nudges stay used. `None`: no budget, so every
/// waiting nudge is released and every new one admitted.
pub fn allot(budget: Option<u64>, nudges: &[Candidate]) -> Allotment {
    let used = nudges.iter().filter(|n| n.place == Place::Used).count() as u64;
    let mut pool: Vec<&Candidate> = nudges.iter().filter(|n| n.place != Place::Used).collect();
    pool.sort_by(|a, b| {
        let v = |c: &Candidate| c.expected_value.filter(|v| v.is_finite());
        match (v(a), v(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then(a.id.cmp(&b.id))
    });
    let places = budget.map_or(pool.len() as u64, |b| b.saturating_sub(used)) as usize;
    let mut out = Allotment {
        used,
        ..Allotment::default()
    };
    for (rank, n) in pool.iter().enumerate() {
        let inside = rank < places;
        if inside {
            out.used += 1;
        }
        match (n.place, inside) {
            (Place::New, true) => out.admit.push(n.id),
            (Place::Waiting, true) => out.release.push(n.id),
            (Place::New | Place::InReview, false) => out.defer.push(n.id),
            (Place::InReview, true) | (Place::Waiting, false) | (Place::Used, _) => {}
        }
    }
    if budget.is_none() {
        out.used = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Place::*;
    use proptest::prelude::*;

    fn c(id: i64, v: Option<f64>, place: Place) -> Candidate {
        Candidate {
            id,
            expected_value: v,
            place,
        }
    }

    #[test]
    fn weeks_start_on_monday_in_utc() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let monday = week_start(d("2026-11-30"));
        assert_eq!(monday, 1_795_996_800);
        assert_eq!(week_start(d("2026-12-06")), monday);
        assert_eq!(week_start(d("2026-12-07")), monday + 7 * 86_400);
    }

    #[test]
    fn the_most_valuable_take_the_places_left_after_decided_ones() {
        let nudges = [
            c(1, Some(10.0), Used),
            c(2, Some(5.0), InReview),
            c(3, Some(50.0), New),
            c(4, Some(40.0), Waiting),
            c(5, None, New),
            c(6, Some(1.0), New),
        ];
        let a = allot(Some(3), &nudges);
        // One place is used (1); two left: 3 (50) and 4 (40).
        assert_eq!(a.admit, [3]);
        assert_eq!(a.release, [4]);
        assert_eq!(a.defer, [2, 6, 5]);
        assert_eq!(a.used, 3);
        // No budget: everything waiting goes back, nothing is deferred.
        let a = allot(None, &nudges);
        assert_eq!(
            (a.admit, a.release, a.defer),
            (vec![3, 6, 5], vec![4], vec![])
        );
        // A budget already spent by decided nudges defers every new one.
        let a = allot(Some(1), &nudges);
        assert_eq!(a.defer, [3, 2, 6, 5]);
        assert!(a.admit.is_empty() && a.release.is_empty());
    }

    fn place() -> impl Strategy<Value = Place> {
        prop_oneof![Just(New), Just(InReview), Just(Used), Just(Waiting)]
    }

    proptest! {
        /// Never more places than the budget (beyond those decided before it was cut), every
        /// nudge inside the week's places worth at least every nudge left waiting, and each
        /// nudge changed at most once.
        #[test]
        fn the_budget_holds_and_value_decides(
            budget in 0u64..8,
            nudges in proptest::collection::vec((proptest::option::of(0.0f64..100.0), place()), 0..30),
        ) {
            let nudges: Vec<Candidate> = nudges
                .into_iter()
                .enumerate()
                .map(|(i, (v, p))| c(i as i64, v, p))
                .collect();
            let a = allot(Some(budget), &nudges);
            let used = nudges.iter().filter(|n| n.place == Used).count() as u64;
            prop_assert_eq!(a.used, budget.max(used).min(used + nudges.iter().filter(|n| n.place != Used).count() as u64));
            let inside: Vec<&Candidate> = nudges
                .iter()
                .filter(|n| {
                    a.admit.contains(&n.id)
                        || a.release.contains(&n.id)
                        || (n.place == InReview && !a.defer.contains(&n.id))
                })
                .collect();
            let outside: Vec<&Candidate> = nudges
                .iter()
                .filter(|n| a.defer.contains(&n.id) || (n.place == Waiting && !a.release.contains(&n.id)))
                .collect();
            prop_assert_eq!(inside.len() + outside.len() + used as usize, nudges.len());
            prop_assert!(used + inside.len() as u64 <= budget.max(used));
            let worth = |n: &Candidate| n.expected_value.unwrap_or(f64::NEG_INFINITY);
            for i in &inside {
                for o in &outside {
                    prop_assert!(worth(i) >= worth(o), "{:?} inside, {:?} waits", i, o);
                }
            }
            let mut all: Vec<i64> = a.admit.iter().chain(&a.release).chain(&a.defer).copied().collect();
            all.sort();
            let n = all.len();
            all.dedup();
            prop_assert_eq!(all.len(), n);
        }
    }
}
