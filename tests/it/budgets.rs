//! Weekly review budgets (issue 19): marketing caps a rule's nudges in review a week; the
//! most valuable take the places, the rest wait deferred, and the overview shows it.

use attune::store::{Decision, Role};

use crate::both_backends;

use super::helpers::{TestDb, scalar};
use super::web::{csrf_of, form, page, sign_in};

async fn count(t: &TestDb, rule: &str, filter: &str) -> i64 {
    scalar(
        &t.db,
        &format!("SELECT COUNT(*) FROM nudges WHERE kind = '{rule}' AND {filter}"),
    )
    .await
}

/// The lowest value in review against the highest left waiting, in cents.
async fn value_edge(t: &TestDb, rule: &str) -> (i64, i64) {
    let ev = "CAST(ROUND(COALESCE(expected_value, -1) * 100) AS BIGINT)";
    let low_in = scalar(
        &t.db,
        &format!(
            "SELECT COALESCE(MIN({ev}), 0) FROM nudges WHERE kind = '{rule}' AND budget_week IS NOT NULL AND NOT over_budget"
        ),
    )
    .await;
    let high_out = scalar(
        &t.db,
        &format!(
            "SELECT COALESCE(MAX({ev}), 0) FROM nudges WHERE kind = '{rule}' AND status = 'deferred' AND over_budget"
        ),
    )
    .await;
    (low_in, high_out)
}

async fn budgets_defer_the_least_valuable(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| c.pull.inbox = Some(inbox.path().to_owned()));
    let today = attune::jobs::today();
    attune::demo::run_cycle(&ctx, 1500, 7, today).await.unwrap();
    let pb = ctx.playbook().unwrap();
    // The rule with the most nudges waiting for review.
    let rules: Vec<String> = pb
        .rules
        .iter()
        .map(|r| r.name.as_str().to_owned())
        .collect();
    let mut busiest = (String::new(), 0);
    for r in &rules {
        let n = count(t, r, "status = 'proposed'").await;
        if n > busiest.1 {
            busiest = (r.clone(), n);
        }
    }
    let (rule, proposed) = busiest;
    assert!(proposed >= 8, "{rule}: {proposed}");

    // While this daemon's own planning run holds the plan lease, a budget is saved but
    // not applied (the run's lease is neither shared nor released).
    let lease = attune::jobs::lease::Lease::take(&ctx, "plan", "a planning run")
        .await
        .unwrap();
    let o = attune::jobs::plan::set_budget(&ctx, &pb, &rule, Some(3), "marketing")
        .await
        .unwrap();
    assert_eq!(o, None);
    assert_eq!(count(t, &rule, "over_budget").await, 0);
    assert!(
        t.db.take_lease("plan", "another-daemon", 60)
            .await
            .unwrap()
            .is_err(),
        "the planning run still holds its lease"
    );
    lease.release().await;

    // A budget of 3: the three most valuable stay, the rest wait with the reason.
    let o = attune::jobs::plan::set_budget(&ctx, &pb, &rule, Some(3), "marketing")
        .await
        .unwrap()
        .expect("applied at once: no planning run holds the lease");
    assert_eq!(
        (o.used, o.deferred, o.released),
        (3, proposed as u64 - 3, 0)
    );
    assert_eq!(count(t, &rule, "status = 'proposed'").await, 3);
    assert_eq!(
        count(t, &rule, "status = 'deferred' AND over_budget AND send_after IS NULL AND decision_reason LIKE '%weekly review budget (3 a week)%'").await,
        proposed - 3
    );
    let (low_in, high_out) = value_edge(t, &rule).await;
    assert!(
        low_in >= high_out,
        "in review from {low_in}, waiting up to {high_out}"
    );
    // Planning leaves waiting nudges alone (no release by the contact cap).
    attune::jobs::plan::run(&ctx, &Default::default())
        .await
        .unwrap();
    assert_eq!(count(t, &rule, "status = 'proposed'").await, 3);
    assert_eq!(count(t, &rule, "over_budget").await, proposed - 3);
    // Other rules are untouched.
    let others = scalar(
        &t.db,
        &format!("SELECT COUNT(*) FROM nudges WHERE kind <> '{rule}' AND over_budget"),
    )
    .await;
    assert_eq!(others, 0);

    // A reviewer decides one; the budget is raised to 5: the decided one keeps its place
    // and two more of the most valuable are released to planning, which proposes them.
    let first: i64 = scalar(
        &t.db,
        &format!("SELECT MIN(id) FROM nudges WHERE kind = '{rule}' AND status = 'proposed'"),
    )
    .await;
    t.db.decide_one(first, Some(&Decision::Approve), None, "marketing", "test")
        .await
        .unwrap()
        .unwrap();
    let o = attune::jobs::plan::set_budget(&ctx, &pb, &rule, Some(5), "marketing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.used, o.deferred, o.released), (5, 0, 2));
    let report = attune::jobs::plan::run(&ctx, &Default::default())
        .await
        .unwrap();
    assert!(report.budgets.iter().any(|b| b.rule == rule && b.used == 5));
    assert_eq!(
        count(
            t,
            &rule,
            "status IN ('proposed', 'deferred') AND NOT over_budget AND budget_week IS NOT NULL"
        )
        .await,
        4,
        "four undecided in this week's places"
    );
    let (low_in, high_out) = value_edge(t, &rule).await;
    assert!(
        low_in >= high_out,
        "in review from {low_in}, waiting up to {high_out}"
    );

    // The overview shows the rule's week and budget; a viewer may not set one; a bad value
    // names the field; a reviewer removes it and everything waiting goes back.
    for (name, role) in [("reviewer", Role::Reviewer), ("viewer", Role::Viewer)] {
        let hash = attune::http::hash_password(&format!("{name}-password")).unwrap();
        t.db.create_user(name, role, &hash, "test").await.unwrap();
    }
    let d = super::api_desk::Desk {
        app: attune::http::router(attune::http::AppState::new(ctx.clone())),
        tokens: Default::default(),
    };
    let (reviewer, _) = sign_in(&d, "reviewer").await;
    let html = page(&d, "/overview", &reviewer).await.text();
    let row_at = html
        .find(&format!("data-rule=\"{rule}\""))
        .expect("a row for the rule");
    let row = &html[row_at..row_at + html[row_at..].find("</tr>").unwrap()];
    assert!(row.contains("5 of 5"), "{row}");
    let waiting = count(t, &rule, "status = 'deferred' AND over_budget").await;
    assert!(waiting >= proposed - 5);
    assert!(row.contains(&format!(">{waiting}<")), "waiting: {row}");
    let (viewer, _) = sign_in(&d, "viewer").await;
    // Who posts, which rule, what budget: the status and the words of the answer.
    for (who, rule, weekly, status, words) in [
        (&viewer, rule.as_str(), "", 403, ""),
        (
            &reviewer,
            rule.as_str(),
            "lots",
            400,
            "weekly: &#34;lots&#34; is not a number",
        ),
        (
            &reviewer,
            "no_such_rule",
            "4",
            400,
            "is not a rule of the playbook",
        ),
        (&reviewer, rule.as_str(), "", 303, ""),
    ] {
        let token = csrf_of(&d, who).await;
        let a = form(
            &d,
            "/overview/budgets",
            who,
            &[("csrf", &token), ("rule", rule), ("weekly", weekly)],
        )
        .await;
        assert_eq!(a.status, status, "{rule} {weekly:?}: {}", a.text());
        assert!(a.text().contains(words), "{}", a.text());
    }
    assert_eq!(count(t, &rule, "over_budget").await, 0);
    attune::jobs::plan::run(&ctx, &Default::default())
        .await
        .unwrap();
    assert_eq!(count(t, &rule, "over_budget").await, 0);
    assert!(
        scalar(
            &t.db,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'budget.set' AND actor = 'reviewer'"
        )
        .await
            == 1
    );
}
both_backends!(
    a_weekly_budget_defers_the_least_valuable_and_the_overview_shows_it,
    super::budgets_defer_the_least_valuable
);
