//! `attune-bench receiver`: a webhook receiver for delivery benchmarks, as a process of its
//! own. It verifies each request's Standard Webhooks signature, counts requests, distinct
//! `webhook-id`s and bad signatures, answers 204, and prints the counts as JSON when it
//! has been idle for `--idle-secs` after its first request (or on Ctrl-C). Its ceiling is
//! measured by pointing `attune-bench load` at it with one signed body (`--sample DIR`
//! writes one, with its headers, valid for five minutes).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attune::delivery::signature::{Secret, sign, verify};
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Debug, Args)]
pub struct ReceiverArgs {
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,
    /// The signing secret (`whsec_...`).
    #[arg(long, env = "BENCH_WEBHOOK_SECRET")]
    pub secret: String,
    /// Print the counts and stop after this many idle seconds following the first request.
    #[arg(long, default_value_t = 3.0)]
    pub idle_secs: f64,
    /// Write a signed sample request (body.json, headers.txt) to DIR and exit.
    #[arg(long, value_name = "DIR")]
    pub sample: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    requests: u64,
    bad_signatures: u64,
    ids: HashSet<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

pub async fn run(args: ReceiverArgs) -> anyhow::Result<()> {
    let secret = Secret::parse(&args.secret).map_err(|m| anyhow::anyhow!("--secret: {m}"))?;
    if let Some(dir) = &args.sample {
        std::fs::create_dir_all(dir)?;
        let body = br#"{"type":"nudge.approved","timestamp":"2026-12-07T00:00:00Z","data":{"id":"nudge_1","nudge_id":1,"customer":"C-1","rule":"welcome","occasion":"signup:2026-12-01","channel":"email","stage":"early","message":"Welcome aboard.","contact_role":null,"contact_name":null,"address":null,"expires_at":null,"approved_by":"playbook","checked_at":"2026-12-07T00:00:00.000Z"}}"#;
        let ts = chrono::Utc::now().timestamp();
        let sig = sign(std::slice::from_ref(&secret), "nudge_1", ts, body);
        std::fs::write(dir.join("body.json"), body)?;
        std::fs::write(
            dir.join("headers.txt"),
            format!(
                "content-type: application/json\nwebhook-id: nudge_1\nwebhook-timestamp: {ts}\nwebhook-signature: {sig}\n"
            ),
        )?;
        return Ok(());
    }
    let counts: Arc<Mutex<Counts>> = Default::default();
    let secret = Arc::new(secret);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("receiving on http://{}/", args.listen);
    let c = counts.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            let (c, secret) = (c.clone(), secret.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (c, secret) = (c.clone(), secret.clone());
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let (id, ts, sig) = (
                            h("webhook-id"),
                            h("webhook-timestamp"),
                            h("webhook-signature"),
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let ok = verify(
                            &secret,
                            &id,
                            ts.parse().unwrap_or(0),
                            &sig,
                            &body,
                            chrono::Utc::now().timestamp(),
                            300,
                        )
                        .is_ok();
                        let mut g = c.lock().unwrap();
                        let now = Instant::now();
                        g.first.get_or_insert(now);
                        g.last = Some(now);
                        g.requests += 1;
                        if ok {
                            g.ids.insert(id);
                        } else {
                            g.bad_signatures += 1;
                        }
                        let status = if ok { 204 } else { 401 };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .expect("a response"),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    let idle = Duration::from_secs_f64(args.idle_secs);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let g = counts.lock().unwrap();
        if g.last.is_some_and(|t| t.elapsed() >= idle) {
            break;
        }
    }
    server.abort();
    let g = counts.lock().unwrap();
    let span = match (g.first, g.last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "{}",
        serde_json::json!({
            "requests": g.requests,
            "distinct_ids": g.ids.len(),
            "bad_signatures": g.bad_signatures,
            "first_to_last_secs": span,
            "requests_per_sec": if span > 0.0 { g.requests as f64 / span } else { 0.0 },
        })
    );
    Ok(())
}
