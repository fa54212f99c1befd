//! The http source: the company's systems POST batches of events to `/v1/events`, a JSON
//! array or NDJSON, authenticated by the source's bearer token. Each request is one
//! transaction; the answer counts what was accepted, what was already there, and every
//! rejection with its reason (rejected events are kept in quarantine, never dropped).

use serde::Serialize;

use super::map_rows;
use crate::config::SourceConfig;
use crate::ingest::mapping::Rejection;
use crate::ingest::record::{Problem, Record, json_record};
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

/// Splits a body into items: a JSON array of objects, or NDJSON (one object per line).
pub(crate) fn parse_body(body: &[u8]) -> Result<Vec<Result<Record, Rejection>>, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BodyError(format!("the body is not valid UTF-8 ({e})")))?;
    let trimmed = text.trim_start();
    let items: Vec<Result<Record, Rejection>> = if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(trimmed).map_err(|e| {
            BodyError(format!(
                "the body starts with [ but is not a JSON array ({e}); send a JSON array of event objects, or NDJSON"
            ))
        })?;
        values
            .into_iter()
            .map(|v| {
                let text = v.to_string();
                json_record(v, "item").map_err(|p| Rejection::malformed(p.with_raw(text)))
            })
            .collect()
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) => json_record(v, "line").map_err(|p| Rejection::malformed(p.with_raw(l))),
                Err(e) => Err(Rejection::malformed(
                    Problem::row(format!(
                        "not valid JSON ({e}); expected one JSON object per line"
                    ))
                    .with_raw(l),
                )),
            })
            .collect()
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
    request: &str,
) -> anyhow::Result<Result<HttpIngestReport, BodyError>> {
    let started = std::time::Instant::now();
    let items = match parse_body(body) {
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
    let Ok(items) = parse_body(data) else { return };
    let mapping = crate::ingest::mapping::EventMapping {
        source: "fuzz".into(),
        columns: [("customer_id".to_owned(), "acct".to_owned())].into(),
        kinds: [("bill".to_owned(), "invoice_issued".to_owned())].into(),
        catalog: Default::default(),
    };
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let rows = items.into_iter().enumerate().map(|(i, r)| (i as u64, r));
    let mut repeats = crate::ingest::mapping::Repeats::default();
    let _ = super::map_rows("fuzz", &mapping, now, "item ", rows, &mut repeats);
}

/// The http source a bearer token belongs to, comparing in constant time.
pub fn source_for_token<'a>(sources: &'a [SourceConfig], token: &str) -> Option<&'a SourceConfig> {
    sources.iter().filter(|s| s.kind == "http").find(|s| {
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
        let arr = br#"[{"customer_id":"c1","kind":"login","occurred_at":"2026-01-01"}, 7]"#;
        let items = parse_body(arr).unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .problem
                .contains("item is a JSON number")
        );
        let nd = b"{\"customer_id\":\"c1\"}\n\n{oops\n";
        let items = parse_body(nd).unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .problem
                .starts_with("not valid JSON")
        );
        assert!(parse_body(b"  ").unwrap_err().0.contains("no events"));
        assert!(
            parse_body(b"[1,")
                .unwrap_err()
                .0
                .contains("not a JSON array")
        );
        assert!(parse_body(b"\xff").unwrap_err().0.contains("UTF-8"));
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
