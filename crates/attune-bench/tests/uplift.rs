//! The uplift simulation end to end: planning, churn, and `report uplift` recovering the
//! effect planted for one rule and none for another, on both backends.

// The product's test databases (a temp SQLite file; a PostgreSQL database dropped after).
#[path = "../../../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use attune::jobs::plan;
use attune_bench::uplift;
use helpers::TestDb;

async fn uplift_recovers_a_planted_effect(t: &TestDb) {
    let ctx = t.ctx(|_| {});
    let r = uplift::simulate(&ctx, 12_000, 1, attune::jobs::today())
        .await
        .unwrap();
    let m = |rule: &str| r.measured.iter().find(|m| m.rule == rule).unwrap().clone();
    let effect = m("meter_thanks");
    let none = m("usage_tips");
    assert!(effect.held_out > 500 && effect.treated > 5000, "{effect:?}");
    assert_eq!(effect.verdict, "significant", "{effect:?}");
    assert!(
        effect.ci_low.unwrap() <= -0.08 && -0.08 <= effect.ci_high.unwrap(),
        "{effect:?}"
    );
    assert_eq!(none.verdict, "not_significant", "{none:?}");
    assert!(r.planted_inside_interval && r.verdicts_right);
    // Too few customers is said plainly.
    let contract = attune::features::churn::ChurnDefinition::Contract { horizon_days: 60 };
    let few = plan::uplift(&t.db, &contract, r.report_as_of, 60, 1000)
        .await
        .unwrap();
    assert!(
        few.iter()
            .all(|u| u.verdict == "too_few" && u.difference.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_uplift_recovers_a_planted_effect_on_sqlite() {
    let t = TestDb::sqlite().await;
    uplift_recovers_a_planted_effect(&t).await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "PostgreSQL: build and run with ATTUNE_TEST_POSTGRES_URL set"
)]
async fn report_uplift_recovers_a_planted_effect_on_postgresql() {
    let t = TestDb::postgres().await;
    uplift_recovers_a_planted_effect(&t).await;
    t.cleanup().await;
}
