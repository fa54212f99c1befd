//! A population for the planning benchmark: customers and one scoring run stored
//! directly (no events), shaped so that the date-driven rules fire at realistic rates
//! (new signups, first bills, tenure milestones, contract ends, plan prices, risk).

use chrono::{Days, Months, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use attune::domain::{Channel, Consent, ContractType, Customer, CustomerId};
use attune::store::{Db, NewScore};

#[derive(Debug, Clone, Serialize)]
pub struct Populated {
    pub customers: usize,
    pub scoring_run: i64,
}

const PLANS: [(&str, f64); 3] = [("basic", 25.0), ("standard", 45.0), ("fibre-plus", 70.0)];
const ZONES: [&str; 4] = [
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
];

/// One synthetic customer; the same `seed` and index give the same customer.
pub fn customer(idx: usize, rng: &mut StdRng, as_of: NaiveDate) -> Customer {
    let days_ago: u64 = if rng.gen_bool(0.01) {
        rng.gen_range(0..7)
    } else {
        rng.gen_range(7..2190)
    };
    let signup = as_of - Days::new(days_ago);
    let (plan, price) = PLANS[rng.gen_range(0..PLANS.len())];
    let contract_type = match rng.gen_range(0..100) {
        0..55 => ContractType::MonthToMonth,
        55..80 => ContractType::OneYear,
        _ => ContractType::TwoYear,
    };
    let term = match contract_type {
        ContractType::MonthToMonth => 0,
        ContractType::OneYear => 12,
        ContractType::TwoYear => 24,
    };
    let contract_end = (term > 0).then(|| {
        let mut j = 1;
        loop {
            let end = signup
                .checked_add_months(Months::new(term * j))
                .unwrap_or(NaiveDate::MAX);
            if end > as_of {
                break end;
            }
            j += 1;
        }
    });
    let mut attributes = std::collections::BTreeMap::new();
    let business = rng.gen_bool(0.2);
    attributes.insert(
        "segment".to_owned(),
        if business {
            "small_business"
        } else {
            "consumer"
        }
        .to_owned(),
    );
    attributes.insert(
        "timezone".to_owned(),
        ZONES[rng.gen_range(0..ZONES.len())].to_owned(),
    );
    let preferred_channel = Channel::ALL[rng.gen_range(0..Channel::ALL.len())];
    Customer {
        external_id: CustomerId::parse(&format!("P{:07}", idx + 1)).expect("valid id"),
        signup_date: signup,
        plan: plan.to_owned(),
        // Most pay today's price; one in five is on an older, dearer one.
        monthly_charge: if rng.gen_bool(0.2) {
            (price * rng.gen_range(1.05..1.3) * 100.0).round() / 100.0
        } else {
            price
        },
        contract_type,
        contract_end,
        first_invoice_due: signup.checked_add_months(Months::new(1)),
        preferred_channel,
        consent: Consent {
            email: rng.gen_bool(0.85),
            sms: rng.gen_bool(0.45),
            phone: rng.gen_bool(0.3),
            post: rng.gen_bool(0.5),
        },
        churned_on: None,
        attributes,
    }
}

/// Stores `n` customers and a finished scoring run for them, in batches.
pub async fn populate(db: &Db, n: usize, seed: u64, as_of: NaiveDate) -> anyhow::Result<Populated> {
    let mut rng = StdRng::seed_from_u64(seed);
    for start in (0..n).step_by(50_000) {
        let chunk: Vec<Customer> = (start..(start + 50_000).min(n))
            .map(|i| customer(i, &mut rng, as_of))
            .collect();
        db.upsert_customers(&chunk).await?;
    }
    let (run, _) = db
        .start_scoring_run("bench", as_of, "bench", "full", "test", None)
        .await?;
    let ids: Vec<i64> = {
        let mut v: Vec<i64> = db.customer_id_map().await?.into_values().collect();
        v.sort_unstable();
        v
    };
    for chunk in ids.chunks(50_000) {
        let scores: Vec<NewScore> = chunk
            .iter()
            .map(|&id| {
                // Mostly low, a tail of high risk: logistic of a normal-ish draw.
                let z: f64 = (0..4).map(|_| rng.gen_range(-1.0..1.0)).sum::<f64>() * 1.3 - 2.2;
                let p = 1.0 / (1.0 + (-z).exp());
                NewScore {
                    customer_id: id,
                    probability: p,
                    // Drivers as scores written before compact drivers held them.
                    drivers: br#"[{"feature": "tenure_months", "source": "tenure_months", "contribution": 0.4, "description": "a synthetic driver"}]"#
                        .to_vec(),
                }
            })
            .collect();
        db.insert_scores(run, scores).await?;
    }
    db.finish_scoring_run(run, ids.len()).await?;
    Ok(Populated {
        customers: n,
        scoring_run: run,
    })
}
