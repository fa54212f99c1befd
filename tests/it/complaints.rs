//! One complaint lifecycle: what the store reads and summarises agrees with
//! `domain::complaint::lifecycle` on generated histories (issue 19). The playbook's use of
//! it is checked the same way in `playbook::tests`.

use std::collections::{BTreeMap, BTreeSet};

use attune::domain::complaint::{self, ComplaintEvent, Step};
use attune::domain::{ActivityEvent, CustomerId, Meaning};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use super::helpers::{TestDb, customer, d, email_only};
use crate::both_backends;

/// Per customer, complaint events as (step, day, satisfaction), in the order they happened.
type History = Vec<(Step, i64, f64)>;

fn histories() -> impl Strategy<Value = Vec<History>> {
    let step = prop_oneof![
        3 => Just(Step::Opened),
        2 => Just(Step::Resolved),
        1 => Just(Step::Reopened),
    ];
    let event = (step, 0i64..150, 1u8..=5).prop_map(|(s, day, sat)| (s, day, sat as f64));
    prop::collection::vec(prop::collection::vec(event, 0..9), 1..8)
}

const BASE: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// When a customer's `i`-th event happened: its day, then `i` minutes, so no two events of
/// one customer share a second.
fn when(day: i64, i: usize) -> i64 {
    BASE + day * 86_400 + i as i64 * 60
}

fn meaning(step: Step) -> Meaning {
    match step {
        Step::Opened => Meaning::ComplaintOpened,
        Step::Resolved => Meaning::ComplaintResolved,
        Step::Reopened => Meaning::ComplaintReopened,
    }
}

fn expected(h: &History) -> Vec<complaint::Complaint> {
    complaint::lifecycle(
        h.iter()
            .enumerate()
            .map(|(i, &(step, day, sat))| ComplaintEvent {
                id: i as i64,
                at: when(day, i),
                step,
                satisfaction: (step == Step::Resolved).then_some(sat),
            }),
    )
}

/// Everything but the id that names a complaint (the database numbers events its own way).
type Shape = (i64, bool, Option<i64>, Option<f64>, u32, Option<i64>);

fn shape(c: &[complaint::Complaint]) -> Vec<Shape> {
    c.iter()
        .map(|c| {
            (
                c.opened_at,
                c.open,
                c.resolved_at,
                c.satisfaction,
                c.reopened,
                c.reopened_at,
            )
        })
        .collect()
}

/// The Complaints panel (`customer_complaints`), the overview's count and its list of
/// customers with an unresolved complaint (`overview`, `open_problems`) against the
/// definition, on 24 generated populations stored one after another in one database; a
/// customer who left, with an open complaint, is never counted.
async fn summaries_agree_with_the_lifecycle(t: &TestDb) {
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let strategy = histories();
    let mut open_so_far = 0usize;
    for case in 0..24 {
        let population = strategy.new_tree(&mut runner).unwrap().current();
        let names: Vec<String> = (0..population.len())
            .map(|i| format!("p{case}-{i}"))
            .collect();
        let mut customers: Vec<_> = names
            .iter()
            .map(|n| customer(n, d("2025-01-01"), email_only()))
            .collect();
        // A customer who left, with a complaint still open.
        let mut gone = customer(&format!("p{case}-gone"), d("2025-01-01"), email_only());
        gone.churned_on = Some(d("2025-12-01"));
        customers.push(gone);
        t.db.upsert_customers(&customers).await.unwrap();
        let mut events: Vec<ActivityEvent> = Vec::new();
        let gone_history: History = vec![(Step::Opened, 3, 1.0)];
        for (name, h) in names
            .iter()
            .cloned()
            .zip(population.iter())
            .chain(std::iter::once((format!("p{case}-gone"), &gone_history)))
        {
            for (i, &(step, day, sat)) in h.iter().enumerate() {
                events.push(ActivityEvent {
                    customer: CustomerId::parse(&name).unwrap(),
                    kind: meaning(step).code(),
                    occurred_at: chrono::DateTime::from_timestamp(when(day, i), 0).unwrap(),
                    value: (step == Step::Resolved).then_some(sat),
                    attributes: BTreeMap::new(),
                    source: "generated".into(),
                    source_event_id: format!("{name}-{i}"),
                });
            }
        }
        t.db.insert_events(&events).await.unwrap();

        let mut want_open: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (name, h) in names.iter().zip(&population) {
            let want = expected(h);
            let id =
                t.db.customer_by_external_id(name)
                    .await
                    .unwrap()
                    .unwrap()
                    .id;
            let got = t.db.customer_complaints(id).await.unwrap();
            assert_eq!(
                shape(&got),
                shape(&want),
                "complaints of {name}, history {h:?}"
            );
            if let Some(oldest) = complaint::oldest_open(&want) {
                let n = want.iter().filter(|c| c.open).count() as i64;
                want_open.insert(name.clone(), (oldest.opened_at, n));
            }
        }
        let got_open: BTreeMap<String, (i64, i64)> =
            t.db.open_problems(i64::MAX)
                .await
                .unwrap()
                .into_iter()
                .filter(|p| p.external_id.starts_with(&format!("p{case}-")))
                .map(|p| (p.external_id, (p.opened_at, p.complaints_open)))
                .collect();
        assert_eq!(
            got_open, want_open,
            "open problems of population {population:?}"
        );
        open_so_far += want_open.len();
        let overview = t.db.overview(0.5, 0).await.unwrap();
        assert_eq!(
            overview.customers_with_open_complaints as usize, open_so_far,
            "overview count after population {case}"
        );
    }
    // The cases are not all trivial: some customers had open complaints, some none.
    let all: BTreeSet<String> =
        t.db.open_problems(i64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.external_id)
            .collect();
    assert!(
        open_so_far > 10 && !all.iter().any(|n| n.ends_with("-gone")),
        "{all:?}"
    );
}
both_backends!(
    complaint_summaries_agree_with_the_one_lifecycle,
    super::summaries_agree_with_the_lifecycle
);
