//! What churn means for this business, decided point in time: who is a customer on a day
//! (scored, observed for training, counted at risk) and whether an observation's customer
//! churned within the horizon after it (its label).
//!
//! Two definitions. `contract`: a customer leaves on a day (the record's `churned_on`,
//! which a `churned` event sets), as subscriptions and utilities record it. `inactivity`:
//! a customer who does nothing of the listed kinds for N days has left, as retailers and
//! apps define it: the label of an observation day is "no such event in the next N days",
//! and a customer silent for the N days before a day is no longer a customer that day.
//! Training, scoring, the overview's counts and `report uplift` all ask here. Pure.

use chrono::{Days, NaiveDate};

use super::{Activity, Kinds, Lookback, day_number};
use crate::domain::{Customer, EventKinds, KindSet};

#[derive(Debug, Clone, PartialEq)]
pub enum ChurnDefinition {
    /// Churned on the record's `churned_on`; the label is "churned within `horizon_days`".
    Contract { horizon_days: u32 },
    /// Churned when no event of `kinds` happens for `days` days.
    Inactivity { kinds: Kinds, days: u32 },
}

impl ChurnDefinition {
    /// `contract`, or `inactivity` over `kinds` (names or meanings, resolved in `catalog`)
    /// for `days`. Errors name the setting.
    pub fn new(
        definition: &str,
        horizon_days: u32,
        kinds: &[String],
        days: Option<u32>,
        catalog: &EventKinds,
    ) -> Result<Self, String> {
        match definition {
            "contract" => Ok(Self::Contract { horizon_days }),
            "inactivity" => {
                if kinds.is_empty() {
                    return Err("churn.kinds is empty; an inactivity definition lists the kinds that count as activity, e.g. kinds = [\"purchase\"]".into());
                }
                let mut set = KindSet::new();
                for k in kinds {
                    set.extend(&catalog.select(k).map_err(|e| format!("churn.kinds: {e}"))?);
                }
                let days = match days {
                    Some(d) if (1..=3650).contains(&d) => d,
                    Some(d) => {
                        return Err(format!(
                            "churn.days = {d}: give the days of silence after which a customer has left, from 1 to 3650"
                        ));
                    }
                    None => {
                        return Err("churn.days is missing: an inactivity definition needs the days of silence after which a customer has left, e.g. days = 90".into());
                    }
                };
                Ok(Self::Inactivity {
                    kinds: Kinds {
                        names: kinds.to_vec(),
                        set,
                    },
                    days,
                })
            }
            other => Err(format!(
                "churn.definition = {other:?}: use \"contract\" (the customer record's churned_on) or \"inactivity\" (no event of churn.kinds for churn.days days)"
            )),
        }
    }

    /// Days after an observation day its label looks at.
    pub fn horizon_days(&self) -> u32 {
        match self {
            Self::Contract { horizon_days } => *horizon_days,
            Self::Inactivity { days, .. } => *days,
        }
    }

    /// In words, for summaries and reports.
    pub fn describe(&self) -> String {
        match self {
            Self::Contract { horizon_days } => {
                format!("left (the churn date on the customer record) within {horizon_days} days")
            }
            Self::Inactivity { kinds, days } => format!(
                "no {} for {days} days",
                kinds
                    .names
                    .iter()
                    .map(|n| n.replace('_', " "))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    }

    /// What activity deciding [`is_active_on`](Self::is_active_on) needs, as of a day.
    pub fn lookback(&self) -> Lookback {
        let mut l = Lookback::default();
        if let Self::Inactivity { kinds, days } = self {
            l.need(&kinds.set, Some(*days));
        }
        l
    }

    /// Whether `customer` is a customer at the start of `day`: signed up by then, not
    /// left by the record, and (inactivity) in touch within the last N days or signed up
    /// less than N days ago. `activity` must cover the N days before `day`.
    pub fn is_active_on(&self, customer: &Customer, activity: &Activity, day: NaiveDate) -> bool {
        if !customer.is_active_on(day) {
            return false;
        }
        match self {
            Self::Contract { .. } => true,
            Self::Inactivity { kinds, days } => {
                let today = day_number(day);
                let from = today - *days as i32;
                if day_number(customer.signup_date) > from {
                    return true;
                }
                activity
                    .before(today)
                    .iter()
                    .rev()
                    .take_while(|d| d.day >= from)
                    .any(|d| d.n > 0 && kinds.has(d.kind))
            }
        }
    }

    /// Whether a customer observed at the start of `day` churned within the horizon after
    /// it. `activity` must cover the horizon (inactivity); only a day whose horizon has
    /// ended ([`label_known_by`](Self::label_known_by)) has a label to learn from.
    pub fn label(&self, customer: &Customer, activity: &Activity, day: NaiveDate) -> bool {
        self.churned_after(customer.churned_on, activity, day)
    }

    /// [`label`](Self::label) from the record's `churned_on` alone (what the uplift report
    /// reads with each nudged customer).
    pub fn churned_after(
        &self,
        churned_on: Option<NaiveDate>,
        activity: &Activity,
        day: NaiveDate,
    ) -> bool {
        match self {
            Self::Contract { horizon_days } => {
                let end = day + Days::new(*horizon_days as u64);
                churned_on.is_some_and(|d| d > day && d <= end)
            }
            Self::Inactivity { kinds, days } => {
                let (from, to) = (day_number(day), day_number(day) + *days as i32);
                !activity
                    .days()
                    .iter()
                    .any(|d| d.day >= from && d.day < to && d.n > 0 && kinds.has(d.kind))
            }
        }
    }

    /// The same definition with another horizon: a contract label `horizon_days` long
    /// (`report uplift --horizon-days`); an inactivity label is always its `days` long.
    pub fn with_horizon(&self, horizon_days: u32) -> Self {
        match self {
            Self::Contract { .. } => Self::Contract { horizon_days },
            other => other.clone(),
        }
    }

    /// The first day on which the label of `day` is known: its horizon has passed.
    pub fn label_known_by(&self, day: NaiveDate) -> NaiveDate {
        day + Days::new(self.horizon_days() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Consent, ContractType, CustomerId, Meaning};
    use crate::features::DayCount;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn customer(signup: &str, churned: Option<&str>) -> Customer {
        Customer {
            external_id: CustomerId::parse("c").unwrap(),
            signup_date: d(signup),
            plan: "p".into(),
            monthly_charge: 0.0,
            contract_type: ContractType::MonthToMonth,
            contract_end: None,
            first_invoice_due: None,
            preferred_channel: Channel::Email,
            consent: Consent::ALL,
            churned_on: churned.map(d),
            attributes: Default::default(),
        }
    }

    fn purchases(days: &[&str]) -> Activity {
        Activity::new(
            days.iter()
                .map(|s| DayCount {
                    day: day_number(d(s)),
                    kind: Meaning::PaymentMade.code(),
                    n: 1,
                    total: 10.0,
                })
                .collect(),
        )
    }

    #[test]
    fn inactivity_decides_who_is_a_customer_and_the_label_from_the_same_kinds() {
        let kinds = EventKinds::builtin();
        let def =
            ChurnDefinition::new("inactivity", 60, &["payment".into()], Some(90), &kinds).unwrap();
        assert_eq!(def.horizon_days(), 90);
        let c = customer("2025-01-01", None);
        let a = purchases(&["2025-02-01", "2025-06-15"]);
        // In touch within 90 days of 2025-07-01; not within 90 days of 2025-10-01.
        assert!(def.is_active_on(&c, &a, d("2025-07-01")));
        assert!(!def.is_active_on(&c, &a, d("2025-09-14")));
        assert!(def.is_active_on(&c, &a, d("2025-09-13")));
        // A new customer is a customer before buying anything...
        assert!(def.is_active_on(
            &customer("2025-06-01", None),
            &Activity::default(),
            d("2025-08-01")
        ));
        // ...until the N days pass.
        assert!(!def.is_active_on(
            &customer("2025-01-01", None),
            &Activity::default(),
            d("2025-08-01")
        ));
        // Label: no purchase in [day, day + 90).
        assert!(!def.label(&c, &a, d("2025-06-15")));
        assert!(def.label(&c, &a, d("2025-06-16")));
        assert!(
            !def.label(&c, &a, d("2025-03-18")),
            "06-15 is 89 days after 03-18"
        );
        assert!(def.label(&c, &a, d("2025-03-17")));
        assert_eq!(def.label_known_by(d("2025-06-16")), d("2025-09-14"));
        assert_eq!(def.describe(), "no payment for 90 days");
    }

    #[test]
    fn contract_churn_is_the_record() {
        let def = ChurnDefinition::new("contract", 60, &[], None, &EventKinds::builtin()).unwrap();
        let c = customer("2025-01-01", Some("2025-03-01"));
        assert!(def.label(&c, &Activity::default(), d("2025-01-15")));
        assert!(!def.label(&c, &Activity::default(), d("2024-12-15")));
        assert!(!def.is_active_on(&c, &Activity::default(), d("2025-03-01")));
        assert!(def.is_active_on(&c, &Activity::default(), d("2025-02-28")));
    }

    #[test]
    fn bad_definitions_say_what_to_write() {
        let k = EventKinds::builtin();
        let e = ChurnDefinition::new("silence", 60, &[], None, &k).unwrap_err();
        assert!(
            e.contains("\"contract\"") && e.contains("\"inactivity\""),
            "{e}"
        );
        let e =
            ChurnDefinition::new("inactivity", 60, &["purchse".into()], Some(90), &k).unwrap_err();
        assert!(
            e.starts_with("churn.kinds: unknown event kind \"purchse\""),
            "{e}"
        );
        assert!(ChurnDefinition::new("inactivity", 60, &[], Some(90), &k).is_err());
        assert!(ChurnDefinition::new("inactivity", 60, &["login".into()], None, &k).is_err());
        assert!(ChurnDefinition::new("inactivity", 60, &["login".into()], Some(0), &k).is_err());
    }
}
