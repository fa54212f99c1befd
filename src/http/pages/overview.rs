//! The overview: current scores, the week's nudges, deliveries, budgets, uplift and
//! problems.

use super::*;

pub(super) struct WeekRow {
    stage: String,
    counts: Vec<String>,
    total: String,
}

pub(super) struct ProblemView {
    customer: String,
    since: String,
    monthly: String,
}

/// One count of the deliveries' line: its status key, its name and how many.
pub(super) struct DeliveryCount {
    key: &'static str,
    label: &'static str,
    count: String,
}

/// Deliveries counted by status, in the order a reviewer reads them; `dead` reads failed.
pub(super) fn delivery_counts(c: &crate::store::DeliveryCounts) -> Vec<DeliveryCount> {
    [
        ("sent", "Sent", c.sent),
        ("pending", "Pending", c.pending),
        ("retrying", "Retrying", c.retrying),
        ("dead", "Failed", c.dead),
        ("blocked", "Blocked", c.blocked),
        ("cancelled", "Cancelled", c.cancelled),
    ]
    .into_iter()
    .map(|(key, label, n)| DeliveryCount {
        key,
        label,
        count: views::count(n),
    })
    .collect()
}

/// The configured channels paused now, each in a sentence with why, from their breakers'
/// (name, failures in a row, paused until, reason).
pub(super) fn paused_channels<'a>(
    states: impl IntoIterator<Item = (&'a str, i64, Option<i64>, Option<&'a str>)>,
    now: i64,
) -> Vec<String> {
    states
        .into_iter()
        .filter_map(|(name, failures, until, reason)| {
            let until = until.filter(|t| *t > now)?;
            Some(views::channel_pause(name, failures, until, reason))
        })
        .collect()
}

/// One rule's line of the review budgets: what it proposes a week and what its budget lets
/// through.
pub(super) struct BudgetRow {
    rule: String,
    name: String,
    per_week: String,
    this_week: String,
    weekly: String,
    taken: String,
    waiting: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub(super) struct OverviewPage {
    nav: Nav,
    run_note: String,
    threshold: String,
    at_risk_share: String,
    at_risk: String,
    scored: String,
    revenue_at_risk: String,
    revenue_share: String,
    revenue: String,
    open_problems: String,
    active: String,
    proposed_value: String,
    proposed: String,
    horizon_months: String,
    risk_chart: String,
    status_chart: String,
    stage_chart: String,
    week_start: String,
    week_statuses: Vec<String>,
    week_rows: Vec<WeekRow>,
    problems: Vec<ProblemView>,
    uplift_horizon: u32,
    uplift: Vec<UpliftView>,
    budgets: Vec<BudgetRow>,
    can_set_budgets: bool,
    budget_notice: Option<String>,
    delivery_counts: Vec<DeliveryCount>,
    paused_channels: Vec<String>,
}

/// One rule's row of the uplift table (`attune report uplift`'s figures).
pub(super) struct UpliftView {
    rule: String,
    nudged: String,
    held_out: String,
    difference: String,
    interval: String,
    verdict: &'static str,
    note: String,
}

pub use crate::playbook::budget::week_start;

/// Customers in either group below which a rule's uplift is shown as "too few", as in
/// `attune report uplift`'s default.
const UPLIFT_MIN_CUSTOMERS: u64 = 100;

/// The playbook's uplift table, as `attune report uplift` computes it as of today.
pub(super) async fn uplift_section(
    state: &AppState,
    horizon: u32,
) -> anyhow::Result<Vec<UpliftView>> {
    let churn = state.ctx.churn().await?;
    let rows = crate::jobs::plan::uplift(
        &state.ctx.db,
        &churn,
        crate::jobs::today(),
        horizon,
        UPLIFT_MIN_CUSTOMERS,
    )
    .await?;
    let churn = |churned: u64, n: u64, share: Option<f64>| match share {
        Some(p) => format!("{} ({} churned)", views::count(n as i64), views::percent(p)),
        None => format!(
            "{} ({} churned)",
            views::count(n as i64),
            views::count(churned as i64)
        ),
    };
    let points = |x: f64| format!("{:+.1} pts", x * 100.0);
    Ok(rows
        .into_iter()
        .map(|r| UpliftView {
            nudged: churn(r.treated_churned, r.treated, r.treated_churn),
            held_out: churn(r.held_out_churned, r.held_out, r.held_out_churn),
            difference: r.difference.map(points).unwrap_or_else(|| "—".into()),
            interval: match (r.ci_low, r.ci_high) {
                (Some(lo), Some(hi)) => format!("{} to {}", points(lo), points(hi)),
                _ => "—".into(),
            },
            verdict: match r.verdict {
                "significant" => "significant",
                "not_significant" => "no significant effect",
                _ => "too few customers",
            },
            note: r.note,
            rule: views::label(&r.rule),
        })
        .collect())
}

/// Where the overview's risk figures come from: the full run, the re-scores after it, and
/// what the latest re-score did (most re-scores find nobody whose activity changed).
pub(super) fn run_note(o: &crate::store::Overview) -> String {
    let (Some(id), Some(day)) = (o.run_id, o.run_as_of) else {
        return "no scoring run yet".into();
    };
    let mut note = format!("current scores: full scoring run {id}, as of {day}");
    if o.rescored_customers > 0 {
        note.push_str(&format!(
            ", and {} since by {}",
            views::counted(
                o.rescored_customers,
                "customer re-scored",
                "customers re-scored"
            ),
            views::counted(o.rescores_since, "re-score", "re-scores"),
        ));
    }
    if let Some((at, customers)) = o.latest_rescore {
        note.push_str(&if customers == 0 {
            format!(
                "; the latest re-score ({}) found no customer whose activity had changed",
                views::time(at)
            )
        } else {
            format!(
                "; the latest re-score ({}) scored {}",
                views::time(at),
                views::counted(customers, "customer", "customers")
            )
        });
    }
    note
}

/// Each rule of the playbook (and any other with nudges) with its week and budget.
pub(super) async fn budget_rows(state: &AppState, week: i64) -> anyhow::Result<Vec<BudgetRow>> {
    let weeks = state.ctx.db.budget_weeks(week).await?;
    let budgets = state.ctx.db.review_budgets().await?;
    let mut rules: Vec<String> = state
        .ctx
        .playbook()
        .map(|pb| {
            pb.rules
                .iter()
                .map(|r| r.name.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    for w in &weeks {
        if !rules.contains(&w.rule) {
            rules.push(w.rule.clone());
        }
    }
    Ok(rules
        .into_iter()
        .map(|rule| {
            let w = weeks.iter().find(|w| w.rule == rule);
            let b = budgets.iter().find(|b| b.rule == rule);
            let n = |f: fn(&crate::store::RuleWeek) -> i64| views::count(w.map_or(0, f));
            BudgetRow {
                name: views::label(&rule),
                per_week: format!("{:.1}", w.map_or(0, |w| w.last_four_weeks) as f64 / 4.0),
                this_week: n(|w| w.this_week),
                weekly: b.map_or(String::new(), |b| b.weekly.to_string()),
                taken: match b {
                    Some(b) => format!("{} of {}", n(|w| w.used), views::count(b.weekly)),
                    None => "no budget".into(),
                },
                waiting: n(|w| w.waiting),
                rule,
            }
        })
        .collect())
}

/// Sets or removes a rule's weekly review budget (reviewers and admins).
pub(super) async fn set_budget(State(state): State<AppState>, form: CsrfForm) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Reviewer, "set review budgets")?;
    let rule = form.get("rule").unwrap_or_default();
    let raw = form.get("weekly").unwrap_or_default();
    let weekly = match raw.trim() {
        "" => None,
        n => Some(n.parse::<u32>().map_err(|_| {
            Problem::bad_request(
                "invalid_budget",
                format!("weekly: {n:?} is not a number of nudges a week; give a whole number such as 20, or leave it empty for no budget"),
            )
        })?),
    };
    let pb = state.ctx.playbook()?;
    crate::jobs::plan::set_budget(&state.ctx, &pb, rule, weekly, &s.principal.name)
        .await
        .map_err(|e| Problem::bad_request("invalid_budget", format!("{e:#}")))?;
    state.decisions_changed();
    Ok(see_other(&format!(
        "/overview?budget={}#budgets",
        views::path_segment(rule)
    )))
}

pub(super) async fn overview(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let params = query::pairs(raw.as_deref(), &["budget"])?;
    let money = state.ctx.config.currency();
    let threshold = state.ctx.config.scoring.risk_threshold;
    let week = week_start(crate::jobs::today());
    let o = state.ctx.db.overview(threshold, week).await?;
    let budgets = budget_rows(&state, week).await?;
    let budget_notice = params.iter().find(|(k, _)| k == "budget").map(|(_, rule)| {
        format!(
            "The weekly review budget of {} is saved and applied.",
            views::label(rule)
        )
    });
    let horizon = state.ctx.config.training.horizon_days.clamp(1, 3650) as u32;
    let uplift = uplift_section(&state, horizon).await?;
    let deliveries = state.ctx.db.delivery_counts().await?;
    let channels = state.ctx.db.channel_states().await?;
    let share = |a: f64, b: f64| {
        if b > 0.0 {
            views::percent(a / b)
        } else {
            "—".into()
        }
    };
    let mut statuses: Vec<String> = o.week.iter().map(|(_, st, _)| st.clone()).collect();
    statuses.sort();
    statuses.dedup();
    let mut stages: Vec<String> = o.week.iter().map(|(sg, _, _)| sg.clone()).collect();
    stages.dedup();
    let week_rows: Vec<WeekRow> = stages
        .iter()
        .map(|stage| {
            let counts: Vec<i64> = statuses
                .iter()
                .map(|st| {
                    o.week
                        .iter()
                        .find(|(sg, s2, _)| sg == stage && s2 == st)
                        .map(|(_, _, n)| *n)
                        .unwrap_or(0)
                })
                .collect();
            WeekRow {
                stage: views::label(stage),
                total: views::count(counts.iter().sum()),
                counts: counts.into_iter().map(views::count).collect(),
            }
        })
        .collect();
    let stage_totals: Vec<(String, f64)> = stages
        .iter()
        .map(|stage| {
            let total: i64 = o
                .week
                .iter()
                .filter(|(sg, _, _)| sg == stage)
                .map(|(_, _, n)| n)
                .sum();
            (views::label(stage), total as f64)
        })
        .collect();
    let proposed = o
        .by_status
        .iter()
        .find(|(s, _)| s == "proposed")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    let page = OverviewPage {
        nav: nav(&s, "overview"),
        run_note: run_note(&o),
        threshold: views::percent(threshold),
        at_risk_share: share(o.at_risk as f64, o.scored as f64),
        at_risk: views::count(o.at_risk),
        scored: views::count(o.scored),
        revenue_at_risk: views::money(&money, o.monthly_revenue_at_risk),
        revenue_share: share(o.monthly_revenue_at_risk, o.monthly_revenue),
        revenue: views::money(&money, o.monthly_revenue),
        open_problems: views::count(o.customers_with_open_complaints),
        active: views::count(o.active_customers),
        proposed_value: views::money(&money, o.proposed_value),
        proposed: views::counted(proposed, "nudge", "nudges"),
        horizon_months: views::count(state.ctx.config.playbook.value_horizon_months.round() as i64),
        risk_chart: views::histogram(
            "Share of customers by churn probability in the full scoring run",
            &o.score_shares,
        ),
        status_chart: views::bar_chart(
            "Nudges by status",
            &o.by_status
                .iter()
                .map(|(s, n)| (s.clone(), *n as f64))
                .collect::<Vec<_>>(),
            |v| views::count(v as i64),
        ),
        stage_chart: views::bar_chart("Nudges queued this week by stage", &stage_totals, |v| {
            views::count(v as i64)
        }),
        week_start: views::day(o.week_start),
        week_statuses: statuses,
        week_rows,
        problems: o
            .open_problems
            .iter()
            .map(|p| ProblemView {
                customer: p.external_id.clone(),
                since: views::day(p.opened_at),
                monthly: views::money(&money, p.monthly_charge),
            })
            .collect(),
        uplift_horizon: horizon,
        uplift,
        can_set_budgets: s.principal.role != Role::Viewer,
        budgets,
        budget_notice,
        delivery_counts: delivery_counts(&deliveries),
        paused_channels: paused_channels(
            channels.iter().map(|c| {
                (
                    c.name.as_str(),
                    c.failures.into(),
                    c.paused_until,
                    c.reason.as_deref(),
                )
            }),
            crate::store::now_secs(),
        ),
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a channel paused until later is shown, in words with why.
    #[test]
    fn paused_channels_are_those_paused_until_later() {
        let reason = Some("HTTP 503 from the receiver");
        let state = |name, until| (name, 5, until, reason);
        let now = 1_796_000_000;
        let shown = paused_channels(
            [
                state("crm_webhook", Some(now + 60)),
                state("mail", Some(now - 60)),
                state("outbox", None),
            ],
            now,
        );
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("crm webhook is paused until ")
                && shown[0]
                    .ends_with("after 5 failed attempts in a row: HTTP 503 from the receiver"),
            "{}",
            shown[0]
        );
        let counts = delivery_counts(&crate::store::DeliveryCounts {
            dead: 1_200,
            ..Default::default()
        });
        let failed = counts.iter().find(|c| c.key == "dead").unwrap();
        assert_eq!((failed.label, failed.count.as_str()), ("Failed", "1,200"));
    }

    /// The overview says where its figures come from, and that a re-score found nobody
    /// changed rather than showing an empty run (issue 19).
    #[test]
    fn the_run_note_names_the_full_run_and_a_rescore_that_changed_nothing() {
        let mut o = crate::store::Overview::default();
        assert_eq!(run_note(&o), "no scoring run yet");
        o.run_id = Some(12);
        o.run_as_of = "2026-12-05".parse().ok();
        assert_eq!(
            run_note(&o),
            "current scores: full scoring run 12, as of 2026-12-05"
        );
        o.rescores_since = 1;
        o.latest_rescore = Some((1_796_000_000, 0));
        assert!(!run_note(&o).contains("0 customers"), "{}", run_note(&o));
        o.rescores_since = 3;
        o.rescored_customers = 1;
        o.latest_rescore = Some((1_796_000_000, 0));
        let note = run_note(&o);
        assert!(
            note.contains("and 1 customer re-scored since by 3 re-scores")
                && note.contains("found no customer whose activity had changed"),
            "{note}"
        );
    }
}
