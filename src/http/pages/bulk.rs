//! Bulk decisions: the queue's filter or a selection, confirmed before anything changes.

use super::*;

#[derive(Template)]
#[template(path = "bulk.html")]
pub(super) struct BulkPage {
    nav: Nav,
    action: &'static str,
    verb: &'static str,
    verb_title: &'static str,
    count: i64,
    count_words: String,
    max_id: i64,
    max: i64,
    too_many: bool,
    selection: String,
    filter_fields: Vec<(&'static str, String)>,
    back: String,
}

pub(super) fn bulk_action(raw: Option<&str>) -> Result<&'static str, Problem> {
    match raw {
        Some("approve") => Ok("approve"),
        Some("reject") => Ok("reject"),
        other => Err(Problem::bad_request(
            "invalid_parameter",
            format!(
                "action: {:?} is not a bulk action; use approve or reject",
                other.unwrap_or("")
            ),
        )),
    }
}

pub(super) fn describe(pairs: &[(&'static str, String)]) -> String {
    if pairs.is_empty() {
        return "every proposed nudge".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{} = {v}", views::label(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn bulk_confirm(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    require(&s.principal, Role::Reviewer, "decide on nudges")?;
    let mut accepted = QUEUE_PARAMS.to_vec();
    accepted.push("action");
    let pairs = query::pairs(raw.as_deref(), &accepted)?;
    let action = bulk_action(query::get(&pairs, "action"))?;
    let lq = query::queue_query(&pairs)?;
    if lq.filter.status != "proposed" {
        return Err(Problem::bad_request(
            "invalid_parameter",
            "status: only proposed nudges can be decided; a decision is never overwritten",
        )
        .into());
    }
    let (count, max_id) = state.ctx.db.count_selection(&lq.filter, None).await?;
    let fields = query::filter_pairs(&lq.filter);
    let (verb, verb_title) = if action == "approve" {
        ("approve", "Approve")
    } else {
        ("reject", "Reject")
    };
    let page = BulkPage {
        nav: nav(&s, "queue"),
        action,
        verb,
        verb_title,
        count,
        count_words: format!(
            "{} {}",
            views::count(count),
            if count == 1 { "nudge" } else { "nudges" }
        ),
        max_id: max_id.unwrap_or(0),
        max: BULK_MAX,
        too_many: count > BULK_MAX,
        selection: describe(&fields),
        back: format!("/queue?{}", query::encode(&fields)),
        filter_fields: fields,
    };
    render(&page)
}

pub(super) async fn bulk_apply(State(state): State<AppState>, form: CsrfForm) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Reviewer, "decide on nudges")?;
    let action = bulk_action(form.get("action"))?;
    let lq = query::queue_query(&form.fields)?;
    if lq.filter.status != "proposed" {
        return Err(Problem::bad_request(
            "invalid_parameter",
            "status: only proposed nudges can be decided",
        )
        .into());
    }
    let max_id = query::integer("max_id", form.get("max_id").unwrap_or(""), 0, i64::MAX)?;
    let expected = query::integer("expected", form.get("expected").unwrap_or(""), 0, BULK_MAX)?;
    let decision = match action {
        "approve" => Decision::Approve,
        _ => Decision::Reject {
            reason: decide::reason(form.get("reason"))?,
        },
    };
    let decided = state
        .ctx
        .db
        .decide_selection(&lq.filter, max_id, &decision, &s.principal.name, "web")
        .await?;
    state.decisions_changed();
    tracing::info!(user = %s.principal.name, decision = decision.status(), count = decided.len(), "bulk decision");
    let mut p = query::filter_pairs(&lq.filter);
    p.push(("done", decision.status().to_owned()));
    p.push(("count", decided.len().to_string()));
    let skipped = expected - decided.len() as i64;
    if skipped > 0 {
        p.push(("skipped", skipped.to_string()));
    }
    Ok(see_other(&format!("/queue?{}", query::encode(&p))))
}
