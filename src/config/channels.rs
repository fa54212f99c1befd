//! `[delivery]` and `[[channels]]`: where approved nudges go (issue 20). Each configured
//! channel carries some of the nudges' channels (`email`, `sms`, `phone`, `post`, `task`)
//! to a webhook, an SMTP server or an outbox directory. Secrets come from the environment,
//! named here, never written in the file.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values;
use crate::delivery::signature::Secret;

/// How deliveries are claimed and retried, for every channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// How long a worker holds the nudges it took before another may take them: a daemon
    /// killed mid-send gives them back after this long (the receiver sees the same
    /// `webhook-id` again).
    #[serde(rename = "lease_secs", with = "values::secs")]
    pub lease: Duration,
    /// Nudges taken per claim.
    pub batch: u32,
    /// How often an idle channel looks for due nudges, in milliseconds.
    #[serde(rename = "poll_interval_ms", with = "values::millis")]
    pub poll_interval: Duration,
    /// Attempts in all before a delivery is dead.
    pub max_attempts: u32,
    /// The first retry's delay, doubled per attempt (with jitter) up to `retry_max_secs`.
    #[serde(rename = "retry_base_secs", with = "values::secs")]
    pub retry_base: Duration,
    #[serde(rename = "retry_max_secs", with = "values::secs")]
    pub retry_max: Duration,
    /// Failed attempts in a row that pause a channel (its circuit breaker).
    pub breaker_failures: u32,
    /// How long the first pause lasts; doubled while the channel keeps failing (at most
    /// an hour).
    #[serde(rename = "breaker_pause_secs", with = "values::secs")]
    pub breaker_pause: Duration,
    /// A check of consent and expiry is good for this long: a nudge not sent within it is
    /// checked again first.
    #[serde(rename = "recheck_within_secs", with = "values::secs")]
    pub recheck_within: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            batch: 200,
            poll_interval: Duration::from_millis(1000),
            max_attempts: 8,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            breaker_failures: 10,
            breaker_pause: Duration::from_secs(30),
            recheck_within: Duration::from_secs(10),
        }
    }
}

/// `webhook`, `email` or `outbox`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Webhook,
    Email,
    Outbox,
}

/// `ndjson` or `csv`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutboxFormat {
    #[default]
    Ndjson,
    Csv,
}

/// One place approved nudges go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Its name, in the desk, `attune deliveries` and the metrics.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    /// The nudges' channels it carries: `email`, `sms`, `phone`, `post`, `task`.
    pub carries: Vec<String>,
    /// Nudges sent per second at most (0: no limit).
    #[serde(default)]
    pub rate_per_second: u32,
    /// Attempts in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// How long one attempt may take, in milliseconds.
    #[serde(
        rename = "timeout_ms",
        with = "values::millis",
        default = "default_timeout"
    )]
    pub timeout: Duration,

    /// webhook: the URL each nudge is POSTed to (`http://`).
    pub url: Option<String>,
    /// webhook: environment variables holding the signing secrets (`whsec_...`): the
    /// current one first; while rotating, the old one second (both sign).
    #[serde(default)]
    pub secret_env: Vec<String>,

    /// email: the SMTP server, `host:port`.
    pub smtp: Option<String>,
    /// email: the SMTP user name, and the environment variable holding its password.
    pub username: Option<String>,
    pub password_env: Option<String>,
    /// email: the sender, e.g. `Acme <care@acme.example>`.
    pub from: Option<String>,
    /// email: the subject; `{rule}` and `{customer}` are filled in.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// email: the customer attribute holding their address.
    #[serde(default = "default_address_attribute")]
    pub address_attribute: String,
    /// email: the `List-Unsubscribe` URL; `{customer}` is filled in.
    pub unsubscribe_url: Option<String>,

    /// outbox: the directory files are renamed into.
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub format: OutboxFormat,
    /// outbox: a file is closed at this size...
    #[serde(default = "default_roll_bytes")]
    pub roll_bytes: u64,
    /// ...or when it has been open this long.
    #[serde(rename = "roll_secs", with = "values::secs", default = "default_roll")]
    pub roll: Duration,
}

fn default_concurrency() -> u32 {
    32
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_subject() -> String {
    "A note about your account".into()
}
fn default_address_attribute() -> String {
    "email".into()
}
fn default_roll_bytes() -> u64 {
    8 << 20
}
fn default_roll() -> Duration {
    Duration::from_secs(60)
}

/// The nudges' channels a configured channel may carry.
pub const NUDGE_CHANNELS: &[&str] = &["email", "sms", "phone", "post", "task"];

impl Delivery {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        for (key, zero) in [
            ("delivery.lease_secs", self.lease.is_zero()),
            ("delivery.batch", self.batch == 0),
            ("delivery.max_attempts", self.max_attempts == 0),
            ("delivery.retry_base_secs", self.retry_base.is_zero()),
            ("delivery.breaker_failures", self.breaker_failures == 0),
            ("delivery.breaker_pause_secs", self.breaker_pause.is_zero()),
            (
                "delivery.recheck_within_secs",
                self.recheck_within.is_zero(),
            ),
        ] {
            if zero {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.recheck_within >= self.lease {
            return Err((
                "delivery.recheck_within_secs".into(),
                format!(
                    "must be shorter than delivery.lease_secs ({} s), or a nudge could be sent after its claim ran out",
                    self.lease.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

impl ChannelConfig {
    /// Checks what the file alone can tell; the key named is relative to the channel.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.name.trim().is_empty() {
            return Err(("name".into(), "is empty".into()));
        }
        if self.carries.is_empty() {
            return Err((
                "carries".into(),
                format!(
                    "is empty; list the nudges' channels it carries ({})",
                    NUDGE_CHANNELS.join(", ")
                ),
            ));
        }
        for c in &self.carries {
            if !NUDGE_CHANNELS.contains(&c.as_str()) {
                return Err((
                    "carries".into(),
                    format!(
                        "{c:?} is not a nudge channel; use {}",
                        NUDGE_CHANNELS.join(", ")
                    ),
                ));
            }
        }
        if self.concurrency == 0 || self.timeout.is_zero() {
            return Err((
                "concurrency".into(),
                "concurrency and timeout_ms must be at least 1".into(),
            ));
        }
        let need = |key: &str, v: bool| -> Result<(), (String, String)> {
            if v {
                Ok(())
            } else {
                Err((
                    key.into(),
                    format!("a {:?} channel needs it", self.kind).to_lowercase(),
                ))
            }
        };
        match self.kind {
            ChannelType::Webhook => {
                need("url", self.url.is_some())?;
                let url = self.url.as_deref().unwrap_or_default();
                webhook_address(url).map_err(|m| ("url".to_owned(), m))?;
                need("secret_env", !self.secret_env.is_empty())?;
                if self.secret_env.len() > 2 {
                    return Err((
                        "secret_env".into(),
                        "at most two secrets are active at once: the new one and the old".into(),
                    ));
                }
            }
            ChannelType::Email => {
                need("smtp", self.smtp.is_some())?;
                need("from", self.from.is_some())?;
                let smtp = self.smtp.as_deref().unwrap_or_default();
                host_port(smtp).map_err(|m| ("smtp".to_owned(), m))?;
                if self.username.is_some() != self.password_env.is_some() {
                    return Err((
                        "password_env".into(),
                        "username and password_env go together".into(),
                    ));
                }
            }
            ChannelType::Outbox => {
                need("dir", self.dir.is_some())?;
                if self.roll_bytes == 0 || self.roll.is_zero() {
                    return Err((
                        "roll_bytes".into(),
                        "roll_bytes and roll_secs must be at least 1".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The signing secrets, read from the environment (`secret_env`), current first.
    pub fn secrets(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Secret>, (String, String)> {
        self.secret_env
            .iter()
            .map(|var| {
                let raw = env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    (
                        "secret_env".to_owned(),
                        format!("the environment variable {var} is not set; it must hold the signing secret (whsec_...)"),
                    )
                })?;
                Secret::parse(&raw)
                    .map_err(|m| ("secret_env".to_owned(), format!("{var}: {m}")))
            })
            .collect()
    }

    /// The SMTP password, read from the environment (`password_env`).
    pub fn password(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, (String, String)> {
        match &self.password_env {
            None => Ok(None),
            Some(var) => env(var).filter(|v| !v.is_empty()).map(Some).ok_or_else(|| {
                (
                    "password_env".to_owned(),
                    format!(
                        "the environment variable {var} is not set; it must hold the SMTP password"
                    ),
                )
            }),
        }
    }
}

/// The host, port and path of an `http://` webhook URL.
pub fn webhook_address(url: &str) -> Result<(String, u16, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url:?}: this build of attune sends webhooks over http:// only (put a TLS-terminating proxy such as a sidecar in front, or use an outbox); https is not built in yet"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: the port {p:?} is not a number"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// `host:port`.
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port (e.g. smtp.example.com:587)"))?;
    let port = p
        .parse::<u16>()
        .map_err(|_| format!("{s:?}: the port {p:?} is not a number"))?;
    if h.is_empty() {
        return Err(format!("{s:?} names no host"));
    }
    Ok((h.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_read_and_https_says_why_not() {
        assert_eq!(
            webhook_address("http://127.0.0.1:8080/hooks/attune").unwrap(),
            ("127.0.0.1".into(), 8080, "/hooks/attune".into())
        );
        assert_eq!(
            webhook_address("http://crm.internal").unwrap(),
            ("crm.internal".into(), 80, "/".into())
        );
        assert!(
            webhook_address("https://crm.example")
                .unwrap_err()
                .contains("http:// only")
        );
        assert!(
            webhook_address("ftp://x")
                .unwrap_err()
                .contains("not an http:// URL")
        );
        assert!(
            webhook_address("http://h:99999/")
                .unwrap_err()
                .contains("port")
        );
    }
}
