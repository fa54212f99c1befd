//! The JSON API under `/v1`, documented in [`super::openapi`]: list, read and decide on
//! nudges, export them as CSV, list, read, retry and cancel their deliveries, read scores,
//! models and the audit log.
//!
//! Callers send `Authorization: Bearer TOKEN` (or a browser session, whose unsafe calls
//! carry `X-CSRF-Token`). Errors are `{"error": {"code", "message"}}` with the status
//! that fits; a refused decision changes nothing.

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{ApiUser, Credential, body_bytes};
use super::decide::{self, DeliveryAction, Input};
use super::error::{ApiError, Problem};
use super::query::{self, QUEUE_PARAMS};
use crate::store::{QueueCursor, QueueFilter, ReviewNudge, Role};

/// The most ids one call may decide on.
pub const MAX_IDS: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/me", get(me))
        .route("/v1/nudges", get(list))
        .route("/v1/nudges/export.csv", get(export_csv))
        .route("/v1/nudges/decisions", post(decide_many))
        .route("/v1/nudges/{id}", get(get_one))
        .route("/v1/nudges/{id}/decision", post(decide_one))
        .route("/v1/deliveries", get(deliveries))
        .route("/v1/deliveries/{id}", get(delivery))
        .route("/v1/deliveries/{id}/retry", post(retry_delivery))
        .route("/v1/deliveries/{id}/cancel", post(cancel_delivery))
        .route("/v1/rules", get(rules))
        .route("/v1/scoring-runs", get(runs))
        .route("/v1/scores", get(scores))
        .route("/v1/customers/{customer}/scores", get(customer_scores))
        .route("/v1/models", get(models))
        .route("/v1/models/{version}/report", get(model_report))
        .route("/v1/audit", get(audit))
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

/// A JSON body: `application/json`, within the size limit (413), valid JSON (400) of the
/// expected shape (422, naming the field).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )));
        }
        let bytes = body_bytes(req, state).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError(match e.classify() {
                serde_json::error::Category::Data => Problem::unprocessable(format!("body: {e}")),
                _ => Problem::bad_request("invalid_json", format!("the body is not JSON: {e}")),
            })
        })
    }
}

fn nudge_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Problem::bad_request(
            "invalid_parameter",
            format!("id: {raw:?} is not a nudge id; ids are positive whole numbers"),
        )
    })
}

/// A nudge as the API returns it: its stored fields, and the message the customer would
/// get (the reviewer's edit if there is one).
fn nudge_json(n: &ReviewNudge) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("rule".into(), Value::String(n.kind.clone()));
        m.insert("customer".into(), Value::String(n.external_id.clone()));
        m.insert(
            "effective_message".into(),
            n.effective_message()
                .map_or(Value::Null, |s| Value::String(s.to_owned())),
        );
    }
    v
}

async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

async fn me(user: ApiUser) -> ApiResult {
    ok(json!({
        "name": user.principal.name,
        "role": user.principal.role.as_str(),
        "via": match user.credential { Credential::Token => "token", Credential::Session { .. } => "session" },
    }))
}

async fn list(State(state): State<AppState>, _user: ApiUser, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query::pairs(raw.as_deref(), QUEUE_PARAMS)?;
    query::no_blanks(&pairs)?;
    let lq = query::queue_query(&pairs)?;
    let (rows, next) = state
        .ctx
        .db
        .queue_page(&lq.filter, lq.cursor, lq.limit)
        .await?;
    ok(json!({
        "items": rows.iter().map(nudge_json).collect::<Vec<_>>(),
        "next_cursor": next.map(|c| c.encode()),
        "limit": lq.limit,
    }))
}

async fn get_one(
    State(state): State<AppState>,
    _user: ApiUser,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = nudge_id(&raw)?;
    let n = state
        .ctx
        .db
        .review_nudge(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no nudge {id}")))?;
    ok(nudge_json(&n))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    reason: Option<String>,
    until: Option<String>,
    message: Option<String>,
}

async fn decide_one(
    State(state): State<AppState>,
    user: ApiUser,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<DecisionBody>,
) -> ApiResult {
    user.require(Role::Reviewer, "decide on nudges")?;
    let id = nudge_id(&raw)?;
    let current = state.ctx.db.review_nudge(id).await?;
    let Some(current) = current else {
        return Err(Problem::not_found(format!("there is no nudge {id}")).into());
    };
    let input = Input {
        field: "decision",
        action: body.decision.as_str(),
        reason: body.reason.as_deref(),
        until: body.until.as_deref(),
        message: body.message.as_deref(),
    };
    let (decision, edit) = decide::interpret(&input, Some(&current), crate::jobs::today())?;
    if decision.is_some() || edit.is_some() {
        if let Err(refused) = state
            .ctx
            .db
            .decide_one(
                id,
                decision.as_ref(),
                edit.as_deref(),
                &user.principal.name,
                "api",
            )
            .await?
        {
            return Err(decide::refusal(&state, refused).await.into());
        }
        state.decisions_changed();
    }
    let n = state
        .ctx
        .db
        .review_nudge(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no nudge {id}")))?;
    ok(nudge_json(&n))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyBody {
    ids: Vec<i64>,
    decision: String,
    reason: Option<String>,
    until: Option<String>,
}

async fn decide_many(
    State(state): State<AppState>,
    user: ApiUser,
    JsonBody(body): JsonBody<ManyBody>,
) -> ApiResult {
    user.require(Role::Reviewer, "decide on nudges")?;
    if body.ids.is_empty() || body.ids.len() > MAX_IDS {
        return Err(Problem::unprocessable(format!(
            "ids: give 1 to {MAX_IDS} nudge ids (got {})",
            body.ids.len()
        ))
        .into());
    }
    if let Some(bad) = body.ids.iter().find(|id| **id <= 0) {
        return Err(Problem::unprocessable(format!(
            "ids: {bad} is not a nudge id; ids are positive whole numbers"
        ))
        .into());
    }
    if body.decision == "edit" {
        return Err(Problem::unprocessable(
            "decision: edits are made one nudge at a time, with POST /v1/nudges/{id}/decision",
        )
        .into());
    }
    let input = Input {
        field: "decision",
        action: body.decision.as_str(),
        reason: body.reason.as_deref(),
        until: body.until.as_deref(),
        message: None,
    };
    let (decision, _) = decide::interpret(&input, None, crate::jobs::today())?;
    let Some(decision) = decision else {
        return Err(Problem::unprocessable("decision: use approve, reject or snooze").into());
    };
    match state
        .ctx
        .db
        .decide_all(&body.ids, &decision, &user.principal.name, "api")
        .await?
    {
        Ok(decided) => {
            state.decisions_changed();
            ok(json!({"decided": decided, "status": decision.status()}))
        }
        Err(refused) => Err(decide::refusal(&state, refused).await.into()),
    }
}

/// The CSV columns of an export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "customer",
    "rule",
    "stage",
    "channel",
    "status",
    "risk_band",
    "segment",
    "expected_value",
    "probability",
    "queued_at",
    "recipient",
    "send_after",
    "message",
    "edited",
    "decided_by",
    "decided_at",
    "decision_reason",
    "why",
];

fn iso(secs: Option<i64>) -> String {
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Nudges as CSV rows in [`CSV_COLUMNS`]: the web export and `attune nudges export` write
/// the same file.
pub fn csv_rows(rows: &[ReviewNudge], header: bool) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(CSV_COLUMNS)?;
    }
    for n in rows {
        w.write_record([
            n.id.to_string(),
            n.external_id.clone(),
            n.kind.clone(),
            n.stage.clone(),
            n.channel.clone(),
            n.status.clone(),
            n.risk_band.clone().unwrap_or_default(),
            n.segment.clone().unwrap_or_default(),
            n.expected_value.map(|v| v.to_string()).unwrap_or_default(),
            n.probability.map(|v| v.to_string()).unwrap_or_default(),
            iso(Some(n.created_at)),
            match (&n.contact_name, &n.contact_role) {
                (Some(name), Some(role)) => format!("{name} ({role})"),
                (Some(name), None) => name.clone(),
                _ => format!("customer {}", n.external_id),
            },
            iso(n.send_after),
            n.effective_message().unwrap_or_default().to_owned(),
            n.edited_message.is_some().to_string(),
            n.decided_by.clone().unwrap_or_default(),
            iso(n.decided_at),
            n.decision_reason.clone().unwrap_or_default(),
            n.reason
                .0
                .get("why")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// Every nudge the filters select, as CSV, streamed a thousand rows at a time.
async fn export_csv(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let accepted: Vec<&str> = QUEUE_PARAMS
        .iter()
        .copied()
        .filter(|p| !matches!(*p, "cursor" | "limit"))
        .collect();
    let pairs = query::pairs(raw.as_deref(), &accepted)?;
    query::no_blanks(&pairs)?;
    let filter: QueueFilter = query::queue_query(&pairs)?.filter;
    // The first page is read before answering, so a failing database is a 500, not a
    // truncated file.
    let (first, next) = state.ctx.db.queue_page(&filter, None, 1000).await?;
    let head = csv_rows(&first, true).map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    let db = state.ctx.db.clone();
    let rest = futures::stream::unfold(next, move |cursor: Option<QueueCursor>| {
        let (db, filter) = (db.clone(), filter.clone());
        async move {
            let c = cursor?;
            match db.queue_page(&filter, Some(c), 1000).await {
                Ok((rows, next)) => match csv_rows(&rows, false) {
                    Ok(bytes) => Some((Ok::<_, std::io::Error>(bytes), next)),
                    Err(e) => Some((Err(std::io::Error::other(e)), None)),
                },
                Err(e) => {
                    tracing::error!(error = %e, "exporting nudges stopped part way");
                    Some((Err(std::io::Error::other(e)), None))
                }
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head) });
    let stream = futures::StreamExt::chain(body, rest);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"nudges.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Deliveries of approved nudges, newest change first, with every delivery counted by
/// status.
async fn deliveries(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query::pairs(raw.as_deref(), query::DELIVERY_PARAMS)?;
    query::no_blanks(&pairs)?;
    let q = query::delivery_query(&pairs)?;
    let db = &state.ctx.db;
    let items = db
        .deliveries(q.status, q.channel.as_deref(), q.limit)
        .await?;
    let counts = db.delivery_counts().await?;
    ok(json!({"items": items, "counts": counts, "limit": q.limit}))
}

async fn delivery(
    State(state): State<AppState>,
    _user: ApiUser,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = nudge_id(&raw)?;
    match state.ctx.db.delivery(id).await? {
        Some(d) => ok(json!(d)),
        None => Err(decide::no_delivery(&state.ctx.db, id).await?.into()),
    }
}

async fn change_delivery(
    state: &AppState,
    user: &ApiUser,
    raw: &str,
    action: DeliveryAction,
) -> ApiResult {
    user.require(Role::Reviewer, "retry or cancel deliveries")?;
    let id = nudge_id(raw)?;
    match decide::change_delivery(&state.ctx.db, id, action, &user.principal.name).await? {
        Ok(d) => ok(json!(d)),
        Err(refused) => Err(refused.into()),
    }
}

async fn retry_delivery(
    State(state): State<AppState>,
    user: ApiUser,
    Path(raw): Path<String>,
) -> ApiResult {
    change_delivery(&state, &user, &raw, DeliveryAction::Retry).await
}

async fn cancel_delivery(
    State(state): State<AppState>,
    user: ApiUser,
    Path(raw): Path<String>,
) -> ApiResult {
    change_delivery(&state, &user, &raw, DeliveryAction::Cancel).await
}

async fn rules(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query::pairs(raw.as_deref(), &["status"])?;
    query::no_blanks(&pairs)?;
    let status = query::get(&pairs, "status")
        .map(query::status)
        .transpose()?
        .unwrap_or_else(|| "proposed".into());
    let counts = state.rule_counts(&status).await?;
    ok(json!({
        "status": status,
        "rules": counts.iter().map(|(r, n)| json!({"rule": r, "count": n})).collect::<Vec<_>>(),
    }))
}

async fn runs(State(state): State<AppState>, _user: ApiUser, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query::pairs(raw.as_deref(), &["limit"])?;
    query::no_blanks(&pairs)?;
    let limit = query::get(&pairs, "limit")
        .map(|v| query::integer("limit", v, 1, query::MAX_LIMIT))
        .transpose()?
        .unwrap_or(query::DEFAULT_LIMIT);
    ok(json!({"items": state.ctx.db.scoring_runs(limit).await?}))
}

async fn scores(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query::pairs(
        raw.as_deref(),
        &["run", "min_probability", "cursor", "limit"],
    )?;
    query::no_blanks(&pairs)?;
    let min = match query::get(&pairs, "min_probability") {
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_parameter",
                        format!(
                            "min_probability: {v:?} is not a probability; use a number from 0 to 1"
                        ),
                    )
                })?,
        ),
        None => None,
    };
    let after = query::get(&pairs, "cursor")
        .map(|v| query::integer("cursor", v, 0, i64::MAX))
        .transpose()?;
    let limit = query::get(&pairs, "limit")
        .map(|v| query::integer("limit", v, 1, query::MAX_LIMIT))
        .transpose()?
        .unwrap_or(query::DEFAULT_LIMIT);
    let db = &state.ctx.db;
    let run_id = query::get(&pairs, "run")
        .map(|v| query::integer("run", v, 1, i64::MAX))
        .transpose()?;
    let run = match run_id {
        Some(id) => db
            .scoring_run(id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("there is no scoring run {id}")))?,
        None => db.latest_scoring_run().await?.ok_or_else(|| {
            Problem::not_found("there is no finished scoring run yet; run `attune score`")
        })?,
    };
    let rows = db.run_scores_page(run.id, after, min, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let items: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next = more
        .then(|| items.last().map(|r| r.customer_id.to_string()))
        .flatten();
    ok(json!({"run": run, "items": items, "next_cursor": next}))
}

async fn customer_scores(
    State(state): State<AppState>,
    _user: ApiUser,
    Path(customer): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query::pairs(raw.as_deref(), &["limit"])?;
    query::no_blanks(&pairs)?;
    let limit = query::get(&pairs, "limit")
        .map(|v| query::integer("limit", v, 1, query::MAX_LIMIT))
        .transpose()?
        .unwrap_or(query::DEFAULT_LIMIT);
    // An id no customer can have is simply not found.
    let id = crate::domain::CustomerId::parse(&customer)
        .map_err(|e| Problem::not_found(format!("there is no customer {customer:?} ({e})")))?;
    let c = state
        .ctx
        .db
        .customer_by_external_id(id.as_str())
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no customer {:?}", id.as_str())))?;
    let items = state.ctx.db.customer_scores(c.id, limit).await?;
    ok(json!({"customer": c.external_id, "items": items}))
}

async fn models(State(state): State<AppState>, _user: ApiUser) -> ApiResult {
    let items: Vec<Value> = state
        .ctx
        .db
        .models()
        .await?
        .into_iter()
        .map(|m| {
            json!({
                "version": m.version,
                "created_at": m.created_at,
                "source": m.source,
                "is_champion": m.is_champion,
                "promoted_at": m.promoted_at,
                "data_window": m.data_window,
                "feature_spec_hash": m.feature_spec_hash,
            })
        })
        .collect();
    ok(json!({"items": items}))
}

/// A model's evaluation report as JSON; `champion` is the model attune scores with.
async fn model_report(
    State(state): State<AppState>,
    _user: ApiUser,
    Path(version): Path<String>,
) -> ApiResult {
    let model = if version == "champion" {
        state.ctx.scoring_model().await?
    } else {
        let stored = state.ctx.db.model(&version).await?.ok_or_else(|| {
            Problem::not_found(format!(
                "there is no model {version:?}; GET /v1/models lists them"
            ))
        })?;
        let model: crate::model::ModelArtifact = serde_json::from_value(stored.artifact.0)
            .map_err(|e| anyhow::anyhow!("decoding model {version}: {e}"))?;
        model
    };
    let eval = model.evaluation.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no_report",
            format!(
                "model {} was trained without held-out rows, so it has no evaluation report",
                model.version
            ),
        )
    })?;
    ok(crate::report::report_json(&model, eval))
}

async fn audit(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pairs = query::pairs(
        raw.as_deref(),
        &["before", "limit", "actor", "action", "subject"],
    )?;
    query::no_blanks(&pairs)?;
    let before = query::get(&pairs, "before")
        .map(|v| query::integer("before", v, 1, i64::MAX))
        .transpose()?;
    let limit = query::get(&pairs, "limit")
        .map(|v| query::integer("limit", v, 1, query::MAX_LIMIT))
        .transpose()?
        .unwrap_or(query::DEFAULT_LIMIT);
    let items = state
        .ctx
        .db
        .audit_page(
            before,
            limit,
            query::get(&pairs, "actor"),
            query::get(&pairs, "action"),
            query::get(&pairs, "subject"),
        )
        .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|e| e.id))
        .flatten();
    ok(json!({"items": items, "next_before": next}))
}
