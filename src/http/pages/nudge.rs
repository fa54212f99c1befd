//! One nudge: the customer behind it, why it was queued, its history, the decision form,
//! and once approved its delivery (with retry and cancel for reviewers).

use super::*;

pub(super) struct NudgeView {
    pub(super) id: i64,
    pub(super) rule: String,
    pub(super) customer: String,
    pub(super) status: String,
    pub(super) channel: String,
    pub(super) stage: String,
    pub(super) probability: String,
    pub(super) risk_band: String,
    pub(super) value: String,
    pub(super) segment: String,
    pub(super) queued: String,
    pub(super) send_after: String,
    pub(super) expires_at: String,
    pub(super) decided: String,
}

pub(super) struct CustomerView {
    pub(super) external_id: String,
    pub(super) plan: String,
    pub(super) monthly: String,
    pub(super) contract: String,
    pub(super) since: String,
    pub(super) preferred_channel: String,
    pub(super) contact: String,
}

pub(super) struct ComplaintView {
    pub(super) opened: String,
    pub(super) state: String,
    pub(super) days: String,
    pub(super) resolved: String,
    pub(super) satisfaction: String,
}

impl ComplaintView {
    pub(super) fn of(k: &crate::store::Complaint, today: chrono::NaiveDate) -> Self {
        ComplaintView {
            opened: views::time(k.opened_at),
            state: complaint_state(k, today),
            days: views::count(k.days_open(today)),
            resolved: views::time_opt(k.resolved_at),
            satisfaction: k
                .satisfaction
                .map(|v| format!("{v:.0} of 5"))
                .unwrap_or_else(|| "—".into()),
        }
    }
}

pub(super) struct EarlierView {
    pub(super) id: i64,
    pub(super) rule: String,
    pub(super) queued: String,
    pub(super) status: String,
    pub(super) outcome: String,
}

impl EarlierView {
    pub(super) fn of(e: &ReviewNudge) -> Self {
        EarlierView {
            id: e.id,
            rule: views::label(&e.kind),
            queued: views::day(e.created_at),
            status: e.status.clone(),
            outcome: decided_words(e),
        }
    }
}

pub(super) struct EventView {
    pub(super) when: String,
    pub(super) what: String,
    pub(super) value: String,
}

impl EventView {
    pub(super) fn of(e: &crate::store::TimelineEvent, money: &crate::domain::Currency) -> Self {
        EventView {
            when: views::time(e.occurred_at),
            what: views::words(&e.kind),
            value: views::event_value(money, &e.kind, e.value),
        }
    }
}

impl CustomerView {
    /// The customer's profile; `contact` is the person a nudge addresses, if any.
    pub(super) fn of(
        f: &crate::store::CustomerFacts,
        contact: String,
        money: &crate::domain::Currency,
    ) -> Self {
        CustomerView {
            external_id: f.external_id.clone(),
            plan: f.plan.clone(),
            monthly: views::money(money, f.monthly_charge),
            contract: match f.contract_end {
                Some(end) => format!("{}, ends {end}", views::words(&f.contract_type)),
                None => views::words(&f.contract_type),
            },
            since: match f.churned_on {
                Some(c) => format!("{} (left {c})", f.signup_date),
                None => f.signup_date.to_string(),
            },
            preferred_channel: f.preferred_channel.clone(),
            contact,
        }
    }
}

/// An approved nudge's delivery, in words.
pub(super) struct DeliveryView {
    /// The status as stored, for the badge's class.
    pub(super) status: String,
    /// The status as a word for the badge (`dead` reads `failed`).
    pub(super) badge: String,
    pub(super) state: String,
    pub(super) attempts: String,
    pub(super) channel: String,
    /// The configured channel that last took it.
    pub(super) route: String,
    /// When a pending delivery is due.
    pub(super) due: String,
    pub(super) reason: String,
    /// The receiver's answer to the last failed attempt.
    pub(super) answer: String,
    pub(super) sent: String,
    pub(super) outcome: String,
    pub(super) can_retry: bool,
    pub(super) can_cancel: bool,
}

impl DeliveryView {
    pub(super) fn of(d: &crate::store::DeliveryRow, can_decide: bool) -> Self {
        DeliveryView {
            status: d.status.clone(),
            badge: views::delivery_status(&d.status),
            state: views::delivery_state(&d.status, d.attempts.into()),
            attempts: views::counted(d.attempts.into(), "attempt", "attempts"),
            channel: views::label(&d.channel),
            route: d.route.as_deref().map(views::label).unwrap_or_default(),
            due: if d.status == "pending" {
                views::time(d.next_at)
            } else {
                String::new()
            },
            reason: d.reason.clone().unwrap_or_default(),
            answer: d.last_error.clone().unwrap_or_default(),
            sent: d.sent_at.map(views::time).unwrap_or_default(),
            outcome: d.outcome.as_deref().map(views::label).unwrap_or_default(),
            can_retry: can_decide && DeliveryAction::Retry.allowed(&d.status),
            can_cancel: can_decide && DeliveryAction::Cancel.allowed(&d.status),
        }
    }
}

pub(super) struct HistoryView {
    pub(super) when: String,
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) note: String,
}

#[derive(Template)]
#[template(path = "nudge.html")]
pub(super) struct NudgePage {
    pub(super) nav: Nav,
    pub(super) notice: Option<String>,
    pub(super) customer_link: String,
    pub(super) n: NudgeView,
    pub(super) c: CustomerView,
    pub(super) envelope: String,
    pub(super) effective_message: Option<String>,
    pub(super) planned_message_if_edited: Option<String>,
    pub(super) edited_by: String,
    pub(super) edited_at: String,
    pub(super) can_edit: bool,
    pub(super) why: String,
    pub(super) drivers: Vec<DriverView>,
    pub(super) can_decide: bool,
    pub(super) is_proposed: bool,
    pub(super) tomorrow: String,
    pub(super) default_snooze: String,
    pub(super) score_chart: String,
    pub(super) complaints: Vec<ComplaintView>,
    pub(super) earlier: Vec<EarlierView>,
    pub(super) events: Vec<EventView>,
    pub(super) history: Vec<HistoryView>,
    pub(super) delivery: Option<DeliveryView>,
}

pub(super) fn decided_words(n: &ReviewNudge) -> String {
    let Some(by) = &n.decided_by else {
        // Planning's own reasons: held by a guardrail, withdrawn, expired.
        return match (&n.decision_reason, n.status.as_str()) {
            (Some(r), "deferred") => format!("held: {r}"),
            (Some(r), _) => r.clone(),
            (None, _) => String::new(),
        };
    };
    let mut s = format!("{} by {by} at {}", n.status, views::time_opt(n.decided_at));
    if let Some(r) = &n.decision_reason {
        s.push_str(&format!(": {r}"));
    }
    if let Some(u) = n.snoozed_until {
        s.push_str(&format!(" (until {})", views::day(u)));
    }
    s
}

pub(super) fn envelope(n: &ReviewNudge) -> String {
    let to = n
        .contact_name
        .clone()
        .unwrap_or_else(|| format!("customer {}", n.external_id));
    let role = n
        .contact_role
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    match n.channel.as_str() {
        "email" => format!("Email to {to}{role}"),
        "sms" => format!("Text message to {to}{role}"),
        "phone" => format!("Call script for a call to {to}{role}"),
        "post" => format!("Letter to {to}{role}"),
        other => format!("{} to {to}{role}", views::words(other)),
    }
}

pub(super) async fn nudge(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let money = state.ctx.config.currency();
    let id = parse_id("nudge", &raw_id)?;
    let pairs = query::pairs(raw.as_deref(), &["done"])?;
    let db = &state.ctx.db;
    let n = db
        .review_nudge(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no nudge {id}")))?;
    let cid = n.customer_id;
    let facts = db.customer_facts(cid).await?;
    let events = db.customer_events(cid, 15).await?;
    let complaints = db.customer_complaints(cid).await?;
    let earlier = db.customer_nudges(cid, 11).await?;
    let mut scores = db.customer_scores(cid, 24).await?;
    let history = db.audit_for(&format!("nudge:{id}"), 20).await?;
    let delivery = db.delivery(id).await?;
    let mut drivers = views::drivers(
        n.reason
            .0
            .get("drivers")
            .unwrap_or(&serde_json::Value::Null),
    );
    if drivers.is_empty()
        && let Some(latest) = scores.first()
    {
        drivers = views::score_drivers(&latest.drivers);
    }
    scores.reverse();
    let points: Vec<(i64, f64)> = scores
        .iter()
        .map(|p| (p.scored_at, p.probability))
        .collect();
    let today = crate::jobs::today();
    let notice = query::get(&pairs, "done").and_then(|d| match d {
        "approved" => Some("Approved.".to_owned()),
        "rejected" => Some("Rejected.".to_owned()),
        "snoozed" => Some("Snoozed.".to_owned()),
        "edited" => Some("Your edit is saved; the planned message is kept beside it.".to_owned()),
        "unchanged" => Some("The message was not changed.".to_owned()),
        "retried" => Some("The delivery will be tried again now.".to_owned()),
        "cancelled" => Some("The delivery is cancelled; it will not be sent.".to_owned()),
        _ => None,
    });
    let effective = n.effective_message().map(str::to_owned);
    let planned_if_edited = n.edited_message.as_ref().map(|_| {
        n.message
            .clone()
            .unwrap_or_else(|| "(none was planned)".into())
    });
    let c = match &facts {
        Some(f) => CustomerView::of(
            f,
            match (&n.contact_name, &n.contact_role) {
                (Some(name), Some(role)) => format!("{name} ({role})"),
                (Some(name), None) => name.clone(),
                (None, Some(role)) => role.clone(),
                (None, None) => String::new(),
            },
            &money,
        ),
        None => CustomerView {
            external_id: n.external_id.clone(),
            plan: "—".into(),
            monthly: "—".into(),
            contract: "—".into(),
            since: "—".into(),
            preferred_channel: "—".into(),
            contact: String::new(),
        },
    };
    let page = NudgePage {
        nav: nav(&s, "queue"),
        notice,
        customer_link: views::path_segment(&n.external_id),
        envelope: envelope(&n),
        effective_message: effective,
        planned_message_if_edited: planned_if_edited,
        edited_by: n.edited_by.clone().unwrap_or_default(),
        edited_at: views::time_opt(n.edited_at),
        can_edit: s.principal.role.can_decide() && n.status == "proposed",
        why: n
            .reason
            .0
            .get("why")
            .and_then(|v| v.as_str())
            .unwrap_or("—")
            .to_owned(),
        drivers,
        can_decide: s.principal.role.can_decide(),
        is_proposed: n.status == "proposed",
        tomorrow: (today + Days::new(1)).to_string(),
        default_snooze: (today + Days::new(7)).to_string(),
        score_chart: views::sparkline("Churn probability at each scoring run", &points),
        complaints: complaints
            .iter()
            .rev()
            .take(10)
            .map(|c| ComplaintView::of(c, today))
            .collect(),
        earlier: earlier
            .iter()
            .filter(|e| e.id != n.id)
            .take(10)
            .map(EarlierView::of)
            .collect(),
        events: events.iter().map(|e| EventView::of(e, &money)).collect(),
        history: history
            .iter()
            .map(|h| HistoryView {
                when: views::time(h.at),
                actor: h.actor.clone(),
                action: h.action.clone(),
                note: h
                    .detail
                    .0
                    .get("after")
                    .and_then(|a| a.get("decision_reason").or_else(|| a.get("message")))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect(),
        delivery: delivery
            .as_ref()
            .map(|d| DeliveryView::of(d, s.principal.role.can_decide())),
        n: NudgeView {
            id: n.id,
            rule: views::label(&n.kind),
            customer: n.external_id.clone(),
            status: n.status.clone(),
            channel: n.channel.clone(),
            stage: views::label(&n.stage),
            probability: views::percent_opt(n.probability),
            risk_band: n.risk_band.clone().unwrap_or_default(),
            value: views::money_opt(&money, n.expected_value),
            segment: n
                .segment
                .as_deref()
                .map(views::label)
                .unwrap_or_else(|| "—".into()),
            queued: views::time(n.created_at),
            send_after: n.send_after.map(views::time).unwrap_or_default(),
            expires_at: n.expires_at.map(views::time).unwrap_or_default(),
            decided: decided_words(&n),
        },
        c,
    };
    render(&page)
}

pub(super) async fn decide(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let s = &form.session;
    let id = parse_id("nudge", &raw_id)?;
    require(&s.principal, Role::Reviewer, "decide on nudges")?;
    let action = form.get("action").unwrap_or_default();
    let message = form
        .fields
        .iter()
        .find(|(k, _)| k == "message")
        .map(|(_, v)| v.as_str());
    let current = state.ctx.db.review_nudge(id).await?;
    let input = Input {
        field: "action",
        action,
        reason: form.get("reason"),
        until: form.get("until"),
        message,
    };
    let (decision, edit) = decide::interpret(&input, current.as_ref(), crate::jobs::today())?;
    if decision.is_none() && edit.is_none() {
        return Ok(see_other(&format!("/nudges/{id}?done=unchanged")));
    }
    match state
        .ctx
        .db
        .decide_one(
            id,
            decision.as_ref(),
            edit.as_deref(),
            &s.principal.name,
            "web",
        )
        .await?
    {
        Ok(()) => {
            state.decisions_changed();
            let done = decision.as_ref().map(|d| d.status()).unwrap_or("edited");
            Ok(see_other(&format!("/nudges/{id}?done={done}")))
        }
        Err(refused) => Err(decide::refusal(&state, refused).await.into()),
    }
}

/// A reviewer retries a failed or cancelled delivery, or cancels a pending one, from the
/// nudge page; refused (404, 409) with the reason, as the API and the CLI are.
pub(super) async fn delivery_action(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let s = &form.session;
    let id = parse_id("nudge", &raw_id)?;
    require(&s.principal, Role::Reviewer, "retry or cancel deliveries")?;
    let action = DeliveryAction::parse("action", form.get("action").unwrap_or_default())?;
    match decide::change_delivery(&state.ctx.db, id, action, &s.principal.name).await? {
        Ok(_) => Ok(see_other(&format!("/nudges/{id}?done={}", action.done()))),
        Err(refused) => Err(refused.into()),
    }
}
