//! Point-in-time features: what attune knows about a customer as of a given day.
//!
//! `features_as_of` turns a customer and a summary of their activity *before* `as_of`
//! into named values. The same function serves training (as of a past date, with only
//! what was known then) and scoring (as of today), so the two cannot drift apart.
//! Pure: no I/O, no clock. The store computes `ActivitySummary` with SQL.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::domain::Customer;

/// One feature's value before encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureValue {
    Num(f64),
    Cat(String),
    /// Not known for this customer (no activity yet, no contract end). Encoded as the
    /// training mean for numbers and as no level for categories.
    Missing,
}

/// Named feature values of one customer on one day.
pub type FeatureRow = BTreeMap<String, FeatureValue>;

/// What happened in a customer's relationship before the `as_of` day, in the windows
/// the features need. Counting windows end the day before `as_of`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivitySummary {
    /// Every event before `as_of`, of any kind.
    pub events_total: u32,
    pub last_contact: Option<NaiveDate>,
    pub complaints_90d: u32,
    /// Complaints opened or reopened and not resolved since.
    pub open_complaints: u32,
    pub last_complaint: Option<NaiveDate>,
    pub payment_failures_90d: u32,
    pub support_contacts_90d: u32,
    pub logins_30d: u32,
    pub usage_30d: f64,
    /// Usage in the 90 days before the last 30.
    pub usage_prior_90d: f64,
    pub last_invoice_amount: Option<f64>,
    pub mean_invoice_amount: Option<f64>,
}

/// Whole calendar months from `from` to `to` (0 if `to` is earlier).
pub fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    if to <= from {
        return 0;
    }
    let mut m =
        (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
    if to.day() < from.day() && !is_month_end_clamped(from, to) {
        m -= 1;
    }
    m.max(0)
}

/// `from` fell on a day `to`'s month does not have (31 Mar back one month is 28 Feb):
/// a clamped month end counts as a whole month.
fn is_month_end_clamped(from: NaiveDate, to: NaiveDate) -> bool {
    let last_of_to_month = NaiveDate::from_ymd_opt(to.year(), to.month(), 1)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .and_then(|d| d.pred_opt())
        .map(|d| d.day());
    last_of_to_month == Some(to.day()) && from.day() > to.day()
}

pub const TENURE_MONTHS: &str = "tenure_months";
pub const MONTHLY_CHARGE: &str = "monthly_charge";
pub const CONTRACT: &str = "contract";
pub const PLAN: &str = "plan";
pub const MONTHS_TO_CONTRACT_END: &str = "months_to_contract_end";
pub const DAYS_SINCE_LAST_CONTACT: &str = "days_since_last_contact";
pub const COMPLAINTS_90D: &str = "complaints_90d";
pub const OPEN_COMPLAINTS: &str = "open_complaints";
pub const DAYS_SINCE_LAST_COMPLAINT: &str = "days_since_last_complaint";
pub const PAYMENT_FAILURES_90D: &str = "payment_failures_90d";
pub const SUPPORT_CONTACTS_90D: &str = "support_contacts_90d";
pub const LOGINS_30D: &str = "logins_30d";
pub const USAGE_TREND: &str = "usage_trend";
pub const BILL_SHOCK: &str = "bill_shock";
/// Prefix of features taken from a customer's free-form attributes.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

/// The features of `customer` as of the start of `as_of`.
pub fn features_as_of(
    customer: &Customer,
    activity: &ActivitySummary,
    as_of: NaiveDate,
) -> FeatureRow {
    use FeatureValue::{Cat, Missing, Num};
    let mut row = FeatureRow::new();
    let mut put = |name: &str, v: FeatureValue| {
        row.insert(name.to_owned(), v);
    };
    put(
        TENURE_MONTHS,
        Num(months_between(customer.signup_date, as_of) as f64),
    );
    put(MONTHLY_CHARGE, Num(customer.monthly_charge));
    put(CONTRACT, Cat(customer.contract_type.as_str().to_owned()));
    put(PLAN, Cat(customer.plan.clone()));
    put(
        MONTHS_TO_CONTRACT_END,
        customer
            .contract_end
            .map(|end| {
                Num(if end <= as_of {
                    0.0
                } else {
                    (end - as_of).num_days() as f64 / 30.4375
                })
            })
            .unwrap_or(Missing),
    );

    // A customer with no recorded activity at all (an import without events) has no
    // activity features rather than misleading zeros.
    let known = activity.events_total > 0;
    let num_if_known = |v: f64| if known { Num(v) } else { Missing };
    let days_since = |d: Option<NaiveDate>| d.map(|d| (as_of - d).num_days().max(0) as f64);
    put(
        DAYS_SINCE_LAST_CONTACT,
        num_if_known(
            days_since(activity.last_contact.or(Some(customer.signup_date))).unwrap_or(0.0),
        ),
    );
    put(COMPLAINTS_90D, num_if_known(activity.complaints_90d as f64));
    put(
        OPEN_COMPLAINTS,
        num_if_known(activity.open_complaints as f64),
    );
    put(
        DAYS_SINCE_LAST_COMPLAINT,
        // Capped: "never" and "over a year ago" mean the same for churn.
        num_if_known(
            days_since(activity.last_complaint)
                .unwrap_or(365.0)
                .min(365.0),
        ),
    );
    put(
        PAYMENT_FAILURES_90D,
        num_if_known(activity.payment_failures_90d as f64),
    );
    put(
        SUPPORT_CONTACTS_90D,
        num_if_known(activity.support_contacts_90d as f64),
    );
    put(LOGINS_30D, num_if_known(activity.logins_30d as f64));
    let prior_monthly = activity.usage_prior_90d / 3.0;
    put(
        USAGE_TREND,
        if known && prior_monthly > 0.0 {
            Num(((activity.usage_30d - prior_monthly) / prior_monthly).clamp(-1.0, 3.0))
        } else {
            Missing
        },
    );
    put(
        BILL_SHOCK,
        match (activity.last_invoice_amount, activity.mean_invoice_amount) {
            (Some(last), Some(mean)) if mean > 0.0 => Num((last / mean - 1.0).clamp(-1.0, 5.0)),
            _ => Missing,
        },
    );
    for (k, v) in &customer.attributes {
        let name = format!("{ATTRIBUTE_PREFIX}{k}");
        let v = v.trim();
        let value = match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Num(x),
            _ if v.is_empty() => Missing,
            _ => Cat(v.to_owned()),
        };
        row.insert(name, value);
    }
    row
}

/// Describes a feature value in the feature's own words, for a reviewer: "3 complaints in
/// the last 90 days", "usage down 40% on the prior quarter".
pub fn describe(name: &str, value: &FeatureValue) -> String {
    use FeatureValue::*;
    match (name, value) {
        (_, Missing) => format!("{name} unknown"),
        (TENURE_MONTHS, Num(v)) => format!("{v:.0} months a customer"),
        (MONTHLY_CHARGE, Num(v)) => format!("pays {v:.2} a month"),
        (CONTRACT, Cat(c)) => format!("contract: {}", c.replace('_', " ")),
        (PLAN, Cat(p)) => format!("plan: {p}"),
        (MONTHS_TO_CONTRACT_END, Num(v)) => format!("contract ends in {v:.1} months"),
        (DAYS_SINCE_LAST_CONTACT, Num(v)) => format!("no contact for {v:.0} days"),
        (COMPLAINTS_90D, Num(v)) => format!("{v:.0} complaints in 90 days"),
        (OPEN_COMPLAINTS, Num(v)) => format!("{v:.0} complaints open"),
        (DAYS_SINCE_LAST_COMPLAINT, Num(v)) if *v >= 365.0 => "no complaint in a year".to_owned(),
        (DAYS_SINCE_LAST_COMPLAINT, Num(v)) => format!("last complaint {v:.0} days ago"),
        (PAYMENT_FAILURES_90D, Num(v)) => format!("{v:.0} failed payments in 90 days"),
        (SUPPORT_CONTACTS_90D, Num(v)) => format!("{v:.0} support contacts in 90 days"),
        (LOGINS_30D, Num(v)) => format!("{v:.0} logins in 30 days"),
        (USAGE_TREND, Num(v)) if *v < 0.0 => {
            format!("usage down {:.0}% on the prior quarter", -v * 100.0)
        }
        (USAGE_TREND, Num(v)) => format!("usage up {:.0}% on the prior quarter", v * 100.0),
        (BILL_SHOCK, Num(v)) => format!("latest bill {:+.0}% against usual", v * 100.0),
        (n, Num(v)) => format!("{} = {v}", n.trim_start_matches(ATTRIBUTE_PREFIX)),
        (n, Cat(c)) => format!("{} = {c}", n.trim_start_matches(ATTRIBUTE_PREFIX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn customer() -> Customer {
        Customer {
            external_id: CustomerId::parse("c1").unwrap(),
            signup_date: d("2025-03-31"),
            plan: "fibre".into(),
            monthly_charge: 40.0,
            contract_type: ContractType::OneYear,
            contract_end: Some(d("2026-03-31")),
            first_invoice_due: None,
            preferred_channel: Channel::Email,
            consent: Consent::ALL,
            churned_on: None,
            attributes: [
                ("SeniorCitizen".to_owned(), "1".to_owned()),
                ("PaymentMethod".to_owned(), "Mailed check".to_owned()),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn months_between_round_trips_calendar_months() {
        for n in 0..80u32 {
            for as_of in ["2026-03-31", "2026-02-28", "2026-01-15", "2024-02-29"] {
                let as_of = d(as_of);
                let signup = as_of.checked_sub_months(chrono::Months::new(n)).unwrap();
                assert_eq!(
                    months_between(signup, as_of),
                    n as i64,
                    "{signup} -> {as_of}"
                );
            }
        }
    }

    #[test]
    fn customers_without_activity_have_no_activity_features() {
        let row = features_as_of(&customer(), &ActivitySummary::default(), d("2025-09-30"));
        assert_eq!(row[DAYS_SINCE_LAST_CONTACT], FeatureValue::Missing);
        assert_eq!(row[TENURE_MONTHS], FeatureValue::Num(6.0));
        assert_eq!(row["attr.SeniorCitizen"], FeatureValue::Num(1.0));
        assert_eq!(
            row["attr.PaymentMethod"],
            FeatureValue::Cat("Mailed check".into())
        );
    }

    #[test]
    fn usage_trend_and_silence() {
        let a = ActivitySummary {
            events_total: 10,
            last_contact: Some(d("2025-08-01")),
            usage_30d: 60.0,
            usage_prior_90d: 300.0,
            ..Default::default()
        };
        let row = features_as_of(&customer(), &a, d("2025-09-30"));
        assert_eq!(row[USAGE_TREND], FeatureValue::Num(-0.4));
        assert_eq!(row[DAYS_SINCE_LAST_CONTACT], FeatureValue::Num(60.0));
        assert_eq!(
            describe(USAGE_TREND, &row[USAGE_TREND]),
            "usage down 40% on the prior quarter"
        );
    }
}
