//! The webhook receiver: a JSON POST per nudge, signed as Standard Webhooks describes
//! (`webhook-id` = `nudge_{id}`, stable across attempts; `webhook-timestamp`;
//! `webhook-signature` with one `v1,` signature per active secret), over a keep-alive
//! pool of HTTP/1 connections. A 2xx is accepted; 429 and 503 wait for `Retry-After`;
//! 410 Gone is permanent; anything else is tried again later.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Attempt;
use crate::config::ChannelConfig;
use crate::delivery::signature::{Secret, sign};
use crate::delivery::{Outgoing, retry_after, webhook_body};

/// How much of a receiver's answer is kept with a failed attempt.
const ANSWER_BYTES: usize = 300;

pub struct Webhook {
    url: hyper::Uri,
    host: String,
    port: u16,
    secrets: Vec<Secret>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    concurrency: u32,
    rate: u32,
}

impl Webhook {
    pub fn new(c: &ChannelConfig, secrets: Vec<Secret>) -> Result<Self, String> {
        let raw = c.url.as_deref().unwrap_or_default();
        let (host, port, _) = crate::config::webhook_address(raw)?;
        let url: hyper::Uri = raw.parse().map_err(|e| format!("{raw:?}: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(c.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(c.concurrency as usize)
            .build(connector);
        Ok(Self {
            url,
            host,
            port,
            secrets,
            client,
            timeout: c.timeout,
            concurrency: c.concurrency,
            rate: c.rate_per_second,
        })
    }

    /// A TCP connection to the receiver's host and port.
    pub async fn probe(&self) -> Result<(), String> {
        let addr = format!("{}:{}", self.host, self.port);
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{} is unreachable: {e}", self.url)),
            Err(_) => Err(format!(
                "{} is unreachable: no connection within {} ms",
                self.url,
                self.timeout.as_millis()
            )),
        }
    }

    pub async fn send(&self, batch: Vec<Outgoing>, deadline: i64) -> Vec<(i64, Attempt)> {
        super::in_flight(batch, self.concurrency, self.rate, deadline, |o| {
            self.post(o)
        })
        .await
    }

    async fn post(&self, o: Outgoing) -> Attempt {
        let now = crate::store::now_secs();
        let body = webhook_body(&o, now);
        let signature = sign(&self.secrets, &o.id, now, &body);
        let req = hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("user-agent", concat!("attune/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &o.id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Attempt::failed(format!("building the request: {e}")),
        };
        let answer = tokio::time::timeout(self.timeout, async {
            let res = self.client.request(req).await?;
            let status = res.status();
            let retry = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, retry, body))
        })
        .await;
        match answer {
            Err(_) => Attempt::failed(format!("no answer within {} ms", self.timeout.as_millis())),
            Ok(Err(e)) => Attempt::failed(super::error_chain(e.as_ref())),
            Ok(Ok((status, retry, body))) if status.is_success() => {
                let _ = (retry, body);
                Attempt::Accepted
            }
            Ok(Ok((status, retry, body))) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(ANSWER_BYTES)])
                    .trim()
                    .to_owned();
                let answer = if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {text}")
                };
                let code = status.as_u16();
                Attempt::Failed {
                    answer,
                    retry_at: match code {
                        429 | 503 => retry.and_then(|r| retry_after(&r, crate::store::now_secs())),
                        _ => None,
                    },
                    permanent: code == 410,
                }
            }
        }
    }
}
