//! The vocabulary of attune: customers, their activity, churn probabilities and nudges.
//!
//! Everything here is plain data with parsing constructors. Invalid states are not
//! representable: a `CustomerId` is never empty, a `Probability` is always in `[0, 1]`,
//! an event's kind is one the catalog knows. This module must never do I/O or
//! import sqlx, axum or apalis.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub mod complaint;
pub mod kinds;
pub mod money;
pub use kinds::{DeclaredKind, EventKinds, KindCode, KindDef, KindSet};
pub use money::Currency;

/// Why a value from outside was refused. The message names the rule that was broken and,
/// where it helps, the values that are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// A customer's identifier in the business's own systems (`customerID` in the Telco data).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

impl CustomerId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(invalid("customer id is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "customer id is {} characters long; at most {} are allowed",
                s.len(),
                Self::MAX_LEN
            )));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(invalid("customer id contains a control character"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CustomerId> for String {
    fn from(id: CustomerId) -> Self {
        id.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A churn probability: finite and within `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Probability(f64);

impl Probability {
    pub fn new(p: f64) -> Result<Self, InvalidValue> {
        if p.is_finite() && (0.0..=1.0).contains(&p) {
            Ok(Self(p))
        } else {
            Err(invalid(format!("probability {p} is not within [0, 1]")))
        }
    }

    /// The logistic function of a linear score; always a valid probability.
    pub fn from_logit(z: f64) -> Self {
        let p = if z >= 0.0 {
            1.0 / (1.0 + (-z).exp())
        } else {
            let e = z.exp();
            e / (1.0 + e)
        };
        Self(if p.is_nan() { 0.5 } else { p })
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Probability {
    type Error = InvalidValue;
    fn try_from(p: f64) -> Result<Self, Self::Error> {
        Self::new(p)
    }
}

impl From<Probability> for f64 {
    fn from(p: Probability) -> Self {
        p.0
    }
}

/// Declares a closed set of names with `as_str`, `ALL` and a `FromStr` that lists the
/// accepted values when it fails. Aliases let presets and older exports map on.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Other spellings accepted for this value.
            #[allow(dead_code)]
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $($name::$variant => &[$($alias),*]),+ }
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                let key = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
                $(
                    if key == $text $(|| key == $alias)* { return Ok($name::$variant); }
                )+
                Err(invalid(format!(
                    concat!("unknown ", $what, " {:?}; expected one of: {}"),
                    raw,
                    [$($text),+].join(", ")
                )))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> { s.parse() }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> Self { v.as_str() }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

vocabulary! {
    /// A way of reaching a customer. `phone` means a person calls.
    Channel, "channel" {
        Email => "email" | "e_mail",
        Sms => "sms" | "text",
        Phone => "phone" | "call",
        Post => "post" | "mail" | "letter",
    }
}

vocabulary! {
    /// The customer's contract. The Telco data's `Month-to-month`, `One year`, `Two year` map on.
    ContractType, "contract type" {
        MonthToMonth => "month_to_month" | "monthly",
        OneYear => "one_year" | "12_months",
        TwoYear => "two_year" | "24_months",
    }
}

vocabulary! {
    /// What an event means to attune's rules: attune's own kinds (a business's declared
    /// kinds may map onto one; see [`kinds`]). Aliases in the README's brackets.
    Meaning, "event kind" {
        Usage => "usage",
        Login => "login" | "visit",
        InvoiceIssued => "invoice_issued" | "invoice",
        PaymentMade => "payment_made" | "payment",
        PaymentFailed => "payment_failed",
        ComplaintOpened => "complaint_opened" | "complaint",
        ComplaintResolved => "complaint_resolved",
        ComplaintReopened => "complaint_reopened",
        SupportContact => "support_contact" | "contact",
        MeterReading => "meter_reading" | "meter_reading_submitted",
        PlanChange => "plan_change" | "tariff_change",
        ContractRenewed => "contract_renewed" | "renewal",
        CancellationRequested => "cancellation_requested",
        Churned => "churned",
    }
}

impl Meaning {
    /// The three kinds a complaint's story is told in.
    pub const COMPLAINTS: [Meaning; 3] = [
        Meaning::ComplaintOpened,
        Meaning::ComplaintResolved,
        Meaning::ComplaintReopened,
    ];

    /// The code of attune's own kind of this meaning (`event_kinds` in the migrations).
    pub fn code(self) -> KindCode {
        KindCode(match self {
            Meaning::Usage => 1,
            Meaning::Login => 2,
            Meaning::InvoiceIssued => 3,
            Meaning::PaymentMade => 4,
            Meaning::PaymentFailed => 5,
            Meaning::ComplaintOpened => 6,
            Meaning::ComplaintResolved => 7,
            Meaning::ComplaintReopened => 8,
            Meaning::SupportContact => 9,
            Meaning::MeterReading => 10,
            Meaning::PlanChange => 11,
            Meaning::ContractRenewed => 12,
            Meaning::CancellationRequested => 13,
            Meaning::Churned => 14,
        })
    }

    /// The meaning of attune's own kind with this code.
    pub fn from_code(code: KindCode) -> Option<Meaning> {
        Meaning::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The range a value of this meaning must lie in, and what it means; `None` if any
    /// finite value will do.
    pub fn value_range(self) -> Option<(f64, f64, &'static str)> {
        match self {
            Meaning::ComplaintResolved => Some((1.0, 5.0, "a satisfaction score, 1 to 5")),
            Meaning::Usage | Meaning::MeterReading => {
                Some((0.0, MAX_EVENT_VALUE, "an amount of usage >= 0"))
            }
            Meaning::InvoiceIssued | Meaning::PaymentMade | Meaning::PaymentFailed => {
                Some((0.0, MAX_EVENT_VALUE, "an amount of money >= 0"))
            }
            _ => None,
        }
    }
}

/// The name of a playbook rule, which is also the `kind` of every nudge it queues: a
/// lowercase identifier (`a-z`, `0-9`, `_`, starting with a letter), at most 64 characters.
/// Rules live in a file marketing edits, so the set is open; the spelling is not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleName(String);

impl RuleName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if s.is_empty() || s.len() > Self::MAX_LEN || !ok_start || !ok_rest {
            return Err(invalid(format!(
                "{raw:?} is not a rule name; use lowercase letters, digits and _ (starting with a letter, at most {} characters), e.g. \"bill_explainer\"",
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RuleName {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RuleName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<RuleName> for String {
    fn from(r: RuleName) -> Self {
        r.0
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

vocabulary! {
    /// Where a nudge is in its life (see the nudge lifecycle migration): `proposed` waits
    /// for review; `deferred` waits for a free slot under the contact cap (`send_after`);
    /// `approved` and `rejected` are decisions; `snoozed` waits for `snoozed_until`;
    /// `withdrawn` means its trigger no longer holds; `expired` means it passed
    /// `expires_at` before it could go out; `holdout` records the randomised holdout and
    /// is never reviewed or sent.
    NudgeStatus, "nudge status" {
        Proposed => "proposed",
        Deferred => "deferred",
        Approved => "approved",
        Rejected => "rejected",
        Snoozed => "snoozed",
        Withdrawn => "withdrawn",
        Expired => "expired",
        Holdout => "holdout",
    }
}

vocabulary! {
    /// Where an approved nudge's delivery is (`deliveries`, issue 20): `pending` waits for
    /// its time, its first attempt or its next (a failed attempt waits here with the
    /// receiver's answer); `sent` was accepted by the receiver (a 2xx, the SMTP server's
    /// 250, or its file renamed into the outbox); `dead` ran out of attempts; `blocked` may
    /// no longer go (consent withdrawn, expired, withdrawn, the customer left) and is never
    /// sent; `cancelled` was stopped by a person.
    DeliveryStatus, "delivery status" {
        Pending => "pending",
        Sent => "sent",
        Dead => "dead",
        Blocked => "blocked",
        Cancelled => "cancelled",
    }
}

/// The largest magnitude an event's value may have (rollups keep totals in thousandths in
/// 64-bit integers).
pub const MAX_EVENT_VALUE: f64 = 1e12;

/// Which channels the customer agreed to be contacted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub email: bool,
    pub sms: bool,
    pub phone: bool,
    pub post: bool,
}

impl Consent {
    pub const ALL: Consent = Consent {
        email: true,
        sms: true,
        phone: true,
        post: true,
    };

    pub fn allows(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
            Channel::Phone => self.phone,
            Channel::Post => self.post,
        }
    }

    /// Parses a list such as `email;sms` or `email,post`; `all` and `none` are accepted.
    pub fn parse_list(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("all") {
            return Ok(Consent::ALL);
        }
        let mut c = Consent::default();
        if raw.is_empty() || raw.eq_ignore_ascii_case("none") {
            return Ok(c);
        }
        for part in raw
            .split([';', ',', '|'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match part.parse::<Channel>()? {
                Channel::Email => c.email = true,
                Channel::Sms => c.sms = true,
                Channel::Phone => c.phone = true,
                Channel::Post => c.post = true,
            }
        }
        Ok(c)
    }
}

/// A customer as attune knows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub external_id: CustomerId,
    pub signup_date: NaiveDate,
    pub plan: String,
    pub monthly_charge: f64,
    pub contract_type: ContractType,
    pub contract_end: Option<NaiveDate>,
    pub first_invoice_due: Option<NaiveDate>,
    pub preferred_channel: Channel,
    pub consent: Consent,
    /// The day the customer left, if they have.
    pub churned_on: Option<NaiveDate>,
    /// Anything else the business holds on the customer, kept as text.
    pub attributes: BTreeMap<String, String>,
}

impl Customer {
    /// Whole months between signup and `as_of` (0 for a customer who joined this month).
    pub fn tenure_months(&self, as_of: NaiveDate) -> f64 {
        let days = (as_of - self.signup_date).num_days().max(0) as f64;
        (days / 30.4375).floor()
    }

    pub fn is_active_on(&self, day: NaiveDate) -> bool {
        self.signup_date <= day && self.churned_on.is_none_or(|c| c > day)
    }
}

/// One thing that happened in a customer's relationship, as reported by a source.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEvent {
    pub customer: CustomerId,
    /// The kind's code in the catalog ([`EventKinds`]) it was mapped with.
    pub kind: KindCode,
    pub occurred_at: DateTime<Utc>,
    /// A numeric value where the kind has one: usage amount, invoice or payment amount,
    /// the customer's satisfaction (1 to 5) on a resolved complaint.
    pub value: Option<f64>,
    pub attributes: BTreeMap<String, String>,
    /// The system the event came from; with `source_event_id` it identifies the event.
    pub source: String,
    pub source_event_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_rejects_empty_and_control_characters() {
        assert!(CustomerId::parse("  ").is_err());
        assert!(CustomerId::parse("a\u{7}b").is_err());
        assert_eq!(
            CustomerId::parse(" 7590-VHVEG ").unwrap().as_str(),
            "7590-VHVEG"
        );
    }

    #[test]
    fn probability_is_bounded() {
        assert!(Probability::new(1.01).is_err());
        assert!(Probability::new(f64::NAN).is_err());
        assert_eq!(Probability::from_logit(0.0).get(), 0.5);
        assert!(Probability::from_logit(-800.0).get() >= 0.0);
        assert!(Probability::from_logit(800.0).get() <= 1.0);
    }

    #[test]
    fn vocabularies_accept_aliases_and_list_choices_on_error() {
        assert_eq!(
            "Month-to-month".parse::<ContractType>().unwrap(),
            ContractType::MonthToMonth
        );
        assert_eq!(
            "One year".parse::<ContractType>().unwrap(),
            ContractType::OneYear
        );
        assert_eq!(
            "tariff_change".parse::<Meaning>().unwrap(),
            Meaning::PlanChange
        );
        let err = "fax".parse::<Channel>().unwrap_err().to_string();
        assert!(err.contains("email, sms, phone, post"), "{err}");
    }

    #[test]
    fn event_kind_codes_are_stable_and_match_the_migration() {
        let migration = include_str!("../../../../migrations/sqlite/20261125000001_activity.sql");
        for k in Meaning::ALL {
            assert_eq!(Meaning::from_code(k.code()), Some(*k));
            let row = format!("({}, '{}')", k.code().0, k.as_str());
            assert!(migration.contains(&row), "{row} missing from event_kinds");
        }
        assert_eq!(Meaning::ALL.len(), 14);
        assert!(
            Meaning::ALL
                .iter()
                .all(|k| k.code().0 < kinds::FIRST_DECLARED_CODE)
        );
    }

    #[test]
    fn rule_names_are_lowercase_identifiers() {
        assert_eq!(
            RuleName::parse(" bill_explainer ").unwrap().as_str(),
            "bill_explainer"
        );
        for bad in [
            "",
            "Bill",
            "1st",
            "bill-explainer",
            "bill explainer",
            &"a".repeat(65),
        ] {
            let e = RuleName::parse(bad).unwrap_err().to_string();
            assert!(e.contains("is not a rule name"), "{bad}: {e}");
        }
    }

    #[test]
    fn consent_lists() {
        let c = Consent::parse_list("email; post").unwrap();
        assert!(c.email && c.post && !c.sms && !c.phone);
        assert_eq!(Consent::parse_list("all").unwrap(), Consent::ALL);
        assert!(Consent::parse_list("email;fax").is_err());
    }

    #[test]
    fn tenure_counts_whole_months() {
        let c = Customer {
            external_id: CustomerId::parse("c1").unwrap(),
            signup_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            plan: "basic".into(),
            monthly_charge: 10.0,
            contract_type: ContractType::MonthToMonth,
            contract_end: None,
            first_invoice_due: None,
            preferred_channel: Channel::Email,
            consent: Consent::ALL,
            churned_on: None,
            attributes: BTreeMap::new(),
        };
        assert_eq!(
            c.tenure_months(NaiveDate::from_ymd_opt(2025, 1, 20).unwrap()),
            0.0
        );
        assert_eq!(
            c.tenure_months(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
            12.0
        );
    }
}
