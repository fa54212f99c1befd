//! Query strings and form fields from outside, validated: each error names the parameter
//! and says what is accepted. Pages and the API share these, so a filter means the same in
//! both.

use std::str::FromStr as _;

use chrono::NaiveDate;

use super::error::Problem;
use crate::domain::{Channel, DeliveryStatus};
use crate::store::{QueueCursor, QueueFilter, STATUSES};

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// The query parameters of a list of nudges.
pub const QUEUE_PARAMS: &[&str] = &[
    "status",
    "rule",
    "stage",
    "channel",
    "risk_band",
    "segment",
    "from",
    "to",
    "cursor",
    "limit",
];

/// A query string as (name, value) pairs, refusing unknown and repeated parameters.
pub fn pairs(raw: Option<&str>, accepted: &[&str]) -> Result<Vec<(String, String)>, Problem> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| {
            Problem::bad_request(
                "invalid_query",
                format!("the query string is not URL-encoded parameters: {e}"),
            )
        })?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if !accepted.contains(&k.as_str()) {
            return Err(Problem::bad_request(
                "invalid_parameter",
                format!(
                    "unknown query parameter {k:?}; accepted: {}",
                    accepted.join(", ")
                ),
            ));
        }
        if pairs[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(Problem::bad_request(
                "invalid_parameter",
                format!("query parameter {k:?} is given more than once"),
            ));
        }
    }
    Ok(pairs)
}

/// Refuses parameters given with no value. Pages treat a blank as "any" (an empty select
/// in a form); the API asks callers to leave such a parameter out.
pub fn no_blanks(pairs: &[(String, String)]) -> Result<(), Problem> {
    match pairs.iter().find(|(_, v)| v.trim().is_empty()) {
        Some((k, _)) => Err(invalid(
            k,
            "is empty; leave the parameter out to not filter by it".into(),
        )),
        None => Ok(()),
    }
}

/// The value of `name`, trimmed; blank counts as absent (an empty select in a form).
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    super::auth::field(pairs, name)
}

fn invalid(name: &str, message: String) -> Problem {
    Problem::bad_request("invalid_parameter", format!("{name}: {message}"))
}

/// A label the playbook writes (rule, stage, risk band, segment): 1 to 64 characters of
/// letters, digits, space and `_ - . : /`.
pub fn label(name: &str, value: &str) -> Result<String, Problem> {
    if value.chars().count() > 64 {
        return Err(invalid(
            name,
            format!("{value:?} is longer than 64 characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | ' ')))
    {
        return Err(invalid(
            name,
            format!("{value:?} has {c:?}; labels are letters, digits, space and _ - . : /"),
        ));
    }
    Ok(value.to_owned())
}

pub fn date(name: &str, value: &str) -> Result<NaiveDate, Problem> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| invalid(name, format!("{value:?} is not a date; write YYYY-MM-DD")))
}

pub fn integer(name: &str, value: &str, min: i64, max: i64) -> Result<i64, Problem> {
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            name,
            format!("{value:?} is not a whole number from {min} to {max}"),
        )),
    }
}

pub fn status(value: &str) -> Result<String, Problem> {
    if STATUSES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "status",
            format!(
                "unknown status {value:?}; expected one of: {}",
                STATUSES.join(", ")
            ),
        ))
    }
}

/// The channels a nudge may have: the ways of reaching a customer, and `task` (a task
/// for a team).
pub fn nudge_channels() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
    all.push(crate::playbook::TASK_CHANNEL);
    all
}

/// A nudge's channel, as a filter of deliveries: a channel or one of its other spellings
/// (`text` is `sms`), or `task`.
pub fn nudge_channel(name: &str, value: &str) -> Result<String, Problem> {
    if value.eq_ignore_ascii_case(crate::playbook::TASK_CHANNEL) {
        return Ok(crate::playbook::TASK_CHANNEL.to_owned());
    }
    Channel::from_str(value)
        .map(|c| c.as_str().to_owned())
        .map_err(|_| {
            invalid(
                name,
                format!(
                    "unknown channel {value:?}; expected one of: {}",
                    nudge_channels().join(", ")
                ),
            )
        })
}

/// The statuses of a delivery, as the API names them.
pub fn delivery_statuses() -> Vec<&'static str> {
    DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect()
}

pub fn delivery_status(value: &str) -> Result<DeliveryStatus, Problem> {
    DeliveryStatus::ALL
        .iter()
        .copied()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| {
            invalid(
                "status",
                format!(
                    "unknown delivery status {value:?}; expected one of: {}",
                    delivery_statuses().join(", ")
                ),
            )
        })
}

/// The query parameters of a list of deliveries.
pub const DELIVERY_PARAMS: &[&str] = &["status", "channel", "limit"];

/// A parsed list of deliveries: which status and channel, how many.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub channel: Option<String>,
    pub limit: i64,
}

/// Reads the parameters of a list of deliveries.
pub fn delivery_query(pairs: &[(String, String)]) -> Result<DeliveryQuery, Problem> {
    Ok(DeliveryQuery {
        status: get(pairs, "status").map(delivery_status).transpose()?,
        channel: get(pairs, "channel")
            .map(|v| nudge_channel("channel", v))
            .transpose()?,
        limit: get(pairs, "limit")
            .map(|v| integer("limit", v, 1, MAX_LIMIT))
            .transpose()?
            .unwrap_or(DEFAULT_LIMIT),
    })
}

/// A parsed list request: the filter, where to start, how many.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: QueueFilter,
    pub cursor: Option<QueueCursor>,
    pub limit: i64,
}

/// Reads the filter parameters (and cursor and limit) of a list of nudges.
pub fn queue_query(pairs: &[(String, String)]) -> Result<ListQuery, Problem> {
    let mut f = QueueFilter::default();
    if let Some(s) = get(pairs, "status") {
        f.status = status(s)?;
    }
    f.rule = get(pairs, "rule").map(|v| label("rule", v)).transpose()?;
    f.stage = get(pairs, "stage").map(|v| label("stage", v)).transpose()?;
    f.risk_band = get(pairs, "risk_band")
        .map(|v| label("risk_band", v))
        .transpose()?;
    f.segment = get(pairs, "segment")
        .map(|v| label("segment", v))
        .transpose()?;
    f.channel = get(pairs, "channel")
        .map(|v| {
            Channel::from_str(v)
                .map(|c| c.as_str().to_owned())
                .map_err(|e| invalid("channel", e.to_string()))
        })
        .transpose()?;
    f.from = get(pairs, "from").map(|v| date("from", v)).transpose()?;
    f.to = get(pairs, "to").map(|v| date("to", v)).transpose()?;
    if let (Some(from), Some(to)) = (f.from, f.to)
        && from > to
    {
        return Err(invalid(
            "to",
            format!("{to} is before from ({from}); the range is from..to, both days included"),
        ));
    }
    let cursor = get(pairs, "cursor")
        .map(|v| QueueCursor::decode(v).map_err(|e| invalid("cursor", e)))
        .transpose()?;
    let limit = get(pairs, "limit")
        .map(|v| integer("limit", v, 1, MAX_LIMIT))
        .transpose()?
        .unwrap_or(DEFAULT_LIMIT);
    Ok(ListQuery {
        filter: f,
        cursor,
        limit,
    })
}

/// The filter as query parameters (without cursor and limit), for links and forms.
pub fn filter_pairs(f: &QueueFilter) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if f.status != "proposed" {
        out.push(("status", f.status.clone()));
    }
    for (k, v) in [
        ("rule", &f.rule),
        ("stage", &f.stage),
        ("channel", &f.channel),
        ("risk_band", &f.risk_band),
        ("segment", &f.segment),
    ] {
        if let Some(v) = v {
            out.push((k, v.clone()));
        }
    }
    if let Some(d) = f.from {
        out.push(("from", d.to_string()));
    }
    if let Some(d) = f.to {
        out.push(("to", d.to_string()));
    }
    out
}

pub fn encode(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Result<ListQuery, Problem> {
        queue_query(&pairs(Some(raw), QUEUE_PARAMS)?)
    }

    #[test]
    fn filters_parse_and_round_trip() {
        let l = q("rule=welcome&channel=Text&from=2026-11-01&to=2026-11-30&limit=20&risk_band=high&stage=")
            .unwrap();
        assert_eq!(l.filter.rule.as_deref(), Some("welcome"));
        assert_eq!(l.filter.channel.as_deref(), Some("sms"), "aliases map on");
        assert_eq!(l.filter.stage, None, "blank is absent");
        assert_eq!(l.limit, 20);
        let again = q(&encode(&filter_pairs(&l.filter))).unwrap();
        assert_eq!(again.filter, l.filter);
        assert_eq!(q("").unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(q("").unwrap().filter.status, "proposed");
    }

    #[test]
    fn delivery_filters_parse_and_name_the_bad_parameter() {
        let d = |raw: &str| delivery_query(&pairs(Some(raw), DELIVERY_PARAMS)?);
        let q = d("status=dead&channel=Text&limit=20").unwrap();
        assert_eq!(q.status, Some(DeliveryStatus::Dead));
        assert_eq!(q.channel.as_deref(), Some("sms"));
        assert_eq!(q.limit, 20);
        assert_eq!(d("channel=task").unwrap().channel.as_deref(), Some("task"));
        assert_eq!(d("").unwrap().limit, DEFAULT_LIMIT);
        for (raw, expect) in [
            ("status=lost", "status: unknown delivery status \"lost\""),
            ("status=Sent", "status: unknown delivery status"),
            ("channel=pigeon", "channel: unknown channel \"pigeon\""),
            (
                "limit=0",
                "limit: \"0\" is not a whole number from 1 to 200",
            ),
            ("route=x", "unknown query parameter \"route\""),
        ] {
            let e = d(raw).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{raw}");
            assert!(e.message.contains(expect), "{raw}: {}", e.message);
        }
    }

    #[test]
    fn bad_filters_name_the_parameter() {
        for (raw, expect) in [
            ("colour=red", "unknown query parameter \"colour\""),
            ("rule=a&rule=b", "\"rule\" is given more than once"),
            ("status=maybe", "status: unknown status \"maybe\""),
            ("channel=pigeon", "channel: unknown channel \"pigeon\""),
            ("from=2026-13-01", "from: \"2026-13-01\" is not a date"),
            (
                "from=2026-11-02&to=2026-11-01",
                "to: 2026-11-01 is before from",
            ),
            (
                "limit=0",
                "limit: \"0\" is not a whole number from 1 to 200",
            ),
            ("limit=201", "limit"),
            ("cursor=abc", "cursor: \"abc\" is not a cursor"),
            ("rule=%3Cscript%3E", "rule: \"<script>\" has '<'"),
        ] {
            let e = q(raw).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{raw}");
            assert!(e.message.contains(expect), "{raw}: {}", e.message);
        }
    }
}
