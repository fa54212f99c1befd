//! Prometheus metrics of this process, served at `/metrics` by the review desk: jobs by
//! kind and outcome with their durations and their lag behind their tick, ticks, events
//! ingested and quarantined, scoring runs, HTTP requests by route and status; nudges by
//! status and deliveries by status are read from the database when scraped (`http::metrics`);
//! delivery attempts by channel and outcome are counted as they happen.
//!
//! One registry per process ([`get`]): the daemon and the desk it serves share it.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metrics.
pub struct Metrics {
    pub registry: Registry,
    jobs: IntCounterVec,
    job_seconds: HistogramVec,
    job_lag: HistogramVec,
    ticks: IntCounterVec,
    events: IntCounterVec,
    scoring_customers: HistogramVec,
    scoring_seconds: HistogramVec,
    shards: IntCounterVec,
    shard_seconds: HistogramVec,
    http: IntCounterVec,
    http_seconds: HistogramVec,
    deliveries: IntCounterVec,
    /// Gauges filled in at each scrape from the database.
    pub nudges: IntGaugeVec,
    pub job_runs: IntGaugeVec,
    /// Deliveries by status, and each configured channel's pause (1 while paused).
    pub deliveries_by_status: IntGaugeVec,
    pub channel_paused: IntGaugeVec,
    /// The shards of the newest scoring run split into shards, by status (`run` is its id).
    pub run_shards: IntGaugeVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// This process's metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let registry =
            Registry::new_custom(Some("attune".into()), None).expect("a valid metric prefix");
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            r.register(Box::new(m.clone()))
                .expect("metric names are unique");
            m
        }
        let seconds = vec![
            0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
        ];
        let lag = vec![
            0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let r = &registry;
        Self {
            jobs: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "jobs_total",
                        "Job executions that ended, by kind and outcome",
                    ),
                    &["kind", "outcome"],
                )
                .expect("valid"),
            ),
            job_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new("job_duration_seconds", "How long job executions ran")
                        .buckets(seconds.clone()),
                    &["kind"],
                )
                .expect("valid"),
            ),
            job_lag: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "job_lag_seconds",
                        "From a job's tick (or retry time) to its start",
                    )
                    .buckets(lag),
                    &["kind"],
                )
                .expect("valid"),
            ),
            ticks: reg(
                r,
                IntCounterVec::new(
                    Opts::new("ticks_total", "Cron ticks seen, by schedule"),
                    &["schedule"],
                )
                .expect("valid"),
            ),
            events: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "events_total",
                        "Events ingested: stored, duplicate or quarantined",
                    ),
                    &["outcome"],
                )
                .expect("valid"),
            ),
            scoring_customers: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new("scoring_run_customers", "Customers scored per run")
                        .buckets(prometheus::exponential_buckets(1.0, 10.0, 8).expect("valid")),
                    &["scope"],
                )
                .expect("valid"),
            ),
            shards: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "scoring_shards_total",
                        "Scoring shards this process worked: done, lost (taken back after its claim ran out) or failed",
                    ),
                    &["outcome"],
                )
                .expect("valid"),
            ),
            shard_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "scoring_shard_duration_seconds",
                        "How long this process took over a scoring shard",
                    )
                    .buckets(seconds.clone()),
                    &["outcome"],
                )
                .expect("valid"),
            ),
            run_shards: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "scoring_run_shards",
                        "Shards of the newest scoring run split into shards, by status (read when scraped)",
                    ),
                    &["run", "status"],
                )
                .expect("valid"),
            ),
            scoring_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "scoring_run_duration_seconds",
                        "How long scoring runs took",
                    )
                    .buckets(seconds.clone()),
                    &["scope"],
                )
                .expect("valid"),
            ),
            http: reg(
                r,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests, by route and status"),
                    &["method", "route", "status"],
                )
                .expect("valid"),
            ),
            http_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request durations")
                        .buckets(vec![
                            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                        ]),
                    &["route"],
                )
                .expect("valid"),
            ),
            nudges: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("nudges", "Nudges in the database, by status"),
                    &["status"],
                )
                .expect("valid"),
            ),
            job_runs: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "job_runs",
                        "Job executions recorded in the database, by kind and status",
                    ),
                    &["kind", "status"],
                )
                .expect("valid"),
            ),
            deliveries_by_status: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "deliveries",
                        "Approved nudges' deliveries in the database, by status (retrying: pending after a failed attempt)",
                    ),
                    &["status"],
                )
                .expect("valid"),
            ),
            channel_paused: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "delivery_channel_paused",
                        "1 while a configured channel is paused by its breaker after failed attempts",
                    ),
                    &["channel"],
                )
                .expect("valid"),
            ),
            deliveries: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "delivery_attempts_total",
                        "Attempts to hand approved nudges to a configured channel, by channel and outcome (accepted, failed)",
                    ),
                    &["channel", "outcome"],
                )
                .expect("valid"),
            ),
            registry,
        }
    }

    pub fn delivered(&self, channel: &str, accepted: u64, failed: u64) {
        for (o, n) in [("accepted", accepted), ("failed", failed)] {
            if n > 0 {
                self.deliveries.with_label_values(&[channel, o]).inc_by(n);
            }
        }
    }

    pub fn tick(&self, schedule: &str) {
        self.ticks.with_label_values(&[schedule]).inc();
    }

    pub fn job_started(&self, kind: &str, lag_ms: i64) {
        self.job_lag
            .with_label_values(&[kind])
            .observe(lag_ms.max(0) as f64 / 1000.0);
    }

    pub fn job_finished(&self, kind: &str, outcome: &str, seconds: f64) {
        self.jobs.with_label_values(&[kind, outcome]).inc();
        if outcome != "skipped" {
            self.job_seconds.with_label_values(&[kind]).observe(seconds);
        }
    }

    pub fn ingested(&self, stored: u64, duplicate: u64, quarantined: u64) {
        for (o, n) in [
            ("stored", stored),
            ("duplicate", duplicate),
            ("quarantined", quarantined),
        ] {
            if n > 0 {
                self.events.with_label_values(&[o]).inc_by(n);
            }
        }
    }

    pub fn scored(&self, scope: &str, customers: usize, seconds: f64) {
        self.scoring_customers
            .with_label_values(&[scope])
            .observe(customers as f64);
        self.scoring_seconds
            .with_label_values(&[scope])
            .observe(seconds);
    }

    /// A scoring shard this process worked ended with `outcome` (done, lost, failed).
    pub fn shard_finished(&self, outcome: &str, seconds: f64) {
        self.shards.with_label_values(&[outcome]).inc();
        if outcome != "failed" {
            self.shard_seconds
                .with_label_values(&[outcome])
                .observe(seconds);
        }
    }

    pub fn http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// Everything, in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
