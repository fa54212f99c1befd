//! The email receiver: SMTP through lettre, a pool of sessions to one server. Each nudge is
//! a message with a plain-text part (the playbook's message as approved) and an HTML
//! part made from it, a `Message-ID` stable per nudge (`<nudge_{id}@attune>`), and
//! `List-Unsubscribe` when a URL is configured. A 5xx answer is permanent; anything else
//! is tried again later.

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport as _, Message, Tokio1Executor};

use super::Attempt;
use crate::config::ChannelConfig;
use crate::delivery::Outgoing;

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    from: Mailbox,
    subject: String,
    unsubscribe: Option<String>,
    address_attribute: String,
    concurrency: u32,
    rate: u32,
}

#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

impl Email {
    pub fn new(c: &ChannelConfig, password: Option<String>) -> Result<Self, String> {
        let server = c.smtp.clone().unwrap_or_default();
        let (host, port) = crate::config::host_port(&server)?;
        let from: Mailbox = c
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("from: {e}"))?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(c.timeout))
            .pool_config(PoolConfig::new().max_size(c.concurrency));
        if let (Some(user), Some(pw)) = (&c.username, password) {
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        Ok(Self {
            transport: b.build(),
            server,
            from,
            subject: c.subject.clone(),
            unsubscribe: c.unsubscribe_url.clone(),
            address_attribute: c.address_attribute.clone(),
            concurrency: c.concurrency,
            rate: c.rate_per_second,
        })
    }

    /// An SMTP session with the server, logging in when credentials are configured.
    pub async fn probe(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{}: the SMTP server did not answer NOOP",
                self.server
            )),
            Err(e) => Err(format!("{}: {}", self.server, super::error_chain(&e))),
        }
    }

    pub async fn send(&self, batch: Vec<Outgoing>, deadline: i64) -> Vec<(i64, Attempt)> {
        super::in_flight(batch, self.concurrency, self.rate, deadline, |o| {
            self.one(o)
        })
        .await
    }

    fn message(&self, o: &Outgoing) -> Result<Message, String> {
        let Some(addr) = o.address.as_deref().filter(|a| !a.trim().is_empty()) else {
            return Err(format!(
                "the customer has no {:?} attribute to send to",
                self.address_attribute
            ));
        };
        let to: Mailbox = addr
            .parse()
            .map_err(|e| format!("{addr:?} is not an email address: {e}"))?;
        let fill = |t: &str| {
            t.replace("{rule}", &o.rule)
                .replace("{customer}", &o.customer)
        };
        let domain = self.from.email.domain().to_owned();
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(fill(&self.subject))
            .message_id(Some(format!("<{}@{domain}>", o.id)));
        if let Some(u) = &self.unsubscribe {
            b = b
                .header(ListUnsubscribe(format!("<{}>", fill(u))))
                .header(ListUnsubscribePost);
        }
        let html = format!(
            "<!doctype html><html><body>{}</body></html>",
            o.message
                .split("\n\n")
                .map(|p| format!("<p>{}</p>", escape(p).replace('\n', "<br>")))
                .collect::<String>()
        );
        b.multipart(MultiPart::alternative_plain_html(o.message.clone(), html))
            .map_err(|e| format!("building the message: {e}"))
    }

    async fn one(&self, o: Outgoing) -> Attempt {
        let m = match self.message(&o) {
            Ok(m) => m,
            Err(answer) => {
                return Attempt::Failed {
                    answer,
                    retry_at: None,
                    permanent: true,
                };
            }
        };
        match self.transport.send(m).await {
            Ok(_) => Attempt::Accepted,
            Err(e) => Attempt::Failed {
                answer: super::error_chain(&e),
                retry_at: None,
                permanent: e.is_permanent(),
            },
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
