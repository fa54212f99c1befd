//! `attune-bench load`: an open-loop HTTP load generator, and `attune-bench seed-nudges`,
//! which fills the database with a realistic queue for it to measure.
//!
//! Open loop: request i is due at `start + i / rate` whatever happened to the ones before,
//! and its latency is measured from when it was due, so a slow server shows up as latency
//! instead of silently lowering the rate (no coordinated omission). `--connections` caps
//! how many requests are in flight; a request waiting for a connection is still on the
//! clock. Only this machine is a target: the URL must name localhost or a loopback address.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use attune::config::Config;
use attune::domain::{Channel, Consent, ContractType, Customer, CustomerId};

/// Rules of the default playbook the seeded nudges carry, with why each was queued.
const SEED_RULES: &[&str] = &[
    "welcome",
    "bill_explainer",
    "complaint_follow_up",
    "risk_check_in",
    "renewal",
];
use attune::store::SeedNudge;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The URL to request, on this machine (localhost or a loopback address).
    #[arg(long)]
    pub url: String,
    /// Requests per second, sent on schedule whatever the server does.
    #[arg(long)]
    pub rate: f64,
    /// Seconds to send for.
    #[arg(long)]
    pub duration: f64,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A file whose bytes are sent as every request's body, or a directory: request i
    /// sends its files' bytes in name order, i modulo their number (distinct batches for
    /// an ingest endpoint, which would count repeats as duplicates).
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// A header for every request, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// At most this many requests in flight (and open connections).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Give up on a request after this many seconds (counted as an error).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many nudges to add.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: usize,
    /// Spread them over this many customers (synthetic ones are added if the database
    /// has fewer).
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    /// Share of them left `proposed`; the rest get the other statuses.
    #[arg(long, default_value_t = 1.0)]
    pub proposed_share: f64,
    /// Give every nudge this status instead (`approved`: each gets a delivery, as approval
    /// by its rule would; for delivery benchmarks).
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// What went wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Failure {
    Status(u16),
    Timeout,
    Connect,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// From when the request was due to when its whole response was read.
    latency: Duration,
    /// From when it was sent (a connection was free) to the end of its response.
    service: Duration,
    failure: Option<Failure>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub method: String,
    pub target_rate: f64,
    pub duration_secs: f64,
    pub connections: usize,
    pub requests: usize,
    pub ok: usize,
    pub errors: usize,
    pub errors_by_kind: Vec<(String, usize)>,
    pub achieved_rate: f64,
    /// From when each request was due (what a client sees).
    pub latency_ms: Percentiles,
    /// From when each request was sent.
    pub service_ms: Percentiles,
    /// Requests per latency bucket: (upper bound in ms, count); the last is everything slower.
    pub histogram: Vec<(String, usize)>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentiles of `values` (any order).
pub fn percentiles(values: &mut [Duration]) -> Percentiles {
    if values.is_empty() {
        return Percentiles {
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
            mean: 0.0,
        };
    }
    values.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        ms(values[rank - 1])
    };
    let mean = values.iter().map(|d| ms(*d)).sum::<f64>() / values.len() as f64;
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: ms(values[values.len() - 1]),
        mean,
    }
}

const BUCKETS_MS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

fn histogram(values: &[Duration]) -> Vec<(String, usize)> {
    let mut counts = vec![0usize; BUCKETS_MS.len() + 1];
    for v in values {
        let m = ms(*v);
        let i = BUCKETS_MS
            .iter()
            .position(|b| m <= *b)
            .unwrap_or(BUCKETS_MS.len());
        counts[i] += 1;
    }
    let mut out: Vec<(String, usize)> = BUCKETS_MS
        .iter()
        .zip(&counts)
        .map(|(b, n)| (format!("<= {b} ms"), *n))
        .collect();
    out.push((
        format!("> {} ms", BUCKETS_MS[BUCKETS_MS.len() - 1]),
        counts[BUCKETS_MS.len()],
    ));
    out
}

/// Refuses any target but this machine.
fn check_local(uri: &hyper::Uri) -> anyhow::Result<()> {
    let host = uri
        .host()
        .with_context(|| format!("--url {uri} names no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !local {
        bail!(
            "--url {uri}: attune-bench load only sends to this machine (localhost, 127.0.0.0/8 or ::1)"
        );
    }
    if uri.scheme_str() != Some("http") {
        bail!("--url {uri}: only http:// URLs are supported");
    }
    Ok(())
}

fn parse_header(
    raw: &str,
) -> anyhow::Result<(hyper::header::HeaderName, hyper::header::HeaderValue)> {
    let (name, value) = raw
        .split_once(':')
        .with_context(|| format!("--header {raw:?}: write it as 'Name: value'"))?;
    let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("--header {raw:?}: {:?} is not a header name", name.trim()))?;
    let value = hyper::header::HeaderValue::from_str(value.trim())
        .with_context(|| format!("--header {raw:?}: the value is not a valid header value"))?;
    Ok((name, value))
}

/// Sends the load and measures it.
pub async fn load(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!(
            "--rate {}: give requests per second, more than 0 and at most 100000",
            args.rate
        );
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!(
            "--duration {}: give seconds, more than 0 and at most 3600",
            args.duration
        );
    }
    if args.connections == 0 || args.connections > 10_000 {
        bail!("--connections {}: give 1 to 10000", args.connections);
    }
    let uri: hyper::Uri = args
        .url
        .parse()
        .with_context(|| format!("--url {:?} is not a URL", args.url))?;
    check_local(&uri)?;
    let method = hyper::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("--method {:?} is not an HTTP method", args.method))?;
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bodies: Vec<Bytes> = match &args.body {
        Some(p) if p.is_dir() => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading --body {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .collect();
            files.sort();
            anyhow::ensure!(!files.is_empty(), "--body {}: no files in it", p.display());
            files
                .iter()
                .map(|f| {
                    std::fs::read(f)
                        .map(Bytes::from)
                        .with_context(|| format!("reading {}", f.display()))
                })
                .collect::<anyhow::Result<_>>()?
        }
        Some(p) => {
            vec![Bytes::from(std::fs::read(p).with_context(|| {
                format!("reading --body {}", p.display())
            })?)]
        }
        None => vec![Bytes::new()],
    };
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.connections)
        .build_http();
    let permits = Arc::new(tokio::sync::Semaphore::new(args.connections));
    let total = (args.rate * args.duration).round().max(1.0) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due).await;
        let (client, permits, uri, method, headers, body) = (
            client.clone(),
            permits.clone(),
            uri.clone(),
            method.clone(),
            headers.clone(),
            bodies[i % bodies.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let sent = tokio::time::Instant::now();
            let mut req = hyper::Request::builder().method(method).uri(uri);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let req = req
                .body(Full::new(body))
                .expect("a request from checked parts");
            let outcome = tokio::time::timeout(timeout, async {
                let res = client.request(req).await?;
                let status = res.status();
                res.into_body().collect().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
            })
            .await;
            let done = tokio::time::Instant::now();
            let failure = match outcome {
                Ok(Ok(s)) if s.is_success() || s.is_redirection() => None,
                Ok(Ok(s)) => Some(Failure::Status(s.as_u16())),
                Ok(Err(_)) => Some(Failure::Connect),
                Err(_) => Some(Failure::Timeout),
            };
            Sample {
                latency: done - due,
                service: done - sent,
                failure,
            }
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for t in tasks {
        samples.push(t.await.context("a request task failed")?);
    }
    let elapsed = start.elapsed();
    let mut failures: std::collections::BTreeMap<Failure, usize> = Default::default();
    for s in &samples {
        if let Some(f) = s.failure {
            *failures.entry(f).or_default() += 1;
        }
    }
    let errors: usize = failures.values().sum();
    let mut latency: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    let mut service: Vec<Duration> = samples.iter().map(|s| s.service).collect();
    Ok(LoadReport {
        url: args.url.clone(),
        method: args.method.to_ascii_uppercase(),
        target_rate: args.rate,
        duration_secs: args.duration,
        connections: args.connections,
        requests: samples.len(),
        ok: samples.len() - errors,
        errors,
        errors_by_kind: failures
            .iter()
            .map(|(f, n)| {
                let k = match f {
                    Failure::Status(s) => format!("status {s}"),
                    Failure::Timeout => "timeout".into(),
                    Failure::Connect => "connection".into(),
                };
                (k, *n)
            })
            .collect(),
        achieved_rate: samples.len() as f64 / elapsed.as_secs_f64(),
        histogram: histogram(&latency),
        latency_ms: percentiles(&mut latency),
        service_ms: percentiles(&mut service),
    })
}

pub fn print_load(r: &LoadReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let l = &r.latency_ms;
    println!(
        "{} {}: {} requests at {:.0}/s for {:.0} s ({:.1}/s achieved, {} connections)",
        r.method, r.url, r.requests, r.target_rate, r.duration_secs, r.achieved_rate, r.connections
    );
    println!(
        "latency (from when each request was due): p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  mean {:.2} ms",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    let s = &r.service_ms;
    println!(
        "service (from when each was sent):        p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        s.p50, s.p90, s.p99, s.max
    );
    let widest = r
        .histogram
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(1)
        .max(1);
    for (bucket, n) in &r.histogram {
        if *n > 0 {
            println!(
                "  {bucket:>12}  {n:>8}  {}",
                "#".repeat((n * 50).div_ceil(widest))
            );
        }
    }
    if r.errors == 0 {
        println!("errors: none");
    } else {
        let kinds: Vec<String> = r
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!("errors: {} ({})", r.errors, kinds.join(", "));
    }
    Ok(())
}

const STAGES: &[&str] = &[
    "onboarding",
    "first_bill",
    "settling_in",
    "established",
    "renewal",
];
const SEGMENTS: &[&str] = &["consumer", "small_business", "enterprise"];
const OTHER_STATUSES: &[&str] = &["approved", "rejected", "snoozed", "deferred", "expired"];

/// One synthetic nudge, as the playbook would plan it.
fn seed_nudge(
    rng: &mut StdRng,
    i: usize,
    seed: u64,
    customer_id: i64,
    now: i64,
    proposed_share: f64,
    status: Option<&str>,
) -> SeedNudge {
    let kind = SEED_RULES[rng.gen_range(0..SEED_RULES.len())];
    let channel = Channel::ALL[rng.gen_range(0..Channel::ALL.len())];
    let probability: f64 = rng.gen_range(0.02..0.95);
    let monthly: f64 = rng.gen_range(15.0..180.0);
    let band = if probability >= 0.6 {
        "high"
    } else if probability >= 0.3 {
        "medium"
    } else {
        "low"
    };
    let status = if let Some(s) = status {
        s
    } else if rng.gen_bool(proposed_share.clamp(0.0, 1.0)) {
        "proposed"
    } else {
        OTHER_STATUSES[rng.gen_range(0..OTHER_STATUSES.len())]
    };
    // A few nudges carry no value at risk (no score yet), as welcomes often do.
    let expected_value =
        (!rng.gen_bool(0.02)).then(|| (probability * monthly * 12.0 * 100.0).round() / 100.0);
    let name = format!("Customer {}", customer_id);
    let why = match kind {
        "welcome" => "signed up this week: how to get value in the first week".to_owned(),
        "bill_explainer" => "first invoice due in 4 days: explain it before it arrives".to_owned(),
        "complaint_follow_up" => "complaint opened 3 days ago and not resolved".to_owned(),
        "risk_check_in" => format!(
            "churn risk {:.0}% crossed the threshold",
            probability * 100.0
        ),
        _ => "contract ends in 45 days: start the renewal conversation".to_owned(),
    };
    SeedNudge {
        customer_id,
        kind: kind.to_owned(),
        occasion: format!("bench:{seed}:{i}"),
        channel: channel.as_str().to_owned(),
        status: status.to_owned(),
        stage: STAGES[rng.gen_range(0..STAGES.len())].to_owned(),
        priority: rng.gen_range(1..6),
        expected_value,
        segment: Some(SEGMENTS[rng.gen_range(0..SEGMENTS.len())].to_owned()),
        risk_band: Some(band.to_owned()),
        message: Some(format!(
            "Hi {name},\n\nThanks for being with us. We noticed something we can help with: {why}. Reply to this message or call us and we will sort it out.\n\nThe team"
        )),
        contact_name: Some(name),
        reason: serde_json::json!({
            "rule": kind,
            "why": why,
            "probability": probability,
            "drivers": [
                {"feature": "payment_failures_90d", "source": "payment_failures_90d", "contribution": rng.gen_range(0.1..1.2), "description": format!("{} failed payments in 90 days", rng.gen_range(1..4))},
                {"feature": "usage_trend", "source": "usage_trend", "contribution": rng.gen_range(0.05..0.8), "description": format!("usage down {}% on the prior quarter", rng.gen_range(10..60))},
                {"feature": "tenure_days", "source": "tenure_days", "contribution": -rng.gen_range(0.05..0.5), "description": format!("customer for {} months", rng.gen_range(1..36))},
            ],
        }),
        probability: Some(probability),
        created_at: now - rng.gen_range(0..30 * 86_400),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub inserted: u64,
    pub customers_added: u64,
    pub seconds: f64,
    pub backend: &'static str,
}

/// Adds `count` nudges (and customers if needed) in batched inserts, then refreshes the
/// planner's statistics.
pub async fn seed(config: &Config, args: &SeedArgs) -> anyhow::Result<SeedReport> {
    if args.count == 0 || args.customers == 0 {
        bail!("--count and --customers must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.proposed_share) {
        bail!(
            "--proposed-share {} must be a share from 0 to 1",
            args.proposed_share
        );
    }
    let started = Instant::now();
    let db = crate::open(config).await?;
    let mut ids: Vec<i64> = db.customer_id_map().await?.into_values().collect();
    ids.sort_unstable();
    let mut customers_added = 0;
    if ids.len() < args.customers {
        let today = attune::jobs::today();
        let new: Vec<Customer> = (ids.len()..args.customers)
            .map(|i| Customer {
                external_id: CustomerId::parse(&format!("bench-{i:07}")).expect("a valid id"),
                signup_date: today - chrono::Days::new(30 + (i as u64 % 700)),
                plan: "standard".into(),
                monthly_charge: 20.0 + (i % 160) as f64,
                contract_type: ContractType::MonthToMonth,
                contract_end: None,
                first_invoice_due: None,
                preferred_channel: Channel::Email,
                consent: Consent::ALL,
                churned_on: None,
                // An address, for the email side of the delivery benchmark.
                attributes: [("email".to_owned(), format!("bench-{i:07}@example.com"))].into(),
            })
            .collect();
        for chunk in new.chunks(10_000) {
            customers_added += db.upsert_customers(chunk).await?.inserted as u64;
        }
        ids = db.customer_id_map().await?.into_values().collect();
        ids.sort_unstable();
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let now = attune::store::now_secs();
    let mut inserted = 0;
    let chunk = 50_000;
    let mut i = 0;
    while i < args.count {
        let n = chunk.min(args.count - i);
        let batch: Vec<SeedNudge> = (i..i + n)
            .map(|k| {
                seed_nudge(
                    &mut rng,
                    k,
                    args.seed,
                    ids[k % ids.len()],
                    now,
                    args.proposed_share,
                    args.status.as_deref(),
                )
            })
            .collect();
        inserted += db.insert_review_nudges(&batch).await?;
        i += n;
        tracing::info!(done = i, of = args.count, "seeding nudges");
    }
    db.analyze().await?;
    let backend = db.backend();
    db.close().await;
    Ok(SeedReport {
        inserted,
        customers_added,
        seconds: started.elapsed().as_secs_f64(),
        backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        let h = histogram(&v);
        assert_eq!(h[0], ("<= 1 ms".into(), 1));
        assert_eq!(h.iter().map(|(_, n)| n).sum::<usize>(), 100);
    }

    #[test]
    fn only_this_machine_is_a_target() {
        for ok in [
            "http://127.0.0.1:8080/queue",
            "http://localhost/",
            "http://[::1]:80/x",
            "http://127.9.9.9/",
        ] {
            check_local(&ok.parse().unwrap()).unwrap();
        }
        for bad in [
            "http://10.0.0.1/",
            "http://example.com/",
            "https://127.0.0.1/",
        ] {
            assert!(check_local(&bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(parse_header("Authorization: Bearer x").is_ok());
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .to_string()
                .contains("'Name: value'")
        );
    }
}
