//! A deterministic synthetic population for the demo: customers of a telecom/utility-like
//! service business and a year (by default) of their activity.
//!
//! Pure: no I/O, no clock; `today` is an argument and the same options always give the same
//! population. Each customer is simulated month by month (months anchored on their signup
//! day) with hidden traits (engagement, payment trouble, complaint propensity, loyalty).
//! Churn is driven by a hidden monthly hazard that rises with open and recent complaints,
//! low satisfaction, failed payments, bill shock, month-to-month contracts, short tenure,
//! falling usage and low engagement. A customer who decides to leave goes quiet first: for
//! one to three months their logins and usage fall, and some ask to cancel, before they churn.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::{ActivityEvent, Channel, Consent, ContractType, Customer, CustomerId, Meaning};

/// The `source` of every generated event.
pub const SOURCE: &str = "demo";
/// History length when none is given.
pub const DEFAULT_MONTHS: u32 = 12;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    pub customers: usize,
    pub seed: u64,
    /// The last day of the history; no event happens after it.
    pub today: NaiveDate,
    /// Months of activity history before `today`.
    pub months: u32,
}

impl SynthOptions {
    /// `customers` customers with the default history length of 12 months.
    pub fn new(customers: usize, seed: u64, today: NaiveDate) -> Self {
        Self {
            customers,
            seed,
            today,
            months: DEFAULT_MONTHS,
        }
    }
}

/// Generated customers and their activity. Events are grouped by customer, not sorted by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Population {
    pub customers: Vec<Customer>,
    pub events: Vec<ActivityEvent>,
}

/// Generates the population described by `opts`. Same options, same population.
pub fn generate(opts: &SynthOptions) -> Population {
    let mut customers = Vec::with_capacity(opts.customers);
    let per_customer = opts.months as usize * 4 + 8;
    let mut events = Vec::with_capacity(opts.customers.saturating_mul(per_customer));
    let mut scratch = Scratch::default();
    for idx in 0..opts.customers {
        customers.push(simulate_customer(idx, opts, &mut scratch, &mut events));
    }
    Population { customers, events }
}

/// Generates the same population as [`generate`], one customer at a time: `each` gets the
/// customer and their events, so any number of customers fits in memory.
pub fn generate_each(opts: &SynthOptions, mut each: impl FnMut(Customer, &[ActivityEvent])) {
    let mut scratch = Scratch::default();
    let mut events = Vec::new();
    for idx in 0..opts.customers {
        events.clear();
        let c = simulate_customer(idx, opts, &mut scratch, &mut events);
        each(c, &events);
    }
}

struct Plan {
    name: &'static str,
    price: f64,
    /// Typical monthly usage (GB).
    usage: f64,
}

const PLANS: [Plan; 3] = [
    Plan {
        name: "basic",
        price: 25.0,
        usage: 120.0,
    },
    Plan {
        name: "standard",
        price: 45.0,
        usage: 300.0,
    },
    Plan {
        name: "fibre-plus",
        price: 70.0,
        usage: 650.0,
    },
];

const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];
const TOPICS: [&str; 4] = ["billing", "network", "service", "installation"];

/// Intercept of the monthly churn hazard's logit.
const HAZARD_BASE: f64 = -4.8;

#[derive(Debug, Clone, Copy)]
enum Attrs {
    None,
    Topic(&'static str),
    Plan(&'static str, &'static str),
}

/// An event before it is given its identity.
#[derive(Debug, Clone, Copy)]
struct Raw {
    date: NaiveDate,
    secs: u32,
    kind: Meaning,
    value: Option<f64>,
    attrs: Attrs,
}

#[derive(Debug, Clone, Copy)]
struct Complaint {
    opened: NaiveDate,
    resolved: Option<NaiveDate>,
    satisfaction: Option<u8>,
    reopened: Option<NaiveDate>,
    resolved_again: Option<NaiveDate>,
}

impl Complaint {
    fn open_at(&self, day: NaiveDate) -> bool {
        if self.opened > day {
            return false;
        }
        let first_open = self.resolved.is_none_or(|r| r > day);
        let reopened_open =
            self.reopened.is_some_and(|r| r <= day) && self.resolved_again.is_none_or(|r| r > day);
        first_open || reopened_open
    }
}

/// Per-customer buffers, reused from one customer to the next.
#[derive(Default)]
struct Scratch {
    raw: Vec<Raw>,
    complaints: Vec<Complaint>,
    payment_failures: Vec<NaiveDate>,
    bill_shocks: Vec<NaiveDate>,
    usage_levels: Vec<f64>,
}

impl Scratch {
    fn clear(&mut self) {
        self.raw.clear();
        self.complaints.clear();
        self.payment_failures.clear();
        self.bill_shocks.clear();
        self.usage_levels.clear();
    }
}

/// SplitMix64: independent, well-mixed seeds per customer.
fn mix(seed: u64, idx: u64) -> u64 {
    let mut z = seed ^ idx.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(rng: &mut StdRng) -> f64 {
    rng.gen_range(0.0..1.0)
}

fn chance(rng: &mut StdRng, p: f64) -> bool {
    unit(rng) < p
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - unit(rng);
    let u2: f64 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Poisson draw for small means (Knuth).
fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = unit(rng);
    while p > limit && k < 50 {
        k += 1;
        p *= unit(rng);
    }
    k
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - unit(rng)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        d + Days::new(n as u64)
    } else {
        d - Days::new(n.unsigned_abs())
    }
}

fn add_months(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_add_months(Months::new(n))
        .unwrap_or(NaiveDate::MAX)
}

fn sub_months(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(n))
        .unwrap_or(NaiveDate::MIN)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A time of day during waking hours.
fn daytime(rng: &mut StdRng) -> u32 {
    rng.gen_range(7 * 3600..22 * 3600)
}

fn at(date: NaiveDate, secs: u32) -> DateTime<Utc> {
    let secs = secs.min(86_399);
    date.and_hms_opt(secs / 3600, (secs / 60) % 60, secs % 60)
        .unwrap_or_default()
        .and_utc()
}

fn push(raw: &mut Vec<Raw>, date: NaiveDate, secs: u32, kind: Meaning, value: Option<f64>) {
    raw.push(Raw {
        date,
        secs,
        kind,
        value,
        attrs: Attrs::None,
    });
}

fn pick_channel(rng: &mut StdRng) -> Channel {
    let r = unit(rng);
    if r < 0.55 {
        Channel::Email
    } else if r < 0.75 {
        Channel::Sms
    } else if r < 0.9 {
        Channel::Phone
    } else {
        Channel::Post
    }
}

fn set_consent(c: &mut Consent, channel: Channel, allowed: bool) {
    match channel {
        Channel::Email => c.email = allowed,
        Channel::Sms => c.sms = allowed,
        Channel::Phone => c.phone = allowed,
        Channel::Post => c.post = allowed,
    }
}

fn simulate_customer(
    idx: usize,
    opts: &SynthOptions,
    s: &mut Scratch,
    out: &mut Vec<ActivityEvent>,
) -> Customer {
    s.clear();
    let today = opts.today;
    let mut rng = StdRng::seed_from_u64(mix(opts.seed, idx as u64));
    let id = CustomerId::parse(&format!("C{:06}", idx + 1)).expect("generated ids are valid");

    // Signup: ~1% in the last week, ~30% within the last year, the rest up to six years ago.
    let r = unit(&mut rng);
    let days_ago: i64 = if r < 0.01 {
        rng.gen_range(0..7)
    } else if r < 0.31 {
        rng.gen_range(7..365)
    } else {
        rng.gen_range(365..2190)
    };
    let signup = add_days(today, -days_ago);
    let first_invoice_due = if days_ago < 7 {
        add_days(today, rng.gen_range(3..=10))
    } else {
        add_months(signup, 1)
    };

    // Plan, contract, channels, attributes.
    let small_business = chance(&mut rng, 0.2);
    let r = unit(&mut rng);
    let mut plan = if r < 0.4 {
        0
    } else if r < 0.8 {
        1
    } else {
        2
    };
    let price_noise = (normal(&mut rng) * 0.07).exp();
    let extras = if small_business { 10.0 } else { 0.0 };
    let mut monthly_charge = round2(PLANS[plan].price * price_noise + extras);
    let r = unit(&mut rng);
    let contract_type = if r < 0.55 {
        ContractType::MonthToMonth
    } else if r < 0.8 {
        ContractType::OneYear
    } else {
        ContractType::TwoYear
    };
    let term: u32 = match contract_type {
        ContractType::MonthToMonth => 0,
        ContractType::OneYear => 12,
        ContractType::TwoYear => 24,
    };
    let preferred_channel = pick_channel(&mut rng);
    let mut consent = Consent {
        email: chance(&mut rng, 0.85),
        sms: chance(&mut rng, 0.45),
        phone: chance(&mut rng, 0.30),
        post: chance(&mut rng, 0.50),
    };
    let r = unit(&mut rng);
    if r < 0.03 {
        consent = Consent::default();
    } else if r < 0.08 {
        set_consent(&mut consent, preferred_channel, false);
    } else {
        set_consent(&mut consent, preferred_channel, true);
    }
    let region = REGIONS[rng.gen_range(0..REGIONS.len())];

    // Hidden traits.
    let login_rate = (normal(&mut rng) * 0.6 - 0.65).exp();
    let struggling = chance(&mut rng, 0.12);
    let complaint_propensity = 0.028 * (normal(&mut rng) * 0.5).exp();
    let mut usage_level = PLANS[plan].usage * (normal(&mut rng) * 0.3).exp();
    let loyalty = normal(&mut rng) * 0.3;
    let mut meter = rng.gen_range(1_000.0..50_000.0f64).round();

    let window_start = sub_months(today, opts.months);
    let sim_start = signup.max(sub_months(window_start, 3));
    // First period (months anchored on signup) that contains `sim_start`.
    let mut k: u32 = {
        let approx = ((sim_start - signup).num_days() / 31).max(0) as u32;
        let mut k = approx;
        while add_months(signup, k + 1) <= sim_start {
            k += 1;
        }
        k
    };

    let mut leaving: Option<NaiveDate> = None;
    let mut leaving_periods = 0u32;
    loop {
        let start = add_months(signup, k);
        if start > today {
            break;
        }
        let next = add_months(signup, k + 1);
        let len = (next - start).num_days().max(1);
        let in_day = |rng: &mut StdRng| add_days(start, rng.gen_range(0..len));

        // Hidden hazard of deciding to leave, from what has happened so far.
        if leaving.is_none() && start >= window_start {
            let ago90 = add_days(start, -90);
            let open = s.complaints.iter().filter(|c| c.open_at(start)).count() as f64;
            let c90 = s
                .complaints
                .iter()
                .filter(|c| c.opened >= ago90 && c.opened < start)
                .count() as f64;
            let low_sat = s.complaints.iter().any(|c| {
                c.satisfaction.is_some_and(|x| x <= 2)
                    && c.resolved
                        .is_some_and(|r| r < start && r >= add_days(start, -120))
            });
            let pf90 = s
                .payment_failures
                .iter()
                .filter(|d| **d >= ago90 && **d < start)
                .count() as f64;
            let shock = s
                .bill_shocks
                .iter()
                .any(|d| *d >= add_days(start, -60) && *d < start);
            let usage_drop = s.usage_levels.len() >= 4 && {
                let n = s.usage_levels.len();
                s.usage_levels[n - 1] < 0.75 * s.usage_levels[n - 4]
            };
            let near_end = term > 0 && {
                let months_into_term = k % term;
                months_into_term >= term - 2
            };
            let mut z = HAZARD_BASE + loyalty;
            z += 1.1 * open.min(2.0);
            z += 0.6 * c90.min(3.0);
            if low_sat {
                z += 0.9;
            }
            z += 0.8 * pf90.min(2.0);
            if shock {
                z += 1.0;
            }
            z += match contract_type {
                ContractType::MonthToMonth => 0.8,
                ContractType::OneYear if near_end => 0.6,
                ContractType::OneYear => -0.5,
                ContractType::TwoYear if near_end => 0.3,
                ContractType::TwoYear => -1.2,
            };
            z += if k < 6 {
                0.7
            } else if k < 12 {
                0.35
            } else if k > 48 {
                -0.5
            } else if k > 24 {
                -0.25
            } else {
                0.0
            };
            if login_rate < 0.3 {
                z += 0.6;
            }
            if usage_drop {
                z += 0.7;
            }
            if struggling {
                z += 0.2;
            }
            if chance(&mut rng, sigmoid(z)) {
                let r = unit(&mut rng);
                let lead: i64 = if r < 0.25 {
                    1
                } else if r < 0.65 {
                    2
                } else {
                    3
                };
                let churn_on = add_days(start, lead * 30 + rng.gen_range(-7..=7));
                leaving = Some(churn_on);
                if chance(&mut rng, 0.45) {
                    let asked = add_days(churn_on, -rng.gen_range(3..=21)).max(start);
                    let secs = daytime(&mut rng);
                    push(
                        &mut s.raw,
                        asked,
                        secs,
                        Meaning::CancellationRequested,
                        None,
                    );
                }
            }
        }
        let is_leaving = leaving.is_some();
        if is_leaving {
            leaving_periods += 1;
        }

        // Invoice, with the occasional bill shock, then payment.
        let mut shock_now = false;
        let mut failed_now = false;
        if k >= 1 {
            let mut amount = monthly_charge * (1.0 + normal(&mut rng) * 0.04);
            if chance(&mut rng, if struggling { 0.07 } else { 0.04 }) {
                amount *= rng.gen_range(1.4..2.2);
                shock_now = true;
                s.bill_shocks.push(start);
            }
            let amount = round2(amount.max(1.0));
            push(
                &mut s.raw,
                start,
                2 * 3600 + rng.gen_range(0..3600),
                Meaning::InvoiceIssued,
                Some(amount),
            );
            let pay_day = add_days(start, rng.gen_range(3..=14));
            let mut p_fail = if struggling { 0.22 } else { 0.015 };
            if shock_now {
                p_fail += 0.1;
            }
            let secs = daytime(&mut rng);
            if chance(&mut rng, p_fail) {
                failed_now = true;
                s.payment_failures.push(pay_day);
                push(
                    &mut s.raw,
                    pay_day,
                    secs,
                    Meaning::PaymentFailed,
                    Some(amount),
                );
                if chance(&mut rng, 0.7) {
                    let retry = add_days(pay_day, rng.gen_range(2..=10));
                    let secs = daytime(&mut rng);
                    push(&mut s.raw, retry, secs, Meaning::PaymentMade, Some(amount));
                }
            } else {
                push(
                    &mut s.raw,
                    pay_day,
                    secs,
                    Meaning::PaymentMade,
                    Some(amount),
                );
            }
        }

        // Usage over the month, reported on its last day; it drifts, and falls for leavers.
        usage_level *= (normal(&mut rng) * 0.1).exp();
        if chance(&mut rng, 0.02) {
            usage_level *= rng.gen_range(0.5..0.8);
        }
        let leaving_mult = match leaving_periods {
            0 => 1.0,
            1 => 0.55,
            2 => 0.35,
            _ => 0.25,
        };
        let used = usage_level * leaving_mult * (normal(&mut rng) * 0.08).exp();
        s.usage_levels.push(usage_level * leaving_mult);
        let usage_day = add_days(next, -1);
        push(
            &mut s.raw,
            usage_day,
            23 * 3600 + 30 * 60,
            Meaning::Usage,
            Some((used * 10.0).round() / 10.0),
        );

        // Logins and support contacts.
        let open_now = s.complaints.iter().any(|c| c.open_at(start));
        let logins = poisson(&mut rng, login_rate * if is_leaving { 0.1 } else { 1.0 });
        for _ in 0..logins {
            let d = in_day(&mut rng);
            let secs = daytime(&mut rng);
            push(&mut s.raw, d, secs, Meaning::Login, None);
        }
        let mut support_rate = 0.08 + if small_business { 0.06 } else { 0.0 };
        if shock_now {
            support_rate += 0.35;
        }
        if failed_now {
            support_rate += 0.3;
        }
        if open_now {
            support_rate += 0.25;
        }
        if is_leaving {
            support_rate *= 0.6;
        }
        for _ in 0..poisson(&mut rng, support_rate) {
            let d = in_day(&mut rng);
            let secs = daytime(&mut rng);
            push(&mut s.raw, d, secs, Meaning::SupportContact, None);
        }

        // Complaints: opened, then resolved (satisfaction 1..5), left open, or reopened.
        let mut p_complaint = complaint_propensity;
        if shock_now {
            p_complaint += 0.18;
        }
        if failed_now {
            p_complaint += 0.1;
        }
        if chance(&mut rng, p_complaint) {
            let opened = add_days(start, rng.gen_range(1..len.max(2)));
            let topic = if shock_now || failed_now {
                "billing"
            } else {
                TOPICS[rng.gen_range(0..TOPICS.len())]
            };
            let secs = daytime(&mut rng);
            s.raw.push(Raw {
                date: opened,
                secs,
                kind: Meaning::ComplaintOpened,
                value: None,
                attrs: Attrs::Topic(topic),
            });
            let mut c = Complaint {
                opened,
                resolved: None,
                satisfaction: None,
                reopened: None,
                resolved_again: None,
            };
            let r = unit(&mut rng);
            if r < 0.78 {
                let days = 1.0 + exponential(&mut rng, 10.0);
                let sat = (4.6 - days / 8.0 + normal(&mut rng) * 0.8)
                    .round()
                    .clamp(1.0, 5.0) as u8;
                c.resolved = Some(add_days(opened, days as i64));
                c.satisfaction = Some(sat);
            } else if r < 0.89 {
                c.resolved = Some(add_days(opened, rng.gen_range(30..120)));
                c.satisfaction = Some(rng.gen_range(1..=2));
            }
            if let (Some(resolved), Some(sat)) = (c.resolved, c.satisfaction) {
                let secs = daytime(&mut rng);
                push(
                    &mut s.raw,
                    resolved,
                    secs,
                    Meaning::ComplaintResolved,
                    Some(sat as f64),
                );
                if sat <= 2 && chance(&mut rng, 0.35) {
                    let reopened = add_days(resolved, rng.gen_range(2..=14));
                    c.reopened = Some(reopened);
                    let secs = daytime(&mut rng);
                    push(&mut s.raw, reopened, secs, Meaning::ComplaintReopened, None);
                    if chance(&mut rng, 0.6) {
                        let again = add_days(reopened, rng.gen_range(3..=25));
                        c.resolved_again = Some(again);
                        let sat = rng.gen_range(1..=3) as f64;
                        let secs = daytime(&mut rng);
                        push(
                            &mut s.raw,
                            again,
                            secs,
                            Meaning::ComplaintResolved,
                            Some(sat),
                        );
                    }
                }
            }
            s.complaints.push(c);
        }

        // Meter readings, plan changes, contract renewals.
        meter += used.round();
        if chance(&mut rng, if is_leaving { 0.02 } else { 0.07 }) {
            let d = in_day(&mut rng);
            let secs = daytime(&mut rng);
            push(&mut s.raw, d, secs, Meaning::MeterReading, Some(meter));
        }
        if k >= 1 && !is_leaving && chance(&mut rng, 0.01) {
            let from = plan;
            plan = (plan + rng.gen_range(1..PLANS.len())) % PLANS.len();
            let scale = PLANS[plan].usage / PLANS[from].usage;
            usage_level *= scale.sqrt();
            monthly_charge = round2(PLANS[plan].price * price_noise + extras);
            let d = in_day(&mut rng);
            let secs = daytime(&mut rng);
            s.raw.push(Raw {
                date: d,
                secs,
                kind: Meaning::PlanChange,
                value: Some(monthly_charge),
                attrs: Attrs::Plan(PLANS[from].name, PLANS[plan].name),
            });
        }
        let anniversary = term > 0 && k > 0 && k.checked_rem(term) == Some(0);
        if anniversary && !is_leaving {
            let secs = daytime(&mut rng);
            push(&mut s.raw, start, secs, Meaning::ContractRenewed, None);
        }

        if leaving.is_some_and(|c| c < next) {
            break;
        }
        k += 1;
    }

    let churned_on = leaving.filter(|c| *c <= today);
    if let Some(c) = churned_on {
        s.raw.push(Raw {
            date: c,
            secs: 23 * 3600 + 59 * 60,
            kind: Meaning::Churned,
            value: None,
            attrs: Attrs::None,
        });
    }

    // Contract end: the next anniversary of the term after today (or after churn).
    let contract_end = (term > 0).then(|| {
        let after = churned_on.unwrap_or(today);
        let mut j = 1;
        loop {
            let end = add_months(signup, term * j);
            if end > after {
                break end;
            }
            j += 1;
        }
    });

    // Keep what falls inside the window and before churn, and give it an identity.
    let mut n = 0u32;
    for e in &s.raw {
        let in_window = e.date >= window_start && e.date >= signup && e.date <= today;
        let before_churn = e.kind == Meaning::Churned || churned_on.is_none_or(|c| e.date < c);
        if !(in_window && before_churn) {
            continue;
        }
        n += 1;
        let attributes = match e.attrs {
            Attrs::None => BTreeMap::new(),
            Attrs::Topic(t) => BTreeMap::from([("topic".to_owned(), t.to_owned())]),
            Attrs::Plan(from, to) => BTreeMap::from([
                ("from".to_owned(), from.to_owned()),
                ("to".to_owned(), to.to_owned()),
            ]),
        };
        out.push(ActivityEvent {
            customer: id.clone(),
            kind: e.kind.code(),
            occurred_at: at(e.date, e.secs),
            value: e.value,
            attributes,
            source: SOURCE.to_owned(),
            source_event_id: format!("{id}-{n}"),
        });
    }

    let attributes = BTreeMap::from([
        ("region".to_owned(), region.to_owned()),
        (
            "segment".to_owned(),
            if small_business {
                "small_business"
            } else {
                "consumer"
            }
            .to_owned(),
        ),
    ]);
    Customer {
        external_id: id,
        signup_date: signup,
        plan: PLANS[plan].name.to_owned(),
        monthly_charge,
        contract_type,
        contract_end,
        first_invoice_due: Some(first_invoice_due),
        preferred_channel,
        consent,
        churned_on,
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::time::Instant;

    use super::*;
    use crate::features::{self, Activity, FeatureSpec, FeatureValue};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()
    }

    fn opts(customers: usize, seed: u64) -> SynthOptions {
        SynthOptions::new(customers, seed, today())
    }

    fn pop5k() -> &'static Population {
        static POP: OnceLock<Population> = OnceLock::new();
        POP.get_or_init(|| generate(&opts(5_000, 42)))
    }

    fn by_customer(pop: &Population) -> HashMap<&str, Vec<&ActivityEvent>> {
        let mut map: HashMap<&str, Vec<&ActivityEvent>> = HashMap::new();
        for e in &pop.events {
            map.entry(e.customer.as_str()).or_default().push(e);
        }
        for v in map.values_mut() {
            v.sort_by_key(|e| e.occurred_at);
        }
        map
    }

    #[test]
    fn same_seed_same_population_other_seed_differs() {
        let a = generate(&opts(300, 7));
        let b = generate(&opts(300, 7));
        let c = generate(&opts(300, 8));
        assert_eq!(a, b);
        assert_ne!(a.customers, c.customers);
        assert_ne!(a.events, c.events);
    }

    #[test]
    fn ids_sources_and_event_ids_are_well_formed() {
        let pop = pop5k();
        assert_eq!(pop.customers.len(), 5_000);
        assert_eq!(pop.customers[0].external_id.as_str(), "C000001");
        assert_eq!(pop.customers[4_999].external_id.as_str(), "C005000");
        let mut ids = std::collections::HashSet::new();
        for e in &pop.events {
            assert_eq!(e.source, SOURCE);
            assert!(
                ids.insert(e.source_event_id.as_str()),
                "duplicate {}",
                e.source_event_id
            );
        }
    }

    #[test]
    fn events_stay_within_each_customers_life_and_before_tomorrow() {
        let pop = pop5k();
        let customers: HashMap<&str, &Customer> = pop
            .customers
            .iter()
            .map(|c| (c.external_id.as_str(), c))
            .collect();
        let tomorrow = at(add_days(today(), 1), 0);
        for e in &pop.events {
            let c = customers[e.customer.as_str()];
            let day = e.occurred_at.date_naive();
            assert!(e.occurred_at < tomorrow, "{e:?}");
            assert!(
                day >= c.signup_date,
                "{e:?} before signup {}",
                c.signup_date
            );
            if let Some(churned) = c.churned_on {
                assert!(day <= churned, "{e:?} after churn {churned}");
                if day == churned {
                    assert_eq!(e.kind, Meaning::Churned.code());
                }
            }
        }
        for c in &pop.customers {
            assert!(c.signup_date <= today());
            assert!(c.tenure_months(today()) <= 72.0);
        }
        // Every churned customer has exactly one churned event on the day.
        let churned_events = pop
            .events
            .iter()
            .filter(|e| e.kind == Meaning::Churned.code())
            .count();
        assert_eq!(
            churned_events,
            pop.customers
                .iter()
                .filter(|c| c.churned_on.is_some())
                .count()
        );
    }

    #[test]
    fn churn_share_is_realistic() {
        let pop = pop5k();
        let churned = pop
            .customers
            .iter()
            .filter(|c| c.churned_on.is_some())
            .count();
        let share = churned as f64 / pop.customers.len() as f64;
        let per_customer = pop.events.len() as f64 / pop.customers.len() as f64;
        println!("churn share {share:.3}, events per customer {per_customer:.1}");
        assert!((0.10..=0.30).contains(&share), "churn share {share}");
        assert!(
            (20.0..=70.0).contains(&per_customer),
            "events per customer {per_customer}"
        );
    }

    #[test]
    fn playbook_situations_exist_today() {
        let pop = pop5k();
        let t = today();
        let active: Vec<&Customer> = pop.customers.iter().filter(|c| c.is_active_on(t)).collect();

        let new_signups: Vec<_> = active
            .iter()
            .filter(|c| (t - c.signup_date).num_days() < 7)
            .collect();
        assert!(!new_signups.is_empty());
        for c in &new_signups {
            let due = c.first_invoice_due.unwrap();
            assert!((3..=10).contains(&(due - t).num_days()), "{due}");
        }

        let renewals = active
            .iter()
            .filter(|c| {
                c.contract_end
                    .is_some_and(|e| e > t && (e - t).num_days() <= 60)
            })
            .count();
        assert!(renewals >= 50, "renewals {renewals}");

        let events = by_customer(pop);
        let mut recent_open = 0;
        let mut high_risk = 0;
        for c in &active {
            let Some(evs) = events.get(c.external_id.as_str()) else {
                continue;
            };
            let mut open = 0i32;
            let mut last_open = None;
            let mut failures = 0;
            let mut cancel = false;
            for e in evs {
                let day = e.occurred_at.date_naive();
                match Meaning::from_code(e.kind).expect("attune's own kinds") {
                    Meaning::ComplaintOpened | Meaning::ComplaintReopened => {
                        open += 1;
                        last_open = Some(day);
                    }
                    Meaning::ComplaintResolved => open = (open - 1).max(0),
                    Meaning::PaymentFailed if (t - day).num_days() <= 90 => failures += 1,
                    Meaning::CancellationRequested => cancel = true,
                    _ => {}
                }
            }
            if open > 0 && last_open.is_some_and(|d| (t - d).num_days() <= 14) {
                recent_open += 1;
            }
            if cancel || failures >= 2 || open >= 2 {
                high_risk += 1;
            }
        }
        println!(
            "active {}, new signups {}, renewals within 60d {renewals}, recent open complaints {recent_open}, high risk {high_risk}",
            active.len(),
            new_signups.len()
        );
        assert!(recent_open >= 5, "recent open complaints {recent_open}");
        assert!(high_risk >= 20, "high risk {high_risk}");
    }

    #[test]
    fn the_playbooks_occasions_exist_today() {
        use crate::playbook::{EventFact, complaints};
        let pop = pop5k();
        let t = today();
        let now = at(t, 12 * 3600).timestamp();
        let events = by_customer(pop);
        let (mut meter, mut ombudsman, mut reopened, mut milestones, mut first_bill, mut failed) =
            (0, 0, 0, 0, 0, 0);
        for c in pop.customers.iter().filter(|c| c.is_active_on(t)) {
            let evs = events
                .get(c.external_id.as_str())
                .cloned()
                .unwrap_or_default();
            let facts: Vec<EventFact> = evs
                .iter()
                .enumerate()
                .map(|(i, e)| EventFact {
                    id: i as i64,
                    kind: Meaning::from_code(e.kind).expect("attune's own kinds"),
                    at: e.occurred_at.timestamp(),
                    value: e.value,
                })
                .collect();
            let ago = |e: &EventFact| (now - e.at) / 86_400;
            meter += facts
                .iter()
                .any(|e| e.kind == Meaning::MeterReading && ago(e) <= 3)
                as u32;
            for k in complaints(&facts).iter().filter(|k| k.open) {
                ombudsman += ((now - k.opened_at) / 86_400 >= 56) as u32;
                reopened += k.reopened_at.is_some_and(|r| (now - r) / 86_400 <= 14) as u32;
            }
            milestones += [12, 24, 36, 60].iter().any(|m| {
                let a = add_months(c.signup_date, *m);
                a <= t && (t - a).num_days() <= 14
            }) as u32;
            if let Some(due) = c.first_invoice_due {
                first_bill += facts.iter().any(|e| {
                    let d = DateTime::from_timestamp(e.at, 0).unwrap().date_naive();
                    e.kind == Meaning::SupportContact
                        && ago(e) <= 14
                        && d >= due
                        && (d - due).num_days() <= 30
                }) as u32;
            }
            failed += facts.iter().any(|e| {
                e.kind == Meaning::PaymentFailed
                    && ago(e) <= 7
                    && !facts
                        .iter()
                        .any(|p| p.kind == Meaning::PaymentMade && p.at > e.at)
            }) as u32;
        }
        println!(
            "meter readings {meter}, complaints open 8+ weeks {ombudsman}, reopened {reopened}, milestones {milestones}, support after first bill {first_bill}, failed payments {failed}"
        );
        assert!(meter >= 5, "recent meter readings {meter}");
        assert!(ombudsman >= 20, "complaints open eight weeks {ombudsman}");
        assert!(reopened >= 1, "reopened complaints {reopened}");
        assert!(milestones >= 30, "tenure milestones {milestones}");
        assert!(first_bill >= 1, "support after the first bill {first_bill}");
        assert!(failed >= 5, "unpaid failed payments {failed}");
    }

    #[test]
    fn consent_has_exceptions() {
        let pop = pop5k();
        let n = pop.customers.len() as f64;
        let none = pop
            .customers
            .iter()
            .filter(|c| c.consent == Consent::default())
            .count() as f64
            / n;
        let no_preferred = pop
            .customers
            .iter()
            .filter(|c| !c.consent.allows(c.preferred_channel))
            .count() as f64
            / n;
        assert!((0.01..0.06).contains(&none), "no consent {none}");
        assert!(
            (0.04..0.12).contains(&no_preferred),
            "preferred not consented {no_preferred}"
        );
        let contracts = |t| {
            pop.customers
                .iter()
                .filter(|c| c.contract_type == t)
                .count() as f64
                / n
        };
        assert!((0.5..0.6).contains(&contracts(ContractType::MonthToMonth)));
    }

    #[test]
    fn churners_behaved_differently() {
        // Rates per month of recorded history: churners have fewer months than stayers.
        let pop = pop5k();
        let window_start = sub_months(today(), DEFAULT_MONTHS);
        let churned: HashMap<&str, bool> = pop
            .customers
            .iter()
            .map(|c| (c.external_id.as_str(), c.churned_on.is_some()))
            .collect();
        let months = |churner: bool| {
            pop.customers
                .iter()
                .filter(|c| c.churned_on.is_some() == churner)
                .map(|c| {
                    let from = c.signup_date.max(window_start);
                    let to = c.churned_on.unwrap_or(today());
                    (to - from).num_days().max(1) as f64 / 30.4375
                })
                .sum::<f64>()
        };
        let (m_churn, m_stay) = (months(true), months(false));
        let rate = |kind: Meaning, churner: bool| {
            let n = pop
                .events
                .iter()
                .filter(|e| e.kind == kind.code() && churned[e.customer.as_str()] == churner)
                .count();
            n as f64 / if churner { m_churn } else { m_stay }
        };
        let (c_churn, c_stay) = (
            rate(Meaning::ComplaintOpened, true),
            rate(Meaning::ComplaintOpened, false),
        );
        let (f_churn, f_stay) = (
            rate(Meaning::PaymentFailed, true),
            rate(Meaning::PaymentFailed, false),
        );
        let (l_churn, l_stay) = (rate(Meaning::Login, true), rate(Meaning::Login, false));
        println!(
            "per month: complaints churners {c_churn:.3} vs stayers {c_stay:.3}; failed payments {f_churn:.3} vs {f_stay:.3}; logins {l_churn:.2} vs {l_stay:.2}"
        );
        assert!(c_churn > 1.3 * c_stay);
        assert!(f_churn > 1.3 * f_stay);
        assert!(l_churn < l_stay);
    }

    fn auc(scores: &[(f64, bool)]) -> f64 {
        let mut v = scores.to_vec();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut rank_sum, mut pos) = (0.0, 0.0);
        for (i, (_, y)) in v.iter().enumerate() {
            if *y {
                rank_sum += (i + 1) as f64;
                pos += 1.0;
            }
        }
        let neg = v.len() as f64 - pos;
        (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
    }

    #[test]
    fn features_ninety_days_ahead_predict_churn() {
        let pop = pop5k();
        let t = today();
        let as_of = add_days(t, -90);
        let events = by_customer(pop);
        let empty = Vec::new();
        let spec = FeatureSpec::default_spec();
        let mut rows: Vec<(Vec<f64>, bool)> = Vec::new();
        for c in pop
            .customers
            .iter()
            .filter(|c| c.is_active_on(as_of) && c.signup_date < as_of)
        {
            let evs = events.get(c.external_id.as_str()).unwrap_or(&empty);
            let activity = Activity::from_events(evs.iter().copied());
            let row = features::compute(&spec, c, &activity, as_of);
            let mut x = Vec::new();
            for (name, v) in &row {
                if name.starts_with(features::ATTRIBUTE_PREFIX) || name == "plan" {
                    continue;
                }
                match v {
                    FeatureValue::Num(n) => x.extend([*n, 0.0]),
                    FeatureValue::Missing => x.extend([0.0, 1.0]),
                    FeatureValue::Cat(level) => {
                        for ct in ContractType::ALL {
                            x.push(if ct.as_str() == level { 1.0 } else { 0.0 });
                        }
                    }
                }
            }
            let label = c.churned_on.is_some_and(|d| d >= as_of && d < t);
            rows.push((x, label));
        }
        let dim = rows[0].0.len();
        // Standardize.
        let n = rows.len() as f64;
        for j in 0..dim {
            let mean = rows.iter().map(|r| r.0[j]).sum::<f64>() / n;
            let sd = (rows.iter().map(|r| (r.0[j] - mean).powi(2)).sum::<f64>() / n).sqrt();
            for r in rows.iter_mut() {
                r.0[j] = if sd > 0.0 { (r.0[j] - mean) / sd } else { 0.0 };
            }
        }
        let split = rows.len() / 2;
        let (train, test) = rows.split_at(split);
        let mut w = vec![0.0; dim];
        let mut b = 0.0;
        for _ in 0..300 {
            let mut gw = vec![0.0; dim];
            let mut gb = 0.0;
            for (x, y) in train {
                let z = b + x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
                let err = sigmoid(z) - if *y { 1.0 } else { 0.0 };
                gb += err;
                for j in 0..dim {
                    gw[j] += err * x[j];
                }
            }
            let m = train.len() as f64;
            b -= 0.5 * gb / m;
            for j in 0..dim {
                w[j] -= 0.5 * (gw[j] / m + 0.001 * w[j]);
            }
        }
        let scores: Vec<(f64, bool)> = test
            .iter()
            .map(|(x, y)| (b + x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>(), *y))
            .collect();
        let positives = test.iter().filter(|r| r.1).count();
        let a = auc(&scores);
        println!(
            "holdout AUC {a:.3} on {} customers, {positives} churned within 90 days",
            test.len()
        );
        assert!((0.72..=0.93).contains(&a), "AUC {a}");
    }

    #[test]
    fn five_thousand_customers_timing() {
        let start = Instant::now();
        let pop = generate(&opts(5_000, 1));
        println!(
            "5,000 customers: {} events in {:?}",
            pop.events.len(),
            start.elapsed()
        );
    }

    #[test]
    #[ignore = "timing note; run with --ignored --nocapture"]
    fn hundred_thousand_customers_timing() {
        let start = Instant::now();
        let pop = generate(&opts(100_000, 1));
        let churned = pop
            .customers
            .iter()
            .filter(|c| c.churned_on.is_some())
            .count();
        println!(
            "100,000 customers: {} events ({:.1} per customer), churn share {:.3}, in {:?}",
            pop.events.len(),
            pop.events.len() as f64 / 100_000.0,
            churned as f64 / 100_000.0,
            start.elapsed()
        );
    }
}
