//! The pages marketing uses: sign in, the queue, a nudge with its actions, bulk decisions
//! with a confirmation, the overview, the model report, the audit log and (for admins)
//! users. Server-rendered with askama; no JavaScript.
//!
//! Every form that changes something is read through [`CsrfForm`], and every change checks
//! the person's role here before the store is asked.

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Days;

use super::AppState;
use super::auth::{
    self, CsrfForm, LOGIN_COOKIE, PageUser, SESSION_COOKIE, Session, body_bytes, cookie, field,
    parse_form, random_hex, require, same_secret, session_of, set_cookie, sha256_hex,
};
use super::decide::{self, Input};
use super::error::{PageError, Problem};
use super::query::{self, QUEUE_PARAMS};
use super::views::{self, DriverView};
use crate::domain::Channel;
use crate::store::{BULK_MAX, Decision, Refused, ReviewNudge, Role, STATUSES};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/queue") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/queue", get(queue))
        .route("/queue/bulk", get(bulk_confirm).post(bulk_apply))
        .route("/nudges/{id}", get(nudge))
        .route("/customers", get(find_customer))
        .route("/customers/{id}", get(customer))
        .route("/nudges/{id}/decide", post(decide))
        .route("/overview", get(overview))
        .route("/overview/budgets", post(set_budget))
        .route("/model", get(model))
        .route("/audit", get(audit))
        .route("/jobs", get(jobs))
        .route("/users", get(users).post(add_user))
        .route("/users/{name}", post(update_user))
        .route("/tokens/{id}/revoke", post(revoke_token))
}

type PageResult = Result<Response, PageError>;

/// The navigation bar's facts, on every page.
struct Nav {
    user: String,
    role: &'static str,
    csrf: String,
    is_admin: bool,
    active: &'static str,
}

fn nav(s: &Session, active: &'static str) -> Nav {
    Nav {
        user: s.principal.name.clone(),
        role: s.principal.role.as_str(),
        csrf: s.csrf.clone(),
        is_admin: s.principal.role.can_manage_users(),
        active,
    }
}

fn render<T: Template>(t: &T) -> PageResult {
    let html = t
        .render()
        .map_err(|e| anyhow::anyhow!("rendering a page: {e}"))?;
    Ok(Html(html).into_response())
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A local path to return to after signing in; anything else becomes the queue.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.to_owned()
        }
        _ => "/queue".to_owned(),
    }
}

fn parse_id(what: &str, raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Problem::not_found(format!(
            "there is no {what} {raw:?}; ids are positive whole numbers"
        ))
    })
}

// ---------------------------------------------------------------- signing in and out

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    name: String,
    error: Option<String>,
}

/// The sign-in form, with a fresh token in both the form and a cookie (double submit:
/// there is no session yet to tie it to).
fn login_form(
    state: &AppState,
    status: StatusCode,
    next: String,
    name: String,
    error: Option<String>,
) -> PageResult {
    let token = random_hex(16);
    let page = LoginPage {
        csrf: token.clone(),
        next,
        name,
        error,
    };
    let mut r = render(&page)?;
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &token,
            "/login",
            3600,
            state.ctx.config.http.cookie_secure,
        ),
    );
    Ok(r)
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["next"]).unwrap_or_default();
    let next = safe_next(query::get(&pairs, "next"));
    if session_of(&state, &headers).await?.is_some() {
        return Ok(see_other(&next));
    }
    login_form(&state, StatusCode::OK, next, String::new(), None)
}

async fn login(State(state): State<AppState>, req: Request) -> PageResult {
    let headers = req.headers().clone();
    let address = auth::client_address(&req, state.ctx.config.http.trust_forwarded_for);
    let bytes = body_bytes(req, &state).await?;
    let fields = parse_form(&bytes)?;
    let sent = field(&fields, "csrf").unwrap_or_default();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(sent, &expected) {
        return Err(Problem::csrf().into());
    }
    let next = safe_next(field(&fields, "next"));
    let name = field(&fields, "name").unwrap_or_default().to_owned();
    let password = fields
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Throttled per name (a user's or not: the answer never tells which) and per address;
    // a locked name or address is refused before any password is checked.
    let cfg = &state.ctx.config.http;
    let keys = [
        (format!("user:{name}"), cfg.login_max_failures),
        (
            format!("addr:{address}"),
            cfg.login_max_failures_per_address,
        ),
    ];
    for (key, _) in &keys {
        if let Some(until) = state.ctx.db.login_locked_until(key).await? {
            tracing::info!(name = %name, %address, key = %key, "sign-in refused: locked");
            return locked_form(&state, next, name, until);
        }
    }
    let creds = state.ctx.db.user_credentials(&name).await?;
    let hash = creds
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| auth::decoy_hash().to_owned());
    // argon2 takes tens of milliseconds of CPU: off the async threads.
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match creds {
        Some((user, _)) if matches && !user.disabled => user,
        _ => {
            tracing::info!(name = %name, %address, "sign-in refused");
            let mut locked = None;
            for (key, max) in &keys {
                let until = state
                    .ctx
                    .db
                    .record_login_failure(
                        key,
                        *max,
                        cfg.login_window_minutes as i64 * 60,
                        cfg.login_lockout_minutes as i64 * 60,
                    )
                    .await?;
                if let Some(until) = until {
                    tracing::warn!(key = %key, %address, until, failures = max, "sign-in locked after repeated failures");
                    let detail = serde_json::json!({
                        "failures": max,
                        "window_minutes": cfg.login_window_minutes,
                        "locked_until": until,
                        "address": address,
                    });
                    state
                        .ctx
                        .db
                        .audit("system", "login.locked", key, &detail)
                        .await?;
                    locked = Some(until);
                }
            }
            if let Some(until) = locked {
                return locked_form(&state, next, name, until);
            }
            return login_form(
                &state,
                StatusCode::UNAUTHORIZED,
                next,
                name,
                Some("That name and password do not match an active user.".into()),
            );
        }
    };
    let raw = random_hex(32);
    let hours = state.ctx.config.http.session_hours as i64;
    let max_age = hours * 3600;
    state
        .ctx
        .db
        .create_session(
            user.id,
            &sha256_hex(&raw),
            &random_hex(32),
            crate::store::now_secs() + max_age,
        )
        .await?;
    state
        .ctx
        .db
        .clear_login_failures(&format!("user:{name}"))
        .await?;
    tracing::info!(user = %user.name, "signed in");
    let secure = state.ctx.config.http.cookie_secure;
    let mut r = see_other(&next);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &raw, "/", max_age, secure),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/login", 0, secure),
    );
    Ok(r)
}

/// The sign-in form answered 429 while a name or address is locked, saying until when
/// and how to lift it, with `Retry-After`.
fn locked_form(state: &AppState, next: String, name: String, until: i64) -> PageResult {
    let now = crate::store::now_secs();
    let minutes = ((until - now).max(0) + 59) / 60;
    let at = chrono::DateTime::from_timestamp(until, 0)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default();
    let mut r = login_form(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        next,
        name,
        Some(format!(
            "Too many failed sign-ins: signing in with this name or from this address is paused until {at} (about {minutes} min). An admin can lift it sooner with `attune users unlock NAME`."
        )),
    )?;
    if let Ok(v) = header::HeaderValue::from_str(&(until - now).max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(r)
}

async fn logout(State(state): State<AppState>, form: CsrfForm) -> PageResult {
    state.ctx.db.delete_session(&form.session.id_hash).await?;
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            "",
            "/",
            0,
            state.ctx.config.http.cookie_secure,
        ),
    );
    Ok(r)
}

// ---------------------------------------------------------------- the queue

struct Opt {
    value: String,
    label: String,
    selected: bool,
}

fn options(values: impl IntoIterator<Item = String>, selected: Option<&str>) -> Vec<Opt> {
    let mut out: Vec<Opt> = values
        .into_iter()
        .map(|v| Opt {
            selected: selected == Some(v.as_str()),
            label: views::label(&v),
            value: v,
        })
        .collect();
    if let Some(s) = selected
        && !out.iter().any(|o| o.value == s)
    {
        out.push(Opt {
            value: s.to_owned(),
            label: views::label(s),
            selected: true,
        });
    }
    out
}

struct RuleCount {
    rule: String,
    label: String,
    count: String,
    link: String,
    active: bool,
}

struct QueueRow {
    id: i64,
    customer: String,
    customer_link: String,
    why: String,
    rule: String,
    stage: String,
    channel: String,
    risk_band: String,
    segment: String,
    value: String,
    probability: String,
    queued: String,
    status: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    nav: Nav,
    notice: Option<String>,
    status_words: String,
    status_is_proposed: bool,
    statuses: Vec<Opt>,
    rules: Vec<Opt>,
    stages: Vec<Opt>,
    channels: Vec<Opt>,
    risk_bands: Vec<Opt>,
    segments: Vec<Opt>,
    from: String,
    to: String,
    rule_counts: Vec<RuleCount>,
    rows: Vec<QueueRow>,
    limit: i64,
    next_link: Option<String>,
    first_link: Option<String>,
    export_link: String,
    filter_fields: Vec<(&'static str, String)>,
    can_decide: bool,
}

fn why_of(n: &ReviewNudge) -> String {
    let why = n
        .reason
        .0
        .get("why")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut s: String = why.chars().take(140).collect();
    if why.chars().count() > 140 {
        s.push('…');
    }
    s
}

fn dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "—".into())
}

async fn queue(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let money = state.ctx.config.currency();
    let mut accepted = QUEUE_PARAMS.to_vec();
    accepted.extend(["done", "count", "skipped"]);
    let pairs = query::pairs(raw.as_deref(), &accepted)?;
    let lq = query::queue_query(&pairs)?;
    let f = &lq.filter;
    let (rows, next) = state.ctx.db.queue_page(f, lq.cursor, lq.limit).await?;
    let counts = state.rule_counts(&f.status).await?;
    let labels = state.filter_values().await?;
    let base = query::filter_pairs(f);
    let link_with = |extra: Vec<(&'static str, String)>| {
        let mut p = base.clone();
        p.extend(extra);
        format!("/queue?{}", query::encode(&p))
    };
    let limit_pair = || {
        (lq.limit != query::DEFAULT_LIMIT)
            .then(|| ("limit", lq.limit.to_string()))
            .into_iter()
            .collect::<Vec<_>>()
    };
    let next_link = next.map(|c| {
        let mut extra = vec![("cursor", c.encode())];
        extra.extend(limit_pair());
        link_with(extra)
    });
    let first_link = lq.cursor.map(|_| link_with(limit_pair()));
    let rule_counts = counts
        .iter()
        .map(|(rule, n)| {
            let mut p: Vec<(&'static str, String)> =
                base.iter().filter(|(k, _)| *k != "rule").cloned().collect();
            p.push(("rule", rule.clone()));
            RuleCount {
                rule: rule.clone(),
                label: views::label(rule),
                count: views::count(*n),
                link: format!("/queue?{}", query::encode(&p)),
                active: f.rule.as_deref() == Some(rule.as_str()),
            }
        })
        .collect();
    let notice = queue_notice(&pairs);
    let page = QueuePage {
        nav: nav(&s, "queue"),
        notice,
        status_words: f.status.clone(),
        status_is_proposed: f.status == "proposed",
        statuses: options(STATUSES.iter().map(|s| s.to_string()), Some(&f.status)),
        rules: options(counts.iter().map(|(r, _)| r.clone()), f.rule.as_deref()),
        stages: options(labels.stages.clone(), f.stage.as_deref()),
        channels: options(
            Channel::ALL.iter().map(|c| c.as_str().to_owned()),
            f.channel.as_deref(),
        ),
        risk_bands: options(labels.risk_bands.clone(), f.risk_band.as_deref()),
        segments: options(labels.segments.clone(), f.segment.as_deref()),
        from: f.from.map(|d| d.to_string()).unwrap_or_default(),
        to: f.to.map(|d| d.to_string()).unwrap_or_default(),
        rule_counts,
        rows: rows
            .iter()
            .map(|n| QueueRow {
                id: n.id,
                customer: n.external_id.clone(),
                customer_link: views::path_segment(&n.external_id),
                why: why_of(n),
                rule: views::label(&n.kind),
                stage: views::label(&n.stage),
                channel: n.channel.clone(),
                risk_band: dash(&n.risk_band),
                segment: n
                    .segment
                    .as_deref()
                    .map(views::label)
                    .unwrap_or_else(|| "—".into()),
                value: views::money_opt(&money, n.expected_value),
                probability: views::percent_opt(n.probability),
                queued: views::time(n.created_at),
                status: n.status.clone(),
            })
            .collect(),
        limit: lq.limit,
        next_link,
        first_link,
        export_link: format!("/v1/nudges/export.csv?{}", query::encode(&base)),
        filter_fields: base.clone(),
        can_decide: s.principal.role.can_decide(),
    };
    render(&page)
}

fn queue_notice(pairs: &[(String, String)]) -> Option<String> {
    let done = query::get(pairs, "done")?;
    let verb = match done {
        "approved" | "rejected" => done,
        _ => return None,
    };
    let n: i64 = query::get(pairs, "count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let skipped: i64 = query::get(pairs, "skipped")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut s = format!(
        "{} {} {verb}.",
        views::count(n),
        if n == 1 { "nudge" } else { "nudges" }
    );
    if skipped > 0 {
        s.push_str(&format!(
            " {} had been decided by someone else in the meantime and were left as they were.",
            views::count(skipped)
        ));
    }
    Some(s)
}

// ---------------------------------------------------------------- bulk decisions

#[derive(Template)]
#[template(path = "bulk.html")]
struct BulkPage {
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

fn bulk_action(raw: Option<&str>) -> Result<&'static str, Problem> {
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

fn describe(pairs: &[(&'static str, String)]) -> String {
    if pairs.is_empty() {
        return "every proposed nudge".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{} = {v}", views::label(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bulk_confirm(
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

async fn bulk_apply(State(state): State<AppState>, form: CsrfForm) -> PageResult {
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

// ---------------------------------------------------------------- one customer

#[derive(Template)]
#[template(path = "customer.html")]
struct CustomerPage {
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
async fn find_customer(
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
async fn customer(
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
fn complaint_state(k: &crate::store::Complaint, today: chrono::NaiveDate) -> String {
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

// ---------------------------------------------------------------- one nudge

struct NudgeView {
    id: i64,
    rule: String,
    customer: String,
    status: String,
    channel: String,
    stage: String,
    probability: String,
    risk_band: String,
    value: String,
    segment: String,
    queued: String,
    send_after: String,
    expires_at: String,
    decided: String,
}

struct CustomerView {
    external_id: String,
    plan: String,
    monthly: String,
    contract: String,
    since: String,
    preferred_channel: String,
    contact: String,
}

struct ComplaintView {
    opened: String,
    state: String,
    days: String,
    resolved: String,
    satisfaction: String,
}

impl ComplaintView {
    fn of(k: &crate::store::Complaint, today: chrono::NaiveDate) -> Self {
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

struct EarlierView {
    id: i64,
    rule: String,
    queued: String,
    status: String,
    outcome: String,
}

impl EarlierView {
    fn of(e: &ReviewNudge) -> Self {
        EarlierView {
            id: e.id,
            rule: views::label(&e.kind),
            queued: views::day(e.created_at),
            status: e.status.clone(),
            outcome: decided_words(e),
        }
    }
}

struct EventView {
    when: String,
    what: String,
    value: String,
}

impl EventView {
    fn of(e: &crate::store::TimelineEvent, money: &crate::domain::Currency) -> Self {
        EventView {
            when: views::time(e.occurred_at),
            what: views::words(&e.kind),
            value: views::event_value(money, &e.kind, e.value),
        }
    }
}

impl CustomerView {
    /// The customer's profile; `contact` is the person a nudge addresses, if any.
    fn of(
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

struct HistoryView {
    when: String,
    actor: String,
    action: String,
    note: String,
}

#[derive(Template)]
#[template(path = "nudge.html")]
struct NudgePage {
    nav: Nav,
    notice: Option<String>,
    customer_link: String,
    n: NudgeView,
    c: CustomerView,
    envelope: String,
    effective_message: Option<String>,
    planned_message_if_edited: Option<String>,
    edited_by: String,
    edited_at: String,
    can_edit: bool,
    why: String,
    drivers: Vec<DriverView>,
    can_decide: bool,
    is_proposed: bool,
    tomorrow: String,
    default_snooze: String,
    score_chart: String,
    complaints: Vec<ComplaintView>,
    earlier: Vec<EarlierView>,
    events: Vec<EventView>,
    history: Vec<HistoryView>,
}

fn decided_words(n: &ReviewNudge) -> String {
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

fn envelope(n: &ReviewNudge) -> String {
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

async fn nudge(
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

async fn decide(
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

// ---------------------------------------------------------------- overview

struct WeekRow {
    stage: String,
    counts: Vec<String>,
    total: String,
}

struct ProblemView {
    customer: String,
    since: String,
    monthly: String,
}

/// One rule's line of the review budgets: what it proposes a week and what its budget lets
/// through.
struct BudgetRow {
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
struct OverviewPage {
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
}

/// One rule's row of the uplift table (`attune report uplift`'s figures).
struct UpliftView {
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
async fn uplift_section(state: &AppState, horizon: u32) -> anyhow::Result<Vec<UpliftView>> {
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
fn run_note(o: &crate::store::Overview) -> String {
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
async fn budget_rows(state: &AppState, week: i64) -> anyhow::Result<Vec<BudgetRow>> {
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
async fn set_budget(State(state): State<AppState>, form: CsrfForm) -> PageResult {
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

async fn overview(
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
    };
    render(&page)
}

// ---------------------------------------------------------------- the model

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    nav: Nav,
    title: String,
    text: String,
}

async fn model(State(state): State<AppState>, PageUser(s): PageUser) -> PageResult {
    let champion = state.ctx.db.champion_model().await?;
    let model = state.ctx.scoring_model().await?;
    let source = match (&champion, &state.ctx.config.scoring.model) {
        (_, Some(path)) => format!("the configured model file {}", path.display()),
        (Some(c), None) => format!("the registry's champion {}", c.version),
        (None, None) => "the shipped Telco model (no model has been trained here yet)".into(),
    };
    let Some(eval) = model.evaluation.as_ref() else {
        return render(&MessagePage {
            nav: nav(&s, "model"),
            title: format!("Model {}", model.version),
            text: format!(
                "attune scores with {source}, which was trained without held-out rows, so there is no evaluation to report. Train with `attune train` (from history) to get one."
            ),
        });
    };
    let html =
        crate::report::render_html(&model, eval, &format!("Champion model {}", model.version));
    let bar = format!(
        "<div style=\"background:#1d2330;color:#dfe6f3;padding:8px 24px;font:14px system-ui,sans-serif\">\
         <a href=\"/queue\" style=\"color:#fff;font-weight:700;text-decoration:none\">attune review desk</a> · \
         <a href=\"/queue\" style=\"color:#dfe6f3\">Queue</a> · <a href=\"/overview\" style=\"color:#dfe6f3\">Overview</a> · \
         <a href=\"/audit\" style=\"color:#dfe6f3\">Audit log</a> · scoring with {}</div>",
        crate::report::escape(&source)
    );
    Ok(Html(html.replacen("<body>", &format!("<body>{bar}"), 1)).into_response())
}

// ---------------------------------------------------------------- audit log

struct AuditView {
    id: i64,
    when: String,
    actor: String,
    action: String,
    subject: String,
    link: Option<String>,
    /// What happened, in a sentence.
    what: String,
    /// The entry's details in words, behind a toggle.
    details: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Nav,
    status: String,
    statuses: Vec<Opt>,
    counts: Vec<(String, String, i64)>,
    leases: Vec<(String, String, String)>,
    runs: Vec<JobView>,
}

struct JobView {
    id: i64,
    kind: String,
    key: String,
    attempt: i32,
    status: String,
    worker: String,
    due: String,
    lag: String,
    took: String,
    note: String,
}

/// The daemon's jobs, as `attune jobs` shows them: executions by kind and status, leases
/// held now, the latest executions with their lag, outcome and error.
async fn jobs(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["status"])?;
    let status = query::get(&pairs, "status");
    if let Some(v) = status
        && !crate::store::JOB_STATUSES.contains(&v)
    {
        return Err(Problem::bad_request(
            "invalid_parameter",
            format!(
                "status: {v:?} is not a job status; expected one of {}",
                crate::store::JOB_STATUSES.join(", ")
            ),
        )
        .into());
    }
    let db = &state.ctx.db;
    let counts = db.job_run_counts().await?;
    let leases = db.live_leases().await?;
    let runs = db.job_runs(status, 100).await?;
    let page = JobsPage {
        nav: nav(&s, "jobs"),
        status: status.unwrap_or_default().to_owned(),
        statuses: options(
            crate::store::JOB_STATUSES.iter().map(|s| s.to_string()),
            status,
        ),
        counts,
        leases: leases
            .into_iter()
            .map(|l| (l.name, l.holder, views::time(l.expires_at)))
            .collect(),
        runs: runs
            .iter()
            .map(|r| JobView {
                id: r.id,
                kind: r.kind.clone(),
                key: r.job_key.clone(),
                attempt: r.attempt,
                status: r.status.clone(),
                worker: r.worker.clone().unwrap_or_default(),
                due: views::time(r.due_ms / 1000),
                lag: r
                    .lag_ms()
                    .map(|l| format!("{:.1} s", l.max(0) as f64 / 1000.0))
                    .unwrap_or_default(),
                took: match (r.started_ms, r.finished_at) {
                    (Some(s), Some(f)) => format!("{} s", (f - s / 1000).max(0)),
                    _ => String::new(),
                },
                note: r
                    .error
                    .clone()
                    .or_else(|| r.detail.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    actor: String,
    action: String,
    subject: String,
    entries: Vec<AuditView>,
    older_link: Option<String>,
}

const AUDIT_PAGE: i64 = 100;

async fn audit(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["actor", "action", "subject", "before"])?;
    let before = query::get(&pairs, "before")
        .map(|v| query::integer("before", v, 1, i64::MAX))
        .transpose()?;
    let actor = query::get(&pairs, "actor");
    let action = query::get(&pairs, "action");
    let subject = query::get(&pairs, "subject");
    let entries = state
        .ctx
        .db
        .audit_page(before, AUDIT_PAGE, actor, action, subject)
        .await?;
    let older_link = (entries.len() as i64 == AUDIT_PAGE).then(|| {
        let mut p: Vec<(&str, String)> = Vec::new();
        for (k, v) in [("actor", actor), ("action", action), ("subject", subject)] {
            if let Some(v) = v {
                p.push((k, v.to_owned()));
            }
        }
        p.push((
            "before",
            entries.last().map(|e| e.id).unwrap_or(0).to_string(),
        ));
        format!("/audit?{}", query::encode(&p))
    });
    let page = AuditPage {
        nav: nav(&s, "audit"),
        actor: actor.unwrap_or_default().to_owned(),
        action: action.unwrap_or_default().to_owned(),
        subject: subject.unwrap_or_default().to_owned(),
        entries: entries
            .iter()
            .map(|e| {
                let d = &e.detail.0;
                AuditView {
                    what: views::audit_sentence(&e.action, &e.subject, d),
                    details: views::detail_lines(d),
                    id: e.id,
                    when: views::time(e.at),
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    link: e
                        .subject
                        .strip_prefix("nudge:")
                        .filter(|id| id.parse::<i64>().is_ok())
                        .map(|id| format!("/nudges/{id}")),
                    subject: e.subject.clone(),
                }
            })
            .collect(),
        older_link,
    };
    render(&page)
}

// ---------------------------------------------------------------- users

struct UserView {
    name: String,
    role: String,
    disabled: bool,
    since: String,
}

struct TokenView {
    id: i64,
    prefix: String,
    user: String,
    created: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    notice: Option<String>,
    users: Vec<UserView>,
    roles: Vec<&'static str>,
    tokens: Vec<TokenView>,
}

async fn users(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    require(&s.principal, Role::Admin, "manage users")?;
    let pairs = query::pairs(raw.as_deref(), &["done"])?;
    let notice = query::get(&pairs, "done").and_then(|d| match d {
        "added" => Some("The user was added.".to_owned()),
        "updated" => Some("The user was updated.".to_owned()),
        "revoked" => Some("The token was revoked.".to_owned()),
        _ => None,
    });
    let users = state.ctx.db.users().await?;
    let tokens = state.ctx.db.api_tokens().await?;
    let page = UsersPage {
        nav: nav(&s, "users"),
        notice,
        users: users
            .iter()
            .map(|u| UserView {
                name: u.name.clone(),
                role: u.role.clone(),
                disabled: u.disabled,
                since: views::day(u.created_at),
            })
            .collect(),
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        tokens: tokens
            .iter()
            .map(|t| TokenView {
                id: t.id,
                prefix: t.prefix.clone(),
                user: t.user_name.clone(),
                created: views::day(t.created_at),
                last_used: views::time_opt(t.last_used_at),
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
    };
    render(&page)
}

fn role_field(raw: Option<&str>) -> Result<Role, Problem> {
    raw.unwrap_or_default()
        .parse::<Role>()
        .map_err(|e| Problem::unprocessable(format!("role: {e}")))
}

async fn add_user(State(state): State<AppState>, form: CsrfForm) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Admin, "manage users")?;
    let name = form.get("name").unwrap_or_default().to_owned();
    crate::store::validate_user_name(&name)
        .map_err(|e| Problem::unprocessable(format!("name: {e}")))?;
    let role = role_field(form.get("role"))?;
    let password = form
        .fields
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    auth::validate_password(&password)
        .map_err(|e| Problem::unprocessable(format!("password: {e}")))?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))??;
    state
        .ctx
        .db
        .create_user(&name, role, &hash, &s.principal.name)
        .await?;
    Ok(see_other("/users?done=added"))
}

async fn update_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Admin, "manage users")?;
    let role = role_field(form.get("role"))?;
    let disabled = match form.get("state") {
        Some("active") | None => false,
        Some("disabled") => true,
        Some(other) => {
            return Err(Problem::unprocessable(format!(
                "state: {other:?} is not a state; use active or disabled"
            ))
            .into());
        }
    };
    if name == s.principal.name && (role != Role::Admin || disabled) {
        return Err(Problem::unprocessable(
            "you cannot take away your own admin role or disable yourself; ask another admin",
        )
        .into());
    }
    match state
        .ctx
        .db
        .update_user(&name, Some(role), Some(disabled), &s.principal.name)
        .await?
    {
        Some(_) => Ok(see_other("/users?done=updated")),
        None => Err(Problem::not_found(format!("there is no user {name:?}")).into()),
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Admin, "manage users")?;
    let id = parse_id("token", &raw_id)?;
    if state.ctx.db.revoke_api_token(id, &s.principal.name).await? {
        Ok(see_other("/users?done=revoked"))
    } else {
        Err(Problem::not_found(format!("there is no live token {id}")).into())
    }
}

/// Why a decision was refused, for pages and the API alike.
pub(crate) fn refused_words(refused: &Refused) -> String {
    match refused {
        Refused::NotFound(ids) => format!("there is no nudge {}", join(ids)),
        Refused::NotProposed(taken) => {
            let list: Vec<String> = taken
                .iter()
                .map(|(id, st)| format!("{id} ({st})"))
                .collect();
            format!(
                "these nudges are no longer proposed, so nothing was changed (a decision is never overwritten): {}",
                list.join(", ")
            )
        }
    }
}

fn join(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
