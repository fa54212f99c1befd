//! `POST /v1/deliveries/callback/{channel}`: a webhook receiver reports what became of a
//! nudge it accepted (`bounced`, `delivered`, `complained`), signed as attune signs its own
//! webhooks (Standard Webhooks, with the channel's secrets, read from the environment at
//! each request so a rotation needs no restart). The signature is the authentication: no
//! token or session. Outcomes feed `report uplift` (a bounced nudge was not delivered).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::AppState;
use super::error::{ApiError, Problem};
use crate::config::ChannelType;
use crate::delivery::signature::verify;

/// What a receiver may report.
pub const OUTCOMES: &[&str] = &["delivered", "bounced", "complained"];

/// How far a callback's `webhook-timestamp` may be from now.
const TOLERANCE_SECS: i64 = 300;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/deliveries/callback/{channel}", post(callback))
}

async fn callback(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = &state.ctx.config;
    let c = config
        .channels
        .iter()
        .find(|c| c.name == channel && c.kind == ChannelType::Webhook)
        .ok_or_else(|| Problem::not_found(format!("no webhook channel is named {channel:?}")))?;
    let secrets = c.secrets(&|k| state.secret_var(k)).map_err(|(_, m)| {
        tracing::error!(channel = %c.name, "{m}");
        Problem::internal()
    })?;
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let ts: i64 = ts.parse().map_err(|_| {
        Problem::unauthenticated(
            "sign the callback as Standard Webhooks describes: webhook-id, webhook-timestamp (unix seconds) and webhook-signature (v1,...) with the channel's secret",
        )
    })?;
    let now = crate::store::now_secs();
    if !secrets
        .iter()
        .any(|s| verify(s, id, ts, sig, &body, now, TOLERANCE_SECS).is_ok())
    {
        return Err(Problem::unauthenticated(
            "the webhook-signature does not match the channel's secret (or the timestamp is more than 5 minutes away)",
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request("invalid_body", format!("the body is not JSON: {e}")))?;
    // `{"id": "nudge_42", "outcome": "bounced"}`, or the same inside `data`.
    let data = v.get("data").unwrap_or(&v);
    let nudge_id = data
        .get("id")
        .and_then(|x| x.as_str())
        .and_then(|s| s.strip_prefix("nudge_"))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_body",
                "id: give the webhook-id of the nudge, e.g. \"nudge_42\"",
            )
        })?;
    let outcome = data
        .get("outcome")
        .and_then(|x| x.as_str())
        .unwrap_or_default();
    if !OUTCOMES.contains(&outcome) {
        return Err(Problem::bad_request(
            "invalid_body",
            format!("outcome: {outcome:?} is not one of {}", OUTCOMES.join(", ")),
        )
        .into());
    }
    let recorded = state
        .ctx
        .db
        .record_delivery_outcome(nudge_id, outcome)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "recording a delivery outcome");
            Problem::internal()
        })?;
    if !recorded {
        return Err(
            Problem::not_found(format!("nudge {nudge_id} was not sent on any channel")).into(),
        );
    }
    tracing::info!(channel = %c.name, nudge_id, outcome, "delivery outcome reported");
    Ok(StatusCode::NO_CONTENT.into_response())
}
