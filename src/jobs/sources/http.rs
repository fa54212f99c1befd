//! The http source: the company's systems POST batches of events to `/v1/events`, a JSON
//! array or NDJSON, authenticated by the source's bearer token. Each request is one
//! transaction; the answer counts what was accepted, what was already there, and every
//! rejection with its reason (rejected events are kept in quarantine, never dropped).

use serde::Serialize;

use super::map_rows;
use crate::config::SourceConfig;
use crate::ingest::mapping::Rejection;
use crate::ingest::record::{Record, json_record};
use crate::jobs::JobContext;
use crate::store::{CustomerIds, FailPoint, IngestBatch};

/// At most this many events in one request.
pub const MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpIngestReport {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub rejections: Vec<HttpRejection>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRejection {
    /// 0-based position of the event in the request.
    pub index: usize,
    pub code: &'static str,
    pub reason: String,
    /// Whether it is kept in quarantine (always: `attune quarantine list`).
    pub quarantined: bool,
}

/// A request body that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// How a request's body is framed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: one JSON array of event objects.
    JsonArray,
    /// `application/x-ndjson` (or `application/ndjson`, `application/jsonl`): one JSON
    /// object per line.
    Ndjson,
}

impl BodyFormat {
    /// The format a `Content-Type` value names; `None` for any other type (answered 415).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let media = value.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Some(Self::JsonArray),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

/// Splits a body into items: a JSON array of objects, or NDJSON (one object per line).
///
/// Text that is not JSON refuses the whole request ([`BodyError`], a 400 naming where),
/// so a body garbled in transit is never half-stored; a well-formed item that is not a
/// valid event (a missing field, a number for an object) is one rejection among the rest.
pub(crate) fn parse_body(
    body: &[u8],
    format: BodyFormat,
) -> Result<Vec<Result<Record, Rejection>>, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BodyError(format!("the body is not valid UTF-8 ({e})")))?;
    if text.trim().is_empty() {
        return Err(BodyError(
            "the body holds no events; send a JSON array of event objects, or NDJSON".into(),
        ));
    }
    let items: Vec<Result<Record, Rejection>> = match format {
        BodyFormat::JsonArray => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                BodyError(format!(
                    "the body is not valid JSON (line {}, column {}: {e}); send a JSON array of event objects",
                    e.line(),
                    e.column()
                ))
            })?;
            let serde_json::Value::Array(values) = value else {
                return Err(BodyError(format!(
                    "the body is a JSON {}, not an array; send a JSON array of event objects \
                     (or NDJSON with Content-Type: application/x-ndjson)",
                    crate::ingest::record::json_kind(&value)
                )));
            };
            values
                .into_iter()
                .map(|v| {
                    let text = v.to_string();
                    json_record(v, "item").map_err(|p| Rejection::malformed(p.with_raw(text)))
                })
                .collect()
        }
        BodyFormat::Ndjson => {
            let mut items = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                    BodyError(format!(
                        "line {} is not valid JSON ({e}); send one JSON object per line; nothing was stored",
                        i + 1
                    ))
                })?;
                items.push(
                    json_record(v, "line").map_err(|p| Rejection::malformed(p.with_raw(line))),
                );
            }
            items
        }
    };
    if items.is_empty() {
        return Err(BodyError(
            "the body holds no events; send a JSON array of event objects, or NDJSON".into(),
        ));
    }
    if items.len() > MAX_EVENTS {
        return Err(BodyError(format!(
            "the body holds {} events; send at most {MAX_EVENTS} per request",
            items.len()
        )));
    }
    Ok(items)
}

/// Stores one request's events for `source`. `request` names the request in quarantine
/// locations.
pub async fn ingest_body(
    ctx: &JobContext,
    source: &SourceConfig,
    ids: &CustomerIds,
    body: &[u8],
    format: BodyFormat,
    request: &str,
) -> anyhow::Result<Result<HttpIngestReport, BodyError>> {
    let started = std::time::Instant::now();
    let items = match parse_body(body, format) {
        Ok(items) => items,
        Err(e) => return Ok(Err(e)),
    };
    let mapping = super::source_mapping(ctx, source).await?;
    let rows = items.into_iter().enumerate().map(|(i, r)| (i as u64, r));
    let prefix = format!("{request} item ");
    let mut repeats = crate::ingest::mapping::Repeats::default();
    let batch: IngestBatch = map_rows(
        &source.name,
        &mapping,
        chrono::Utc::now(),
        &prefix,
        rows,
        &mut repeats,
    );
    let parsed = started.elapsed();
    let c = ctx.db.ingest(ids, &batch, FailPoint::Never).await?;
    tracing::debug!(events = batch.events.len(), ?parsed, stored = ?(started.elapsed() - parsed), "http ingest request");
    let index_of = |location: &str| {
        location
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let mut rejections: Vec<HttpRejection> = batch
        .refused
        .iter()
        .map(|r| HttpRejection {
            index: index_of(&r.location),
            code: r.code.as_str(),
            reason: r.reason.clone(),
            quarantined: true,
        })
        .collect();
    for (location, customer) in &c.unknown_customer {
        rejections.push(HttpRejection {
            index: index_of(location),
            code: "unknown_customer",
            reason: format!(
                "unknown customer {customer:?}; kept in quarantine and stored once the customer is imported"
            ),
            quarantined: true,
        });
    }
    rejections.sort_by_key(|r| r.index);
    Ok(Ok(HttpIngestReport {
        accepted: c.stored,
        duplicate: c.duplicate,
        rejected: rejections.len() as u64,
        rejections,
    }))
}

/// Fuzzing entry point: parses `data` as a request body and maps every item with a source
/// that renames columns and kinds; ignores the result.
pub fn fuzz_body(data: &[u8]) {
    let format = if data.trim_ascii_start().starts_with(b"[") {
        BodyFormat::JsonArray
    } else {
        BodyFormat::Ndjson
    };
    let Ok(items) = parse_body(data, format) else {
        return;
    };
    let mapping = crate::ingest::mapping::EventMapping {
        source: "fuzz".into(),
        columns: [("customer_id".to_owned(), "acct".to_owned())].into(),
        kinds: [("bill".to_owned(), "invoice_issued".to_owned())].into(),
        catalog: Default::default(),
        limits: Default::default(),
    };
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let rows = items.into_iter().enumerate().map(|(i, r)| (i as u64, r));
    let mut repeats = crate::ingest::mapping::Repeats::default();
    let _ = super::map_rows("fuzz", &mapping, now, "item ", rows, &mut repeats);
}

/// The http source a bearer token belongs to, comparing in constant time.
pub fn source_for_token<'a>(sources: &'a [SourceConfig], token: &str) -> Option<&'a SourceConfig> {
    sources
        .iter()
        .filter(|s| s.kind == crate::config::SourceKind::Http)
        .find(|s| {
            s.token_env
                .as_deref()
                .and_then(|var| std::env::var(var).ok())
                .filter(|t| !t.is_empty())
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_arrays_or_ndjson_and_bad_items_stay_apart() {
        use BodyFormat::*;
        let arr = br#"[{"customer_id":"c1","kind":"login","occurred_at":"2026-01-01"}, 7]"#;
        let items = parse_body(arr, JsonArray).unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .problem
                .contains("item is a JSON number")
        );
        let nd = b"{\"customer_id\":\"c1\"}\n\n7\n";
        let items = parse_body(nd, Ndjson).unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .problem
                .contains("line is a JSON number")
        );
        assert!(
            parse_body(b"  ", JsonArray)
                .unwrap_err()
                .0
                .contains("no events")
        );
        assert!(
            parse_body(b"  ", Ndjson)
                .unwrap_err()
                .0
                .contains("no events")
        );
        assert!(
            parse_body(b"\xff", JsonArray)
                .unwrap_err()
                .0
                .contains("UTF-8")
        );
    }

    /// Text that is not JSON refuses the request whole, naming where; an object where an
    /// array belongs is refused, not read as one line of NDJSON.
    #[test]
    fn text_that_is_not_json_refuses_the_request() {
        use BodyFormat::*;
        let e = parse_body(b"[1,", JsonArray).unwrap_err().0;
        assert!(e.contains("not valid JSON (line 1, column 3"), "{e}");
        let e = parse_body(br#"{"customer_id": "c1"}"#, JsonArray)
            .unwrap_err()
            .0;
        assert!(e.contains("is a JSON object, not an array"), "{e}");
        let e = parse_body(b"{\"a\":1}\n{oops\n", Ndjson).unwrap_err().0;
        assert!(e.starts_with("line 2 is not valid JSON"), "{e}");
        let e = parse_body(br#"{"customer_id": "#, JsonArray).unwrap_err().0;
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn content_types_name_the_format() {
        use BodyFormat::*;
        let f = BodyFormat::from_content_type;
        assert_eq!(f("application/json"), Some(JsonArray));
        assert_eq!(f("Application/JSON; charset=utf-8"), Some(JsonArray));
        assert_eq!(f("application/x-ndjson"), Some(Ndjson));
        assert_eq!(f("application/jsonl"), Some(Ndjson));
        assert_eq!(f("text/plain"), None);
        assert_eq!(f(""), None);
    }

    #[test]
    fn fuzz_entry_point_accepts_anything() {
        fuzz_body(b"");
        fuzz_body(b"[{\"acct\":\"c\",\"kind\":\"BILL\",\"occurred_at\":\"99999999999\",\"value\":\"1e400\"}]");
        fuzz_body(b"{\"kind\":[[[]]]}\n\xff\n[");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
