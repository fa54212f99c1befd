//! What the pages show, formatted once in Rust so the templates only place text: times,
//! money, words for event kinds and drivers, and small inline SVG charts (drawn by the one
//! chart module, `report::svg`; no JavaScript, nothing fetched; every label escaped).

use crate::domain::Currency;

/// `2026-11-24 13:05 UTC`.
pub fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

pub fn time_opt(secs: Option<i64>) -> String {
    secs.map(time).unwrap_or_else(|| "—".into())
}

/// `2026-11-24`.
pub fn day(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "—".into())
}

/// `$12,345.67`, in the business's currency.
pub fn money(currency: &Currency, x: f64) -> String {
    currency.format(x)
}

pub fn money_opt(currency: &Currency, x: Option<f64>) -> String {
    x.map(|x| currency.format(x)).unwrap_or_else(|| "—".into())
}

/// `1,234`.
pub fn count(n: i64) -> String {
    let digits = crate::domain::money::grouped(n.unsigned_abs() as f64, 0);
    if n < 0 { format!("-{digits}") } else { digits }
}

/// A value as one segment of a URL path: letters, digits and `-._~` as they are, every
/// other byte percent-encoded (`C 1/2` -> `C%201%2F2`).
pub fn path_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A count with its noun, singular for one: `1 customer`, `1,204 customers`.
pub fn counted(n: i64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `12.3%`.
pub fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1}%", share * 100.0)
    } else {
        "—".into()
    }
}

pub fn percent_opt(share: Option<f64>) -> String {
    share.map(percent).unwrap_or_else(|| "—".into())
}

/// A name from the playbook, the data or the database (a rule, stage, segment, event
/// kind) as a reviewer reads it: `first_disagreement` -> `first disagreement`. Pages show
/// names through this or [`words`], never as stored.
pub fn label(name: &str) -> String {
    name.replace('_', " ")
}

/// An event kind or rule name in words: `complaint_opened` -> `Complaint opened`.
pub fn words(name: &str) -> String {
    let mut s = name.replace('_', " ");
    if let Some(first) = s.get(0..1) {
        let upper = first.to_uppercase();
        s.replace_range(0..1, &upper);
    }
    s
}

/// A delivery's status as a word for its badge: `dead` reads `failed`.
pub fn delivery_status(status: &str) -> String {
    match status {
        "dead" => "failed".into(),
        other => label(other),
    }
}

/// Where a delivery stands, in words: a pending one that failed before waits for its
/// next attempt, a dead one gave up after its attempts.
pub fn delivery_state(status: &str, attempts: i64) -> String {
    match status {
        "pending" if attempts > 0 => format!(
            "waiting to be tried again after {}",
            counted(attempts, "failed attempt", "failed attempts")
        ),
        "pending" => "waiting to be sent".into(),
        "sent" => "sent: the receiver accepted it".into(),
        "dead" => format!(
            "failed: no more attempts after {}",
            counted(attempts, "attempt", "attempts")
        ),
        "blocked" => "blocked: it may no longer go out and was not sent".into(),
        "cancelled" => "cancelled: it will not be sent".into(),
        other => label(other),
    }
}

/// A configured channel's pause in a sentence: `crm webhook is paused until 2026-12-08
/// 14:05 UTC after 5 failed attempts in a row: HTTP 503`.
pub fn channel_pause(name: &str, failures: i64, until: i64, reason: Option<&str>) -> String {
    let mut s = format!("{} is paused until {}", label(name), time(until));
    if failures > 0 {
        s.push_str(&format!(
            " after {} in a row",
            counted(failures, "failed attempt", "failed attempts")
        ));
    }
    if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        s.push_str(&format!(": {r}"));
    }
    s
}

/// A span of time, to the second under a minute and coarser after: `42 s`, `3 min 20 s`,
/// `2 h 5 min`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// The customer ids of a shard's range `(after_id, upto_id]` in words: `ids 10001 to
/// 20000`; the first and last shards are open-ended (`ids up to 10000`, `ids above
/// 190000`), and a run in one shard takes `all ids`.
pub fn id_range(after_id: i64, upto_id: i64) -> String {
    match (after_id == i64::MIN, upto_id == i64::MAX) {
        (true, true) => "all ids".into(),
        (true, false) => format!("ids up to {upto_id}"),
        (false, true) => format!("ids above {after_id}"),
        (false, false) if after_id.saturating_add(1) == upto_id => format!("id {upto_id}"),
        (false, false) => format!("ids {} to {upto_id}", after_id.saturating_add(1)),
    }
}

/// The order a split run's shards are counted in: what is done first. The same statuses
/// as [`crate::store::SHARD_STATUSES`] (a test keeps them so).
pub const SHARD_PROGRESS: [&str; 4] = ["done", "running", "queued", "failed"];

/// Where a scoring run split into shards stands, in a line (`attune jobs` and the desk's
/// jobs page): `scoring run 12 (full, as of 2026-12-07): 20 shards: 14 done, 3 running, 3
/// queued, 0 failed; 140,000 of 200,000 customers scored`, and how it ended once it has
/// (`finished at ...`, with `time` formatting the instant, or `failed: why`). Customers
/// are those the shards planned when the run was split and those the finished ones scored.
pub fn shard_progress(
    run: &crate::store::ScoringRun,
    failed: Option<&str>,
    shards: &[crate::store::ShardRow],
    time: impl Fn(i64) -> String,
) -> String {
    let counts = SHARD_PROGRESS
        .iter()
        .map(|status| {
            let n = shards.iter().filter(|s| s.status == *status).count();
            format!("{} {status}", count(n as i64))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let planned: i64 = shards.iter().map(|s| s.planned).sum();
    let scored: i64 = shards.iter().filter_map(|s| s.scored).sum();
    let mut line = format!(
        "scoring run {} ({}, as of {}): {}: {counts}; {} of {} scored",
        run.id,
        label(&run.scope),
        run.as_of,
        counted(shards.len() as i64, "shard", "shards"),
        count(scored),
        counted(planned, "customer", "customers"),
    );
    if let Some(why) = failed {
        line.push_str(&format!("; failed: {why}"));
    } else if let Some(at) = run.finished_at {
        line.push_str(&format!("; finished at {}", time(at)));
    }
    line
}

/// What an event's value means, in words.
pub fn event_value(currency: &Currency, kind: &str, value: Option<f64>) -> String {
    let Some(v) = value else {
        return String::new();
    };
    match kind {
        "invoice_issued" => format!("invoice of {}", currency.format(v)),
        "payment_made" => format!("paid {}", currency.format(v)),
        "payment_failed" => format!("{} not collected", currency.format(v)),
        "complaint_resolved" => format!("satisfaction {v:.0} of 5"),
        "usage" => format!("usage {v:.1}"),
        "meter_reading" => format!("reading {v:.1}"),
        _ => format!("{v}"),
    }
}

/// An audit entry as a sentence: who did what to which thing, with the reason when one
/// was given (`approved nudge 12: fits her usage`). The entry's details are shown apart,
/// behind a toggle ([`detail_lines`]).
pub fn audit_sentence(action: &str, subject: &str, detail: &serde_json::Value) -> String {
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let reason = text(detail.get("reason"))
        .or_else(|| text(detail.get("after").and_then(|a| a.get("decision_reason"))));
    let with_reason = |s: String| match &reason {
        Some(r) => format!("{s}: {r}"),
        None => s,
    };
    let (kind, id) = subject.split_once(':').unwrap_or((subject, ""));
    let thing = match kind {
        "nudge" => format!("nudge {id}"),
        "user" => format!("user {id}"),
        "model" => format!("model {id}"),
        _ => label(subject),
    };
    match action {
        "nudge.edited" => format!("edited {thing}"),
        "plan.approved_with_rule" => {
            let counts: Vec<(String, i64)> = detail
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((label(k), v.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default();
            let total = counts.iter().map(|(_, n)| n).sum();
            format!(
                "approved {} with their rule ({})",
                counted(total, "nudge", "nudges"),
                counts
                    .iter()
                    .map(|(k, n)| format!("{k} {}", count(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        "model.promoted" => with_reason(format!("made {thing} the champion")),
        "model.rolled_back" => with_reason(format!("rolled back to {thing}")),
        "model.kept_champion" => with_reason(format!("kept the champion over {thing}")),
        "user.created" => format!("added {thing}"),
        "user.updated" => format!("changed {thing}"),
        "user.password_changed" => format!("changed the password of {thing}"),
        "token.created" => format!("made an API token for {thing}"),
        "token.revoked" => format!("revoked an API token of {thing}"),
        "login.locked" => format!("locked sign-in for {}", label(subject)),
        "login.unlocked" => format!("unlocked sign-in for {}", label(subject)),
        "delivery.retry" => format!("retried the delivery of {thing}"),
        "delivery.cancel" => format!("cancelled the delivery of {thing}"),
        a => match a.strip_prefix("nudge.") {
            Some(verb) => with_reason(format!("{} {thing}", label(verb))),
            None => with_reason(format!("{} {thing}", label(&a.replace('.', " ")))),
        },
    }
}

/// An audit entry's details as (what, value) lines in words; nested values one line each.
pub fn detail_lines(detail: &serde_json::Value) -> Vec<(String, String)> {
    fn value(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) if is_name(s) => label(s),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} {}", label(k), value(v)))
                .collect::<Vec<_>>()
                .join(", "),
            serde_json::Value::Array(a) => a.iter().map(value).collect::<Vec<_>>().join(", "),
            serde_json::Value::Null => "—".into(),
            v => v.to_string(),
        }
    }
    match detail {
        serde_json::Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (words(k), value(v)))
            .collect(),
        serde_json::Value::Null => Vec::new(),
        v => vec![("Detail".into(), value(v))],
    }
}

/// A lowercase identifier such as `first_disagreement` (shown through [`label`]).
fn is_name(s: &str) -> bool {
    s.contains('_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// One of a score's top drivers, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverView {
    pub text: String,
    pub raises: bool,
    /// Share of the largest driver's weight, for a bar (0 to 100).
    pub width: u32,
}

/// A score's drivers, for the page.
pub fn score_drivers(list: &[crate::model::Driver]) -> Vec<DriverView> {
    bars(
        list.iter()
            .map(|d| (d.description.clone(), d.contribution))
            .collect(),
    )
}

/// Reads drivers as a nudge's reason keeps them (`[{description, contribution, ...}]`);
/// anything else in the JSON is skipped.
pub fn drivers(json: &serde_json::Value) -> Vec<DriverView> {
    let items: Vec<(String, f64)> = json
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    let text = d
                        .get("description")
                        .and_then(|v| v.as_str())
                        .or_else(|| d.get("feature").and_then(|v| v.as_str()))?;
                    let c = d
                        .get("contribution")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0);
                    Some((text.to_owned(), c))
                })
                .collect()
        })
        .unwrap_or_default();
    bars(items)
}

/// Drivers in words with their weights as bars, the largest full width.
fn bars(items: Vec<(String, f64)>) -> Vec<DriverView> {
    let max = items.iter().map(|(_, c)| c.abs()).fold(0.0_f64, f64::max);
    items
        .into_iter()
        .map(|(text, c)| DriverView {
            text,
            raises: c > 0.0,
            width: if max > 0.0 {
                ((c.abs() / max) * 100.0).round() as u32
            } else {
                0
            },
        })
        .collect()
}

/// Horizontal bars, one per (label, value), with the value written beside each bar
/// (drawn by the one chart module, `report::svg`).
pub use crate::report::svg::bar_chart;

/// Ten vertical bars: the shares of scores in each tenth of the probability range.
pub fn histogram(title: &str, shares: &[f64]) -> String {
    crate::report::svg::histogram(title, shares, percent)
}

/// A line of churn probability over time (oldest to newest), from 0 to 1.
pub fn sparkline(title: &str, points: &[(i64, f64)]) -> String {
    crate::report::svg::sparkline(title, points, day, percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_read_in_words() {
        let mut shown = SHARD_PROGRESS.to_vec();
        let mut stored = crate::store::SHARD_STATUSES.to_vec();
        shown.sort_unstable();
        stored.sort_unstable();
        assert_eq!(shown, stored, "every shard status is counted once");
        assert_eq!(id_range(i64::MIN, i64::MAX), "all ids");
        assert_eq!(id_range(i64::MIN, 10000), "ids up to 10000");
        assert_eq!(id_range(10000, 20000), "ids 10001 to 20000");
        assert_eq!(id_range(6, 7), "id 7");
        assert_eq!(id_range(190000, i64::MAX), "ids above 190000");
        assert_eq!(duration(-3), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(200), "3 min 20 s");
        assert_eq!(duration(7500), "2 h 5 min");
    }

    #[test]
    fn a_split_run_reads_as_a_line() {
        let run = crate::store::ScoringRun {
            id: 12,
            model_version: "v1".into(),
            as_of: "2026-12-07".parse().unwrap(),
            trigger: "score@2026-12-07T02:00:00Z".into(),
            started_at: 0,
            finished_at: None,
            customers: 0,
            scope: "full".into(),
            pruned_at: None,
        };
        let shard =
            |shard: i32, status: &str, planned: i64, scored: Option<i64>| crate::store::ShardRow {
                run_id: 12,
                shard,
                after_id: i64::from(shard) * 10,
                upto_id: i64::from(shard) * 10 + 10,
                planned,
                status: status.into(),
                holder: None,
                attempts: 1,
                lease_until: None,
                started_at: None,
                finished_at: None,
                scored,
                error: None,
            };
        let shards = [
            shard(0, "done", 70_000, Some(70_000)),
            shard(1, "done", 70_000, Some(70_000)),
            shard(2, "running", 60_000, None),
        ];
        assert_eq!(
            shard_progress(&run, None, &shards, time),
            "scoring run 12 (full, as of 2026-12-07): 3 shards: 2 done, 1 running, 0 queued, \
             0 failed; 140,000 of 200,000 customers scored"
        );
        let one = [shard(0, "done", 1, Some(1))];
        let finished = crate::store::ScoringRun {
            finished_at: Some(1_796_608_800),
            ..run.clone()
        };
        assert_eq!(
            shard_progress(&finished, None, &one, time),
            "scoring run 12 (full, as of 2026-12-07): 1 shard: 1 done, 0 running, 0 queued, \
             0 failed; 1 of 1 customer scored; finished at 2026-12-07 02:00 UTC"
        );
        assert!(
            shard_progress(
                &run,
                Some("shard 2 failed after 3 attempts: boom"),
                &one,
                time
            )
            .ends_with("; failed: shard 2 failed after 3 attempts: boom")
        );
    }

    #[test]
    fn numbers_read_like_numbers() {
        let usd = Currency::default();
        assert_eq!(money(&usd, 1234567.891), "$1,234,567.89");
        assert_eq!(money_opt(&usd, None), "—");
        assert_eq!(
            event_value(&usd, "payment_failed", Some(-5.5)),
            "-$5.50 not collected"
        );
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(-1_234), "-1,234");
        assert_eq!(count(7), "7");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(words("complaint_opened"), "Complaint opened");
        assert_eq!(
            audit_sentence(
                "nudge.approved",
                "nudge:12",
                &serde_json::json!({"from": "proposed", "to": "approved", "reason": "fits her usage"})
            ),
            "approved nudge 12: fits her usage"
        );
        assert_eq!(
            audit_sentence(
                "plan.approved_with_rule",
                "run:3",
                &serde_json::json!({"bill_explainer": 1, "welcome": 2})
            ),
            "approved 3 nudges with their rule (bill explainer 1, welcome 2)"
        );
        assert_eq!(
            detail_lines(
                &serde_json::json!({"to": "approved", "by_rule": {"bill_explainer": 1}, "x": null})
            ),
            vec![
                ("By rule".to_owned(), "bill explainer 1".to_owned()),
                ("To".to_owned(), "approved".to_owned())
            ]
        );
        assert_eq!(
            event_value(&usd, "complaint_resolved", Some(4.0)),
            "satisfaction 4 of 5"
        );
    }

    #[test]
    fn deliveries_read_in_words() {
        assert_eq!(delivery_state("pending", 0), "waiting to be sent");
        assert_eq!(
            delivery_state("pending", 1),
            "waiting to be tried again after 1 failed attempt"
        );
        assert_eq!(
            delivery_state("dead", 5),
            "failed: no more attempts after 5 attempts"
        );
        assert_eq!(delivery_status("dead"), "failed");
        let at = 1_796_000_000;
        assert_eq!(
            channel_pause("crm_webhook", 5, at, Some("HTTP 503 from the receiver")),
            format!(
                "crm webhook is paused until {} after 5 failed attempts in a row: HTTP 503 from the receiver",
                time(at)
            )
        );
        assert_eq!(
            channel_pause("mail", 0, at, None),
            format!("mail is paused until {}", time(at))
        );
        assert_eq!(
            audit_sentence("delivery.cancel", "nudge:7", &serde_json::json!({})),
            "cancelled the delivery of nudge 7"
        );
    }

    #[test]
    fn drivers_read_the_models_json_and_skip_the_rest() {
        let d = drivers(&serde_json::json!([
            {"description": "2 failed payments in 90 days", "contribution": 0.8},
            {"description": "tenure 3 years", "contribution": -0.4},
            {"unexpected": true},
        ]));
        assert_eq!(d.len(), 2);
        assert!(d[0].raises && !d[1].raises);
        assert_eq!((d[0].width, d[1].width), (100, 50));
        assert!(drivers(&serde_json::json!({"not": "a list"})).is_empty());
    }

    #[test]
    fn charts_escape_their_labels() {
        let s = bar_chart("t", &[("<b>".into(), 1.0)], |v| v.to_string());
        assert!(s.contains("&lt;b&gt;") && !s.contains("<b>"));
        assert!(histogram("h", &[0.5, 0.5]).starts_with("<svg"));
        assert!(sparkline("s", &[(0, 0.2), (86_400, 0.4)]).contains("polyline"));
    }
}
