//! `POST /v1/events`: activity ingest with per-source bearer tokens. Owned by the lead;
//! this stub only reserves the module and its place in the router.

use super::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
}
