//! One customer: the search box, their scores, complaints, nudges and activity.

use super::*;

#[derive(Template)]
#[template(path = "customer.html")]
pub(super) struct CustomerPage {
    nav: Nav,
    c: CustomerView,
    risk_note: String,
    consent: String,
    score_chart: String,
    drivers: Vec<DriverView>,
    complaints: Vec<ComplaintView>,
    nudges: Vec<EarlierView>,
    events: Vec<EventView>,
}

/// The search box: `/customers?q=ID` goes to that customer's page.
pub(super) async fn find_customer(
    State(state): State<AppState>,
    PageUser(_s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["q"])?;
    let q = query::get(&pairs, "q").map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return Err(Problem::bad_request("missing_id", "give a customer id to find").into());
    }
    match state.ctx.db.customer_by_external_id(q).await? {
        Some(c) => Ok(see_other(&format!(
            "/customers/{}",
            views::path_segment(&c.external_id)
        ))),
        None => Err(Problem::not_found(format!("there is no customer {q:?}")).into()),
    }
}

/// One customer: profile and consent, scores and drivers, complaints (by the one
/// lifecycle), their nudges with decisions, recent activity.
pub(super) async fn customer(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    Path(external_id): Path<String>,
) -> PageResult {
    let money = state.ctx.config.currency();
    let db = &state.ctx.db;
    let f = db
        .customer_by_external_id(&external_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no customer {external_id:?}")))?;
    let cid = f.id;
    let events = db.customer_events(cid, 30).await?;
    let complaints = db.customer_complaints(cid).await?;
    let nudges = db.customer_nudges(cid, 50).await?;
    let mut scores = db.customer_scores(cid, 24).await?;
    let drivers = scores
        .first()
        .map(|latest| views::score_drivers(&latest.drivers))
        .unwrap_or_default();
    let risk_note = match scores.first() {
        Some(latest) => format!(
            "{} churn risk at the latest score ({})",
            views::percent(latest.probability),
            views::time(latest.scored_at)
        ),
        None => "not scored yet".into(),
    };
    scores.reverse();
    let points: Vec<(i64, f64)> = scores
        .iter()
        .map(|p| (p.scored_at, p.probability))
        .collect();
    let today = crate::jobs::today();
    let consented = f.consented();
    let page = CustomerPage {
        nav: nav(&s, "queue"),
        consent: if consented.is_empty() {
            "no channel (only notices the business must give, by post)".into()
        } else {
            consented.join(", ")
        },
        c: CustomerView::of(&f, String::new(), &money),
        risk_note,
        score_chart: views::sparkline("Churn probability at each scoring run", &points),
        drivers,
        complaints: complaints
            .iter()
            .rev()
            .map(|k| ComplaintView::of(k, today))
            .collect(),
        nudges: nudges.iter().map(EarlierView::of).collect(),
        events: events.iter().map(|e| EventView::of(e, &money)).collect(),
    };
    render(&page)
}

/// Where a complaint stands, in words: open (reopened), past the ombudsman point, resolved.
pub(super) fn complaint_state(k: &crate::store::Complaint, today: chrono::NaiveDate) -> String {
    if !k.open {
        return "resolved".into();
    }
    let mut s = if k.reopened > 0 {
        "open (reopened)".to_owned()
    } else {
        "open".to_owned()
    };
    if k.past_ombudsman_point(today) {
        s.push_str(", past the ombudsman's eight weeks");
    }
    s
}
