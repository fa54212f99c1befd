//! `POST /v1/events`: the http activity source. The company's systems send a JSON array of
//! events or NDJSON with `Authorization: Bearer TOKEN`; the token says which configured
//! `http` source it is. One request is one transaction; the answer counts what was
//! accepted, what was there already, and each rejection with its reason (rejected events
//! are kept in quarantine).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::AppState;
use super::error::{ApiError, Problem};
use crate::jobs::sources::{self, http};

/// Bodies up to this size: 10,000 events of a few hundred bytes each.
pub const MAX_BODY: usize = 8 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(ingest))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

async fn ingest(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let headers: HeaderMap = req.headers().clone();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Problem::unauthenticated(
                "send the source's token as `Authorization: Bearer TOKEN` (the variable named by the source's token_env)",
            )
        })?;
    let configured = sources::configured(&state.ctx);
    let source = http::source_for_token(&configured, token)
        .ok_or_else(|| Problem::unauthenticated("no http source has this token"))?;
    let format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(http::BodyFormat::from_content_type)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send a JSON array with Content-Type: application/json, or NDJSON with Content-Type: application/x-ndjson",
            )
        })?;
    // Past the limit: 413 with the JSON error every other refusal has.
    let body = Bytes::from_request(req, &state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(MAX_BODY)
        } else {
            Problem::bad_request("unreadable_body", format!("could not read the body: {e}"))
        }
    })?;
    let ids = state.ingest_ids().await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "loading customer ids");
        Problem::internal()
    })?;
    let request = format!(
        "request {}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        REQUESTS.fetch_add(1, Ordering::Relaxed)
    );
    match http::ingest_body(&state.ctx, source, &ids, &body, format, &request).await {
        Ok(Ok(report)) => {
            tracing::info!(source = %source.name, accepted = report.accepted, duplicate = report.duplicate, rejected = report.rejected, "events received");
            Ok((StatusCode::OK, axum::Json(report)).into_response())
        }
        Ok(Err(e)) => Err(Problem::bad_request("invalid_body", e.0).into()),
        Err(e) => {
            tracing::error!(source = %source.name, error = %format!("{e:#}"), "storing events");
            Err(Problem::internal().into())
        }
    }
}
