//! The review desk: web pages for marketing and a JSON API, served by the daemon beside
//! the workers.
//!
//! [`router`] builds the whole application from an [`AppState`] so tests drive it
//! in-process; [`Application::build`] binds the configured listener (port 0 allowed) and
//! serves it until told to stop. Pages are server-rendered (askama, compile-time checked
//! templates under `templates/`) with inline CSS and no JavaScript; the API lives under
//! `/v1` and is described by `/v1/openapi.json`.
//!
//! This module never plans or sends anything: it reads nudges and records people's
//! decisions through `store`, which writes each decision with its audit entry.

mod api;
mod auth;
pub mod callbacks;
mod decide;
mod error;
pub mod events;
mod openapi;
mod pages;
mod query;
pub mod views;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument as _;

pub use api::{CSV_COLUMNS, MAX_IDS, csv_rows};
pub use auth::{
    CSRF_HEADER, LOGIN_COOKIE, SESSION_COOKIE, TOKEN_PREFIX, hash_password, new_api_token,
    validate_password, verify_password,
};
pub use decide::{DeliveryAction, change_delivery};
pub use error::Problem;
pub use openapi::{document as openapi_document, operations as openapi_operations};
pub use pages::week_start;
pub use query::{nudge_channel, nudge_channels};

use crate::jobs::JobContext;
use crate::store::StoreError;

/// How long the queue's counts per rule are served from memory before they are counted
/// again (in the background; a decision made here clears them at once).
pub const COUNTS_TTL: Duration = Duration::from_secs(5);
/// The same for the filter menus' labels (stages, risk bands, segments).
pub const LABELS_TTL: Duration = Duration::from_secs(60);

/// What every handler gets: the database and configuration (as the jobs have them) and
/// the few counts kept in memory.
#[derive(Clone)]
pub struct AppState {
    pub ctx: JobContext,
    cache: Arc<Cache>,
    /// Customer ids for `POST /v1/events`, loaded at start (or by the first request or
    /// readiness probe that finds them missing) and shared.
    ingest_ids: Arc<tokio::sync::OnceCell<crate::store::CustomerIds>>,
    /// Whether a background load of `ingest_ids` is running.
    warming: Arc<std::sync::atomic::AtomicBool>,
    /// Where secrets named by the config (`secret_env`) are read, at each request: the
    /// process's environment, or what a test gives.
    env: Env,
}

/// Reads a variable by name.
type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The labels the queue's filter menus offer.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pub stages: Vec<String>,
    pub risk_bands: Vec<String>,
    pub segments: Vec<String>,
}

type Counts = Vec<(String, i64)>;

#[derive(Default)]
struct Cache {
    counts: Mutex<HashMap<String, (Instant, Counts)>>,
    labels: Mutex<Option<(Instant, Labels)>>,
    refreshing: Mutex<HashSet<String>>,
}

impl AppState {
    pub fn new(ctx: JobContext) -> Self {
        Self {
            ctx,
            cache: Arc::default(),
            ingest_ids: Arc::default(),
            warming: Arc::default(),
            env: Arc::new(|k| std::env::var(k).ok()),
        }
    }

    /// The same state, reading configured secrets from `env` instead of the environment.
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// The value of a variable a configured secret is read from.
    pub(crate) fn secret_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// The customer id map ingest resolves events with (ids it misses are looked up).
    pub async fn ingest_ids(&self) -> anyhow::Result<crate::store::CustomerIds> {
        Ok(self
            .ingest_ids
            .get_or_try_init(|| self.ctx.db.customer_ids())
            .await?
            .clone())
    }

    /// Whether a configured `http` source sends events here.
    fn takes_events(&self) -> bool {
        crate::jobs::sources::configured(&self.ctx)
            .iter()
            .any(|s| s.kind == crate::config::SourceKind::Http)
    }

    /// Loads the customer id map in the background when an `http` source is configured,
    /// so the first requests do not wait for a million ids; `/readyz` answers 503 until
    /// it is loaded.
    fn warm_ingest_ids(&self) {
        use std::sync::atomic::Ordering;
        if !self.takes_events() || self.warming.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match state.ingest_ids().await {
                Ok(ids) => tracing::info!(
                    customers = ids.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "customer ids loaded for /v1/events"
                ),
                // The next /readyz probe or request tries again.
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "loading customer ids for /v1/events")
                }
            }
            state.warming.store(false, Ordering::Release);
        });
    }

    /// Claims the right to refresh `key` in the background; false if another task has it.
    fn start_refresh(&self, key: &str) -> bool {
        self.cache
            .refreshing
            .lock()
            .map(|mut s| s.insert(key.to_owned()))
            .unwrap_or(false)
    }

    fn end_refresh(&self, key: &str) {
        if let Ok(mut s) = self.cache.refreshing.lock() {
            s.remove(key);
        }
    }

    /// Nudges of `status` per rule. Counting a million rows takes tens of milliseconds,
    /// so counts are kept for [`COUNTS_TTL`] and, once older, served while a background
    /// task counts again; decisions made here clear them.
    pub async fn rule_counts(&self, status: &str) -> Result<Counts, StoreError> {
        let cached = self
            .cache
            .counts
            .lock()
            .ok()
            .and_then(|m| m.get(status).cloned());
        match cached {
            Some((at, counts)) => {
                if at.elapsed() > COUNTS_TTL && self.start_refresh(status) {
                    let (me, status) = (self.clone(), status.to_owned());
                    tokio::spawn(async move {
                        if let Ok(fresh) = me.ctx.db.rule_counts(&status).await
                            && let Ok(mut m) = me.cache.counts.lock()
                        {
                            m.insert(status.clone(), (Instant::now(), fresh));
                        }
                        me.end_refresh(&status);
                    });
                }
                Ok(counts)
            }
            None => {
                let fresh = self.ctx.db.rule_counts(status).await?;
                if let Ok(mut m) = self.cache.counts.lock() {
                    m.insert(status.to_owned(), (Instant::now(), fresh.clone()));
                }
                Ok(fresh)
            }
        }
    }

    async fn load_labels(&self) -> Result<Labels, StoreError> {
        let db = &self.ctx.db;
        Ok(Labels {
            stages: db.filter_values("stage").await?,
            risk_bands: db.filter_values("risk_band").await?,
            segments: db.filter_values("segment").await?,
        })
    }

    /// The filter menus' labels, kept like the counts but for [`LABELS_TTL`].
    pub async fn filter_values(&self) -> Result<Labels, StoreError> {
        let cached = self.cache.labels.lock().ok().and_then(|l| l.clone());
        match cached {
            Some((at, labels)) => {
                if at.elapsed() > LABELS_TTL && self.start_refresh("\0labels") {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Ok(fresh) = me.load_labels().await
                            && let Ok(mut l) = me.cache.labels.lock()
                        {
                            *l = Some((Instant::now(), fresh));
                        }
                        me.end_refresh("\0labels");
                    });
                }
                Ok(labels)
            }
            None => {
                let fresh = self.load_labels().await?;
                if let Ok(mut l) = self.cache.labels.lock() {
                    *l = Some((Instant::now(), fresh.clone()));
                }
                Ok(fresh)
            }
        }
    }

    /// Forgets the counts after a decision, so the next page counts afresh.
    pub fn decisions_changed(&self) {
        if let Ok(mut m) = self.cache.counts.lock() {
            m.clear();
        }
    }
}

/// The whole application: pages, the API, the ingest endpoint and the ops probes.
pub fn router(state: AppState) -> Router {
    let limit = state.ctx.config.http.body_limit_bytes;
    Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .merge(events::routes())
        .merge(callbacks::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(around))
        .with_state(state)
}

/// Prometheus metrics of this process, with the database's nudges and job executions
/// counted at the scrape. No sign-in: they hold no customer data (bind the desk to a
/// private address, as by default).
async fn metrics(State(state): State<AppState>) -> Response {
    let m = crate::metrics::get();
    match state.ctx.db.nudge_status_counts().await {
        Ok(rows) => {
            m.nudges.reset();
            for (status, n) in rows {
                m.nudges.with_label_values(&[&status]).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting nudges for /metrics"),
    }
    match state.ctx.db.job_run_counts().await {
        Ok(rows) => {
            m.job_runs.reset();
            for (kind, status, n) in rows {
                m.job_runs.with_label_values(&[&kind, &status]).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting job runs for /metrics"),
    }
    match state.ctx.db.delivery_counts().await {
        Ok(c) => {
            for (status, n) in [
                ("pending", c.pending),
                ("retrying", c.retrying),
                ("sent", c.sent),
                ("dead", c.dead),
                ("blocked", c.blocked),
                ("cancelled", c.cancelled),
            ] {
                m.deliveries_by_status.with_label_values(&[status]).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting deliveries for /metrics"),
    }
    match state.ctx.db.latest_shard_counts().await {
        Ok(rows) => {
            m.run_shards.reset();
            if let Some((run, _, _)) = rows.first() {
                let run = run.to_string();
                for status in crate::store::SHARD_STATUSES {
                    let n = rows
                        .iter()
                        .find(|(_, s, _)| s == status)
                        .map_or(0, |(_, _, n)| *n);
                    m.run_shards.with_label_values(&[&run, status]).set(n);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting scoring shards for /metrics"),
    }
    if let Ok(states) = state.ctx.db.channel_states().await {
        let now = crate::store::now_secs();
        m.channel_paused.reset();
        for c in states {
            m.channel_paused
                .with_label_values(&[&c.name])
                .set(c.paused_until.is_some_and(|t| t > now) as i64);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        m.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Ready when the database answers and, with an `http` source, the customer id map
/// `/v1/events` resolves events with is loaded.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.takes_events() && !state.ingest_ids.initialized() {
        // Loading again if the load at start failed, so a probe that waits for readiness
        // is not left waiting for a request that only a ready server gets.
        state.warm_ingest_ids();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"code": "warming_up", "message": "loading customer ids for /v1/events"}})),
        )
            .into_response();
    }
    match state.ctx.db.ping().await {
        Ok(()) => {
            axum::Json(serde_json::json!({"status": "ready", "database": state.ctx.db.backend()}))
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"error": {"code": "database_unavailable", "message": "the database does not answer"}})),
            )
                .into_response()
        }
    }
}

fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1"
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let p = Problem::not_found(format!("there is nothing at {path}"));
    if is_api(&path) {
        error::ApiError(p).into_response()
    } else {
        error::PageError(p).into_response()
    }
}

async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let p = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {path}", req.method()),
    );
    if is_api(&path) {
        error::ApiError(p).into_response()
    } else {
        error::PageError(p).into_response()
    }
}

/// A span per request, and the headers every answer carries: nothing is framed, sniffed,
/// cached or loaded from elsewhere.
async fn around(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    // By route, not path: `/nudges/{id}`, not a label per nudge.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let mut res = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    crate::metrics::get().http(
        &method,
        &route,
        res.status().as_u16(),
        elapsed.as_secs_f64(),
    );
    tracing::debug!(parent: &span, status = res.status().as_u16(), micros = elapsed.as_micros() as u64, "answered");
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// The review desk bound to its address, ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
}

impl Application {
    /// Binds `[http] listen` (port 0 picks a free port) and builds the router.
    pub async fn build(ctx: JobContext) -> anyhow::Result<Self> {
        // The catalog first: the pages read complaints by the meanings it writes.
        ctx.kinds().await?;
        let listen = ctx.config.http.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the review desk to {listen} ([http] listen)"))?;
        let addr = listener.local_addr()?;
        let state = AppState::new(ctx);
        state.warm_ingest_ids();
        Ok(Self {
            listener,
            addr,
            router: router(state),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, as a person would type it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(url = %self.url(), "review desk listening");
        // The peer's address reaches handlers (sign-in throttling per address).
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
