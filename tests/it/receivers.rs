//! Real local receivers for delivery tests: an HTTP server that verifies Standard
//! Webhooks signatures and records what it was sent, answering from a script; and an
//! SMTP sink that records messages (and can refuse a login).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use attune::delivery::signature::{Secret, verify};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub nudge_id: i64,
    /// When it arrived, unix milliseconds.
    pub at_ms: i64,
    /// The body's `data.checked_at`, unix milliseconds.
    pub checked_ms: i64,
    pub verified: bool,
    /// What the receiver answered.
    pub status: u16,
    pub body: serde_json::Value,
}

/// Answers to give, in order: status and `Retry-After`.
type Script = Arc<Mutex<VecDeque<(u16, Option<String>)>>>;

#[derive(Clone, Default)]
struct Shared {
    got: Arc<Mutex<Vec<Got>>>,
    script: Script,
    /// Answer 500 to this share of requests, drawn at random (chaos).
    fail_share: Arc<Mutex<f64>>,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    shared: Shared,
    _server: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts a receiver that verifies signatures with `secret` (one of those attune signs
    /// with) and answers 200 unless scripted otherwise.
    pub async fn start(secret: Secret) -> WebhookReceiver {
        let shared = Shared::default();
        let secret = Arc::new(secret);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((shared, secret)): State<(Shared, Arc<Secret>)>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        receive(&shared, &secret, &headers, &body)
                    },
                ),
            )
            .with_state((shared.clone(), secret));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WebhookReceiver {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next answers, in order (status, `Retry-After`); 200 after them.
    pub fn script(&self, answers: &[(u16, Option<&str>)]) {
        let mut s = self.shared.script.lock().unwrap();
        s.extend(answers.iter().map(|(c, r)| (*c, r.map(str::to_owned))));
    }

    pub fn fail_share(&self, share: f64) {
        *self.shared.fail_share.lock().unwrap() = share;
    }

    pub fn got(&self) -> Vec<Got> {
        self.shared.got.lock().unwrap().clone()
    }
}

fn ms_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MIN)
}

fn receive(
    shared: &Shared,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
) -> axum::response::Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = h("webhook-id");
    let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let verified = verify(
        secret,
        &id,
        ts,
        &h("webhook-signature"),
        body,
        now_ms / 1000,
        300,
    )
    .is_ok();
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (status, retry) = if !verified {
        (401, None)
    } else if let Some(next) = shared.script.lock().unwrap().pop_front() {
        next
    } else if rand::random::<f64>() < *shared.fail_share.lock().unwrap() {
        (500, None)
    } else {
        (200, None)
    };
    shared.got.lock().unwrap().push(Got {
        nudge_id: json["data"]["nudge_id"].as_i64().unwrap_or(-1),
        checked_ms: ms_of(json["data"]["checked_at"].as_str().unwrap_or_default()),
        id,
        at_ms: now_ms,
        verified,
        status,
        body: json,
    });
    let mut res = (
        StatusCode::from_u16(status).unwrap(),
        format!("answer {status}"),
    )
        .into_response();
    if let Some(r) = retry {
        res.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    res
}

/// One message the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a sink on a free port. With `refuse_login`, it offers AUTH and refuses every
    /// attempt (535), as a server does to a wrong password.
    pub async fn start(refuse_login: bool) -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Default::default();
        let m = mails.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let m = m.clone();
                tokio::spawn(async move {
                    let _ = session(sock, m, refuse_login).await;
                });
            }
        });
        SmtpSink {
            addr,
            mails,
            _server: server,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(
    sock: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    refuse_login: bool,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            if refuse_login {
                w.write_all(b"250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                    .await?;
            } else {
                w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
            }
        } else if upper.starts_with("AUTH") {
            w.write_all(b"535 5.7.8 Authentication credentials invalid\r\n")
                .await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_owned();
            to.clear();
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().to_owned());
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 go on\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            mails.lock().unwrap().push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else {
            w.write_all(b"502 not implemented\r\n").await?;
        }
    }
}
