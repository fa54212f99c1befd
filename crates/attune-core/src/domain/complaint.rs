//! A complaint's lifecycle, defined once.
//!
//! The playbook (which complaints a follow-up or the ombudsman notice is for), the review
//! desk (the Complaints panel of a nudge and a customer, the overview's count and list of
//! customers with an unresolved complaint) and the API all read a customer's complaints
//! through [`lifecycle`]. Events carry no complaint id, so the rules that pair them are
//! part of the definition:
//!
//! - an opening starts a complaint;
//! - a resolution closes the **oldest** open complaint (complaints are answered in the
//!   order they came; the features' `balance` and `open_age` count the same way), and one
//!   with nothing open is ignored;
//! - a reopening reopens the **most recently resolved** complaint: it is the same
//!   complaint, and its age still counts from its first opening (the ombudsman's eight
//!   weeks run from when the customer first complained). A reopening with nothing
//!   resolved before it belongs to a complaint opened before the history that was read,
//!   and counts from the reopening.
//!
//! Events at the same second are taken in id order.

use chrono::{DateTime, NaiveDate};
use serde::Serialize;

use super::Meaning;

/// Weeks after which a complaint still unresolved must be answered with the ombudsman.
pub const OMBUDSMAN_WEEKS: i64 = 8;

/// What a complaint event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Opened,
    Resolved,
    Reopened,
}

impl Step {
    /// The step an event of this meaning takes, if it is a complaint event.
    pub fn of(meaning: Meaning) -> Option<Step> {
        match meaning {
            Meaning::ComplaintOpened => Some(Step::Opened),
            Meaning::ComplaintResolved => Some(Step::Resolved),
            Meaning::ComplaintReopened => Some(Step::Reopened),
            _ => None,
        }
    }
}

/// One complaint event: its id (the opening's id names the complaint), when it happened
/// (unix seconds), and the customer's satisfaction (1 to 5) a resolution may carry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComplaintEvent {
    pub id: i64,
    pub at: i64,
    pub step: Step,
    pub satisfaction: Option<f64>,
}

/// A complaint and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Complaint {
    /// The id of the event that opened it (or of the reopening, when its opening is older
    /// than the history read).
    pub opened_id: i64,
    pub opened_at: i64,
    pub open: bool,
    /// Its latest resolution, while it is resolved.
    pub resolved_at: Option<i64>,
    /// The customer's satisfaction at that resolution, 1 to 5.
    pub satisfaction: Option<f64>,
    /// How many times it was reopened, and the latest time.
    pub reopened: u32,
    pub reopened_at: Option<i64>,
}

impl Complaint {
    /// Whole days from the day it was opened to `as_of` (while open) or to the day it was
    /// resolved.
    pub fn days_open(&self, as_of: NaiveDate) -> i64 {
        let end = match self.resolved_at {
            Some(r) if !self.open => day_of(r).min(as_of),
            _ => as_of,
        };
        (end - day_of(self.opened_at)).num_days().max(0)
    }

    /// Whether it is unresolved `OMBUDSMAN_WEEKS` weeks or more after it was opened.
    pub fn past_ombudsman_point(&self, as_of: NaiveDate) -> bool {
        self.open && self.days_open(as_of) >= OMBUDSMAN_WEEKS * 7
    }
}

/// The UTC day of unix seconds.
pub fn day_of(at: i64) -> NaiveDate {
    DateTime::from_timestamp(at, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// A customer's complaints, oldest opening first, from their complaint events in any
/// order (see the module's rules).
pub fn lifecycle(events: impl IntoIterator<Item = ComplaintEvent>) -> Vec<Complaint> {
    let mut events: Vec<ComplaintEvent> = events.into_iter().collect();
    events.sort_by_key(|e| (e.at, e.id));
    let mut out: Vec<Complaint> = Vec::new();
    for e in events {
        match e.step {
            Step::Opened => out.push(Complaint {
                opened_id: e.id,
                opened_at: e.at,
                open: true,
                resolved_at: None,
                satisfaction: None,
                reopened: 0,
                reopened_at: None,
            }),
            Step::Resolved => {
                // The oldest open one: complaints are kept in the order they were opened.
                if let Some(c) = out
                    .iter_mut()
                    .filter(|c| c.open)
                    .min_by_key(|c| c.opened_at)
                {
                    c.open = false;
                    c.resolved_at = Some(e.at);
                    c.satisfaction = e.satisfaction;
                }
            }
            Step::Reopened => {
                // The most recently resolved; of two resolved at once, the later opened.
                match out
                    .iter_mut()
                    .filter(|c| !c.open)
                    .max_by_key(|c| (c.resolved_at, c.opened_at))
                {
                    Some(c) => {
                        c.open = true;
                        c.resolved_at = None;
                        c.satisfaction = None;
                        c.reopened += 1;
                        c.reopened_at = Some(e.at);
                    }
                    None => out.push(Complaint {
                        opened_id: e.id,
                        opened_at: e.at,
                        open: true,
                        resolved_at: None,
                        satisfaction: None,
                        reopened: 1,
                        reopened_at: Some(e.at),
                    }),
                }
            }
        }
    }
    out.sort_by_key(|c| (c.opened_at, c.opened_id));
    out
}

/// The customer's oldest unresolved complaint, the one the ombudsman's clock runs for.
pub fn oldest_open(complaints: &[Complaint]) -> Option<&Complaint> {
    complaints
        .iter()
        .filter(|c| c.open)
        .min_by_key(|c| (c.opened_at, c.opened_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn ev(id: i64, day: i64, step: Step) -> ComplaintEvent {
        ComplaintEvent {
            id,
            at: 1_767_225_600 + day * DAY, // 2026-01-01
            step,
            satisfaction: (step == Step::Resolved).then_some(3.0),
        }
    }

    /// The history the issue found three answers for: opened t1, opened t2, resolved t3.
    #[test]
    fn a_resolution_closes_the_oldest_open_complaint() {
        let c = lifecycle([
            ev(1, 0, Step::Opened),
            ev(2, 10, Step::Opened),
            ev(3, 20, Step::Resolved),
        ]);
        assert_eq!(c.len(), 2);
        assert!(
            !c[0].open
                && c[0].opened_id == 1
                && c[0].resolved_at == Some(ev(3, 20, Step::Resolved).at)
        );
        assert!(c[1].open && c[1].opened_id == 2);
        assert_eq!(oldest_open(&c).map(|c| c.opened_id), Some(2));
    }

    #[test]
    fn a_reopening_reopens_the_latest_resolved_and_keeps_its_age() {
        let c = lifecycle([
            ev(1, 0, Step::Opened),
            ev(2, 10, Step::Opened),
            ev(3, 20, Step::Resolved), // closes 1
            ev(4, 30, Step::Resolved), // closes 2
            ev(5, 40, Step::Reopened), // reopens 2
        ]);
        assert!(!c[0].open);
        assert!(c[1].open && c[1].reopened == 1 && c[1].resolved_at.is_none());
        let as_of = day_of(ev(0, 70, Step::Opened).at);
        assert_eq!(c[1].days_open(as_of), 60);
        assert!(c[1].past_ombudsman_point(as_of));
        assert_eq!(
            c[0].days_open(as_of),
            20,
            "resolved: counted to its resolution"
        );
        assert!(!c[0].past_ombudsman_point(as_of));
    }

    #[test]
    fn edge_cases_of_the_history_read() {
        // A resolution with nothing open is ignored; a reopening with nothing resolved
        // belongs to an older complaint and counts from the reopening.
        let c = lifecycle([ev(1, 0, Step::Resolved), ev(2, 5, Step::Reopened)]);
        assert_eq!(c.len(), 1);
        assert!(c[0].open && c[0].opened_id == 2 && c[0].reopened == 1);
        // Order of the input does not matter; same-second events go by id.
        let a = lifecycle([ev(2, 0, Step::Resolved), ev(1, 0, Step::Opened)]);
        assert!(!a[0].open);
        let b = lifecycle([ev(1, 0, Step::Resolved), ev(2, 0, Step::Opened)]);
        assert!(b[0].open);
    }

    #[test]
    fn steps_come_from_meanings() {
        assert_eq!(Step::of(Meaning::ComplaintOpened), Some(Step::Opened));
        assert_eq!(Step::of(Meaning::ComplaintReopened), Some(Step::Reopened));
        assert_eq!(Step::of(Meaning::ComplaintResolved), Some(Step::Resolved));
        assert_eq!(Step::of(Meaning::Login), None);
    }
}
