//! Delivery of approved nudges (issue 20), the pure part: whether a nudge may go now
//! ([`check`], asked again at send time of what may have changed since approval), what
//! leaves attune ([`Outgoing`], the webhook body, the outbox line), when a failed attempt
//! is tried again ([`retry_delay`]), when a failing channel pauses ([`Breaker`]), and the
//! signatures ([`signature`]). The store, the clock and the network are the caller's.

pub mod signature;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::{Channel, Consent, NudgeStatus};
use crate::playbook::{Settings, TASK_CHANNEL, out_of_quiet_hours};

const DAY: i64 = 86_400;

/// What is known at send time about one nudge, read in the moment before it goes.
#[derive(Debug, Clone)]
pub struct SendFacts<'a> {
    pub status: NudgeStatus,
    pub snoozed_until: Option<i64>,
    pub send_after: Option<i64>,
    pub expires_at: Option<i64>,
    /// The nudge's channel: `email`, `sms`, `phone`, `post` or `task`.
    pub channel: &'a str,
    /// The customer's consent as it is now.
    pub consent: Consent,
    pub churned_on: Option<NaiveDate>,
    /// A notice the business must give: needs no marketing consent by post and is not
    /// limited by the contact cap.
    pub regulatory: bool,
    /// Why an offer must wait now (an open complaint), from `playbook::offer_hold`.
    pub complaint_hold: Option<String>,
    /// When the customer's other nudges that count under the contact cap were sent, within
    /// the cap's window.
    pub sent_in_window: &'a [i64],
    /// The customer's time zone, for quiet hours.
    pub tz: Tz,
}

/// What to do with a nudge now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not yet: try again at `until` (unix seconds), and say why meanwhile.
    Wait {
        until: i64,
        why: String,
    },
    /// Never: it may no longer go.
    Block {
        reason: String,
    },
}

/// Whether a nudge approved earlier may go at `now`: its status, the customer's
/// departure, its expiry, consent for its channel, a complaint that holds offers, the
/// contact cap and quiet hours, in that order. The first that says no decides.
pub fn check(f: &SendFacts<'_>, s: &Settings, today: NaiveDate, now: i64) -> Verdict {
    match f.status {
        NudgeStatus::Approved => {}
        NudgeStatus::Snoozed => {
            return Verdict::Wait {
                until: f.snoozed_until.unwrap_or(now + 3600).max(now + 1),
                why: "snoozed by a reviewer".into(),
            };
        }
        NudgeStatus::Proposed | NudgeStatus::Deferred => {
            return Verdict::Wait {
                until: f.send_after.unwrap_or(now + 3600).max(now + 1),
                why: format!("the nudge is {} again", f.status.as_str()),
            };
        }
        other => {
            return Verdict::Block {
                reason: format!("the nudge is {} now", other.as_str()),
            };
        }
    }
    if let Some(left) = f.churned_on
        && left <= today
    {
        return Verdict::Block {
            reason: format!("the customer left on {left}"),
        };
    }
    if let Some(x) = f.expires_at
        && x <= now
    {
        return Verdict::Block {
            reason: format!("it expired at {}", iso(x)),
        };
    }
    if let Ok(channel) = f.channel.parse::<Channel>() {
        let notice_by_post = f.regulatory && channel == Channel::Post;
        if !notice_by_post && !f.consent.allows(channel) {
            return Verdict::Block {
                reason: format!("the customer no longer consents to {}", channel.as_str()),
            };
        }
    }
    if let Some(why) = &f.complaint_hold {
        return Verdict::Wait {
            until: now + 3600,
            why: why.clone(),
        };
    }
    if !f.regulatory && s.max_nudges > 0 {
        let window = s.window_days as i64 * DAY;
        let mut recent: Vec<i64> = f
            .sent_in_window
            .iter()
            .copied()
            .filter(|t| *t > now - window)
            .collect();
        if recent.len() >= s.max_nudges as usize {
            recent.sort_unstable();
            // The slot frees when the oldest of the last `max_nudges` leaves the window.
            let oldest = recent[recent.len() - s.max_nudges as usize];
            return Verdict::Wait {
                until: (oldest + window).max(now + 1),
                why: format!(
                    "the contact cap: {} sent in the last {} days",
                    recent.len(),
                    s.window_days
                ),
            };
        }
    }
    if f.channel != TASK_CHANNEL && f.channel != Channel::Post.as_str() {
        let t = out_of_quiet_hours(now, f.tz, s.quiet_start, s.quiet_end);
        if t > now {
            return Verdict::Wait {
                until: t,
                why: format!("quiet hours in {}", f.tz.name()),
            };
        }
    }
    Verdict::Send
}

/// Seconds to wait before attempt `attempt + 1` after `attempt` failed (1-based):
/// `base` doubled per attempt up to `cap`, then "equal jitter" (half fixed, half drawn
/// from `jitter` in `[0, 1)`), so retries from many nudges spread instead of arriving
/// together. At least one second.
pub fn retry_delay(attempt: u32, base_secs: f64, cap_secs: f64, jitter: f64) -> i64 {
    let exp = base_secs * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let d = exp.min(cap_secs);
    (d / 2.0 + jitter.clamp(0.0, 1.0) * d / 2.0)
        .round()
        .max(1.0) as i64
}

/// A receiver's `Retry-After`: seconds, or an HTTP date; `None` if neither.
pub fn retry_after(value: &str, now: i64) -> Option<i64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return Some(now + secs.clamp(0, 86_400));
    }
    DateTime::parse_from_rfc2822(v)
        .ok()
        .map(|t| t.timestamp().clamp(now, now + 86_400))
}

/// A channel's circuit breaker: after `threshold` failed attempts in a row the channel
/// pauses for `cool_off` seconds (doubling while it keeps failing, up to an hour); then
/// one nudge is tried (a probe) and its answer closes or reopens the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub threshold: u32,
    pub cool_off: i64,
    pub failures: u32,
    pub paused_until: Option<i64>,
    trips: u32,
}

/// How much a channel may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    All,
    /// One nudge, to see whether the receiver is back.
    Probe,
    PausedUntil(i64),
}

impl Breaker {
    pub fn new(threshold: u32, cool_off: i64) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_off: cool_off.max(1),
            failures: 0,
            paused_until: None,
            trips: 0,
        }
    }

    pub fn allowance(&self, now: i64) -> Allowance {
        match self.paused_until {
            Some(t) if t > now => Allowance::PausedUntil(t),
            Some(_) => Allowance::Probe,
            None => Allowance::All,
        }
    }

    /// A success closes the breaker; true if it was open or counting.
    pub fn success(&mut self) -> bool {
        let changed = self.failures > 0 || self.paused_until.is_some();
        self.failures = 0;
        self.paused_until = None;
        self.trips = 0;
        changed
    }

    /// A failed attempt; the time the channel is paused until when this one trips it.
    pub fn failure(&mut self, now: i64) -> Option<i64> {
        self.failures += 1;
        let probing = self.paused_until.is_some_and(|t| t <= now);
        if probing || self.failures >= self.threshold {
            let pause = (self.cool_off << self.trips.min(12)).min(3600);
            self.trips += 1;
            let until = now + pause;
            self.paused_until = Some(until);
            return Some(until);
        }
        None
    }
}

/// One nudge as it leaves attune: the webhook body's `data`, an outbox line, an email.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outgoing {
    /// Stable per nudge (`nudge_{id}`): the `webhook-id`, the outbox line's `id`, the
    /// email's `Message-ID` local part. A receiver that dedupes on it sees each once.
    pub id: String,
    pub nudge_id: i64,
    /// The customer's id in the business's own systems.
    pub customer: String,
    pub rule: String,
    pub occasion: String,
    pub channel: String,
    pub stage: String,
    pub message: String,
    pub contact_role: Option<String>,
    pub contact_name: Option<String>,
    /// Where an email goes (`[[channels]] address_attribute` of the customer), if known.
    pub address: Option<String>,
    pub expires_at: Option<String>,
    pub approved_by: Option<String>,
    /// When attune last checked that it may go (consent, expiry, status): RFC 3339 with
    /// milliseconds; what changed before this instant was seen by the check.
    pub checked_at: String,
}

/// The message id of a nudge, stable across attempts and restarts.
pub fn message_id(nudge_id: i64) -> String {
    format!("nudge_{nudge_id}")
}

/// A time as RFC 3339 in UTC, seconds.
pub fn iso(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// A time in milliseconds as RFC 3339 in UTC, with milliseconds.
pub fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The type of event a webhook or outbox line carries: a call, a letter or a team's task
/// is work for staff (`nudge.task`); the rest are messages to send (`nudge.approved`).
pub fn event_type(o: &Outgoing) -> &'static str {
    if o.channel == TASK_CHANNEL
        || o.channel == Channel::Phone.as_str()
        || o.channel == Channel::Post.as_str()
    {
        "nudge.task"
    } else {
        "nudge.approved"
    }
}

/// The webhook body: `{"type", "timestamp", "data"}`, as Standard Webhooks suggests.
pub fn webhook_body(o: &Outgoing, now: i64) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        r#type: &'static str,
        timestamp: String,
        data: &'a Outgoing,
    }
    serde_json::to_vec(&Body {
        r#type: event_type(o),
        timestamp: iso(now),
        data: o,
    })
    .expect("plain data serialises")
}

/// An outbox line in NDJSON: the webhook body with the id beside it, and a newline.
pub fn ndjson_line(o: &Outgoing, now: i64) -> Vec<u8> {
    #[derive(Serialize)]
    struct Line<'a> {
        id: &'a str,
        r#type: &'static str,
        timestamp: String,
        data: &'a Outgoing,
    }
    let mut v = serde_json::to_vec(&Line {
        id: &o.id,
        r#type: event_type(o),
        timestamp: iso(now),
        data: o,
    })
    .expect("plain data serialises");
    v.push(b'\n');
    v
}

/// The CSV outbox's header, written first in every file.
pub const CSV_HEADER: &[&str] = &[
    "id",
    "type",
    "nudge_id",
    "customer",
    "rule",
    "occasion",
    "channel",
    "stage",
    "message",
    "contact_role",
    "contact_name",
    "address",
    "expires_at",
    "approved_by",
    "checked_at",
];

/// The CSV outbox's record of a nudge, in [`CSV_HEADER`]'s order.
pub fn csv_record(o: &Outgoing) -> Vec<String> {
    vec![
        o.id.clone(),
        event_type(o).to_owned(),
        o.nudge_id.to_string(),
        o.customer.clone(),
        o.rule.clone(),
        o.occasion.clone(),
        o.channel.clone(),
        o.stage.clone(),
        o.message.clone(),
        o.contact_role.clone().unwrap_or_default(),
        o.contact_name.clone().unwrap_or_default(),
        o.address.clone().unwrap_or_default(),
        o.expires_at.clone().unwrap_or_default(),
        o.approved_by.clone().unwrap_or_default(),
        o.checked_at.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(sent: &[i64]) -> SendFacts<'_> {
        SendFacts {
            status: NudgeStatus::Approved,
            snoozed_until: None,
            send_after: None,
            expires_at: None,
            channel: "email",
            consent: Consent::ALL,
            churned_on: None,
            regulatory: false,
            complaint_hold: None,
            sent_in_window: sent,
            tz: Tz::UTC,
        }
    }

    // 2026-12-07 12:00 UTC: outside the default quiet hours (21:00-08:00).
    const NOON: i64 = 1_796_644_800;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()
    }

    #[test]
    fn an_approved_nudge_with_nothing_against_it_goes() {
        assert_eq!(
            check(&facts(&[]), &Settings::default(), today(), NOON),
            Verdict::Send
        );
    }

    #[test]
    fn what_changed_since_approval_blocks_it() {
        let s = Settings::default();
        let mut f = facts(&[]);
        f.consent.email = false;
        assert_eq!(
            check(&f, &s, today(), NOON),
            Verdict::Block {
                reason: "the customer no longer consents to email".into()
            }
        );
        let mut f = facts(&[]);
        f.expires_at = Some(NOON);
        assert!(
            matches!(check(&f, &s, today(), NOON), Verdict::Block { reason } if reason.contains("expired"))
        );
        let mut f = facts(&[]);
        f.status = NudgeStatus::Withdrawn;
        assert!(
            matches!(check(&f, &s, today(), NOON), Verdict::Block { reason } if reason.contains("withdrawn"))
        );
        let mut f = facts(&[]);
        f.churned_on = Some(today());
        assert!(
            matches!(check(&f, &s, today(), NOON), Verdict::Block { reason } if reason.contains("left"))
        );
    }

    #[test]
    fn a_regulatory_notice_by_post_needs_no_consent_and_ignores_the_cap() {
        let s = Settings::default();
        let sent = [NOON - 10, NOON - 20, NOON - 30];
        let mut f = facts(&sent);
        f.channel = "post";
        f.consent = Consent::default();
        f.regulatory = true;
        assert_eq!(check(&f, &s, today(), NOON), Verdict::Send);
    }

    #[test]
    fn the_cap_waits_for_the_oldest_to_leave_the_window_and_quiet_hours_for_morning() {
        let s = Settings::default();
        let sent = [NOON - 3 * DAY, NOON - DAY];
        let v = check(&facts(&sent), &s, today(), NOON);
        assert_eq!(
            v,
            Verdict::Wait {
                until: NOON - 3 * DAY + 14 * DAY,
                why: "the contact cap: 2 sent in the last 14 days".into()
            }
        );
        // Sent long ago: outside the window, not counted.
        let old = [NOON - 30 * DAY, NOON - 20 * DAY];
        assert_eq!(check(&facts(&old), &s, today(), NOON), Verdict::Send);
        let night = NOON + 11 * 3600; // 23:00 UTC
        let v = check(&facts(&[]), &s, today(), night);
        assert_eq!(
            v,
            Verdict::Wait {
                until: NOON + 20 * 3600,
                why: "quiet hours in UTC".into()
            }
        );
        let mut task = facts(&[]);
        task.channel = "task";
        assert_eq!(check(&task, &s, today(), night), Verdict::Send);
    }

    #[test]
    fn a_complaint_holds_an_offer_and_a_snooze_waits() {
        let s = Settings::default();
        let mut f = facts(&[]);
        f.complaint_hold = Some("held while the complaint is unresolved".into());
        assert!(
            matches!(check(&f, &s, today(), NOON), Verdict::Wait { until, .. } if until == NOON + 3600)
        );
        let mut f = facts(&[]);
        f.status = NudgeStatus::Snoozed;
        f.snoozed_until = Some(NOON + 99);
        assert!(
            matches!(check(&f, &s, today(), NOON), Verdict::Wait { until, .. } if until == NOON + 99)
        );
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        assert_eq!(retry_delay(1, 10.0, 3600.0, 0.0), 5);
        assert_eq!(retry_delay(1, 10.0, 3600.0, 1.0), 10);
        assert_eq!(retry_delay(4, 10.0, 3600.0, 1.0), 80);
        assert_eq!(retry_delay(30, 10.0, 3600.0, 1.0), 3600);
        assert_eq!(retry_delay(30, 10.0, 3600.0, 0.0), 1800);
        assert_eq!(retry_delay(1, 0.1, 1.0, 0.0), 1);
        assert_eq!(retry_after("7", 100), Some(107));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480),
            Some(1445412480)
        );
        assert_eq!(retry_after("soon", 100), None);
    }

    #[test]
    fn the_breaker_pauses_after_failures_in_a_row_then_probes() {
        let mut b = Breaker::new(3, 10);
        assert_eq!(b.failure(100), None);
        assert_eq!(b.failure(100), None);
        assert_eq!(b.failure(100), Some(110));
        assert_eq!(b.allowance(105), Allowance::PausedUntil(110));
        assert_eq!(b.allowance(110), Allowance::Probe);
        // The probe fails: paused again, for longer.
        assert_eq!(b.failure(111), Some(131));
        assert_eq!(b.allowance(131), Allowance::Probe);
        assert!(b.success());
        assert_eq!(b.allowance(131), Allowance::All);
        assert!(!b.success());
    }

    #[test]
    fn the_body_and_the_lines_carry_the_stable_id() {
        let o = Outgoing {
            id: message_id(42),
            nudge_id: 42,
            customer: "C-1".into(),
            rule: "bill_explainer".into(),
            occasion: "first_invoice:2026-12-10".into(),
            channel: "email".into(),
            stage: "early".into(),
            message: "Your first bill, explained, \"with quotes\"".into(),
            contact_role: None,
            contact_name: None,
            address: Some("a@example.com".into()),
            expires_at: None,
            approved_by: Some("rule".into()),
            checked_at: iso(NOON),
        };
        let body: serde_json::Value = serde_json::from_slice(&webhook_body(&o, NOON)).unwrap();
        assert_eq!(body["type"], "nudge.approved");
        assert_eq!(body["data"]["id"], "nudge_42");
        let line = ndjson_line(&o, NOON);
        assert!(line.ends_with(b"\n"));
        let line: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(line["id"], "nudge_42");
        assert_eq!(csv_record(&o).len(), CSV_HEADER.len());
    }
}
