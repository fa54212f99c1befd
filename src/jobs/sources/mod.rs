//! Activity sources: where a service business's activity comes from, pulled into attune
//! incrementally. Each source is named in the config and keeps a cursor committed in the
//! same transaction as the events it covers:
//!
//! - `files` (`files.rs`): a drop directory; each file is taken once, in batches that
//!   record the last line committed, then moved to `done/` or `rejected/`;
//! - `sql` (`sql.rs`): a query against the company's own database, reading rows after a
//!   watermark;
//! - `http` (`http.rs`): batches POSTed to `/v1/events` by the company's systems.
//!
//! Every row becomes a stored event or a quarantined one with its reason; `retry` maps
//! quarantined rows again (a kind mapped since, a customer imported since).

pub mod files;
pub mod http;
pub mod sql;

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

use super::JobContext;
use crate::config::{INBOX_SOURCE, SourceConfig, SourceKind};
use crate::ingest::mapping::{
    EventMapping, Rejection, Repeats, derives_id, map_event, quarantine_id, raw_json,
};
use crate::ingest::record::Record;
use crate::store::{
    FailPoint, IngestBatch, IngestCounts, QuarantinedEvent, RefusedRow, RetryOutcome,
};

/// What one pull of one source did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub kind: String,
    pub batches: u64,
    pub stored: u64,
    pub duplicate: u64,
    pub quarantined: u64,
    /// Files taken (files sources).
    pub files: Vec<files::FileReport>,
    /// The cursor after the pull (sql sources).
    pub cursor: Option<String>,
    pub seconds: f64,
}

impl SourceReport {
    fn add(&mut self, c: &IngestCounts) {
        self.batches += 1;
        self.stored += c.stored;
        self.duplicate += c.duplicate;
        self.quarantined += c.quarantined + c.already_quarantined;
    }
}

/// Options for a pull; tests use them (with the `testing` feature) to simulate a crash
/// before a batch commits.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// Fail (as a crash would) after writing the batch with this index (0 is the first of
    /// the pull) and before committing it.
    #[cfg(any(test, feature = "testing"))]
    pub fail_at_batch: Option<u64>,
}

impl PullOptions {
    pub(crate) fn fail_point(&self, batch: u64) -> FailPoint {
        #[cfg(any(test, feature = "testing"))]
        if self.fail_at_batch == Some(batch) {
            return FailPoint::BeforeCommit;
        }
        let _ = batch;
        FailPoint::Never
    }
}

/// The configured sources, with `[pull] inbox` as a files source named `inbox`.
pub fn configured(ctx: &JobContext) -> Vec<SourceConfig> {
    let mut out = ctx.config.sources.clone();
    if let Some(dir) = &ctx.config.pull.inbox {
        out.insert(
            0,
            SourceConfig {
                name: INBOX_SOURCE.into(),
                kind: crate::config::SourceKind::Files,
                url: None,
                url_env: None,
                query: None,
                cursor_column: None,
                cursor_start: "0".into(),
                batch: 200_000,
                commit_rows: 1_000_000,
                dir: Some(dir.clone()),
                token_env: None,
                declare_kinds: BTreeMap::new(),
                columns: BTreeMap::new(),
                kinds: BTreeMap::new(),
            },
        );
    }
    out
}

/// The mapping a quarantined row of `source` is read with: the source's own, or attune's
/// standard columns for a source no longer configured (or an import); kinds are the
/// business's ([`JobContext::kinds`]).
pub async fn mapping_for(ctx: &JobContext, source: &str) -> anyhow::Result<EventMapping> {
    let kinds = ctx.kinds().await?;
    let mut m = match configured(ctx).into_iter().find(|s| s.name == source) {
        Some(s) => s
            .mapping(&kinds)
            .map_err(|m| anyhow::anyhow!("source {source}: {m}"))?,
        None => EventMapping::standard_with(source, kinds),
    };
    m.limits = ctx.config.input;
    Ok(m)
}

/// The mapping of a configured source, with the business's kinds.
pub async fn source_mapping(
    ctx: &JobContext,
    source: &SourceConfig,
) -> anyhow::Result<EventMapping> {
    let kinds = ctx.kinds().await?;
    let mut m = source
        .mapping(&kinds)
        .map_err(|m| anyhow::anyhow!("source {}: {m}", source.name))?;
    m.limits = ctx.config.input;
    Ok(m)
}

/// Pulls one source until it has nothing new.
pub async fn pull_source(
    ctx: &JobContext,
    source: &SourceConfig,
    opts: PullOptions,
) -> anyhow::Result<SourceReport> {
    let started = std::time::Instant::now();
    // One pull of a source at a time, across every daemon: a file is taken by one pull.
    let lease = super::lease::Lease::take(
        ctx,
        &format!("pull:{}", source.name),
        &format!("a pull of source {}", source.name),
    )
    .await?;
    let mut report = match source.kind {
        SourceKind::Files => files::pull(ctx, source, opts).await,
        SourceKind::Sql => sql::pull(ctx, source, opts).await,
        // HTTP sources push; there is nothing to pull.
        SourceKind::Http => Ok(SourceReport::default()),
    }
    .with_context(|| format!("pulling source {}", source.name))?;
    report.source = source.name.clone();
    report.kind = source.kind.to_string();
    report.seconds = started.elapsed().as_secs_f64();
    lease.release().await;
    Ok(report)
}

/// Turns framed rows into a batch: mapped events, and refused rows with their reasons.
/// Each row comes with its number; `prefix` and the number say where it came from
/// (`events.csv:` and the line, `request 3 item ` and the position). `repeats` numbers
/// events whose ids are derived across the whole input (a file's batches share one).
pub(crate) fn map_rows(
    source: &str,
    mapping: &EventMapping,
    now: chrono::DateTime<chrono::Utc>,
    prefix: &str,
    rows: impl IntoIterator<Item = (u64, Result<Record, Rejection>)>,
    repeats: &mut Repeats,
) -> IngestBatch {
    let mut batch = IngestBatch {
        source: source.to_owned(),
        location_prefix: prefix.to_owned(),
        kinds: mapping.catalog.clone(),
        ..Default::default()
    };
    for (position, framed) in rows {
        let location = || format!("{prefix}{position}");
        let record = match framed {
            Ok(r) => r,
            Err(rej) => {
                // Identified by its text when there is one, so the same row sent twice is
                // quarantined once.
                let id = match &rej.raw {
                    Some(text) => format!(
                        "raw:{:016x}",
                        crate::ingest::record::fnv1a64(text.as_bytes())
                    ),
                    None => format!("{}@malformed", location()),
                };
                batch.refused.push(RefusedRow {
                    id,
                    customer: None,
                    code: rej.code,
                    reason: rej.to_string(),
                    location: location(),
                    raw: rej
                        .raw
                        .clone()
                        .map_or(serde_json::Value::Null, serde_json::Value::String),
                });
                continue;
            }
        };
        match map_event(&record, mapping, now) {
            Ok(mut e) => {
                repeats.number(&mut e, derives_id(&record, mapping));
                batch.events.push(e);
                batch.positions.push(position);
            }
            Err(rej) => batch.refused.push(RefusedRow {
                id: quarantine_id(&record, mapping),
                customer: record
                    .text(mapping.column("customer_id"))
                    .ok()
                    .flatten()
                    .map(str::to_owned),
                code: rej.code,
                reason: rej.to_string(),
                location: location(),
                raw: raw_json(&record),
            }),
        }
    }
    batch
}

/// A file being read in batches on a thread of its own: the batches, and the error that
/// stopped the reading early, if one did (the batches before it are kept).
pub(crate) struct FileBatches {
    pub batches: tokio::sync::mpsc::Receiver<IngestBatch>,
    pub error: std::sync::Arc<std::sync::Mutex<Option<crate::ingest::FileError>>>,
}

impl FileBatches {
    pub fn take_error(&self) -> Option<crate::ingest::FileError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Reads a file in batches on a thread of its own, framing and mapping rows while the
/// caller stores the previous batch. Lines up to `skip_through` were committed before and
/// are skipped; `progress` says what a batch ending at a line records.
pub(crate) fn read_batches(
    name: String,
    path: std::path::PathBuf,
    source: String,
    mapping: EventMapping,
    batch_rows: usize,
    skip_through: u64,
    progress: impl Fn(u64) -> crate::store::Progress + Send + 'static,
) -> FileBatches {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let error = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = error.clone();
    let fail = move |e| *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    tokio::task::spawn_blocking(move || {
        let opened = crate::ingest::open(&path).and_then(|(f, format)| {
            let required: Vec<&str> = ["customer_id", "kind", "occurred_at"]
                .iter()
                .map(|f| mapping.column(f))
                .collect();
            crate::ingest::record::RecordStream::open(
                &name,
                std::io::BufReader::with_capacity(1 << 20, f),
                format,
                &required,
            )
        });
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut last_line = skip_through;
        let mut repeats = Repeats::default();
        loop {
            let framed = match stream.next_batch(batch_rows) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            if framed.is_empty() {
                return;
            }
            let (done, rows): (Vec<_>, Vec<_>) = framed
                .into_iter()
                .map(|(line, r)| (line, r.map_err(Rejection::malformed)))
                .partition(|(line, _)| *line <= skip_through);
            // Rows committed before a crash are not stored again, but the events among
            // them whose ids are derived are counted, so the rows after get the ids
            // they would have had.
            if !done.is_empty() {
                let now = chrono::Utc::now();
                for (_, r) in done {
                    if let Ok(r) = r
                        && let Ok(mut e) = map_event(&r, &mapping, now)
                    {
                        repeats.number(&mut e, derives_id(&r, &mapping));
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            if let Some((line, _)) = rows.last() {
                last_line = *line;
            }
            let prefix = format!("{name}:");
            let mut batch = map_rows(
                &source,
                &mapping,
                chrono::Utc::now(),
                &prefix,
                rows,
                &mut repeats,
            );
            batch.progress = progress(last_line);
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
    });
    FileBatches { batches: rx, error }
}

/// Maps every open quarantine row again and stores those that now pass (a kind mapped
/// since, a customer imported since); the rest stay, with their current reason.
pub async fn retry_quarantine(ctx: &JobContext) -> anyhow::Result<RetryOutcome> {
    let db = &ctx.db;
    let ids = db.customer_ids().await?;
    let now = chrono::Utc::now();
    let mut out = RetryOutcome::default();
    let mut mappings: BTreeMap<String, EventMapping> = BTreeMap::new();
    // Rows re-mapped from their raw fields number their derived ids again, in the order
    // they came (quarantine keeps a file's rows in line order), as the file's reading did.
    let mut repeats: BTreeMap<String, Repeats> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = db.open_quarantine(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        // One batch per source: a batch's quarantine rows are keyed by its source.
        let mut by_source: BTreeMap<String, (IngestBatch, Vec<i64>)> = BTreeMap::new();
        let mut still = Vec::new();
        for entry in page {
            if !mappings.contains_key(&entry.source) {
                mappings.insert(entry.source.clone(), mapping_for(ctx, &entry.source).await?);
            }
            let mapping = &mappings[&entry.source];
            let mapped = match (entry.event, &entry.raw.0) {
                (Some(e), _) => e.0.event(&mapping.catalog).map_err(|e| Rejection {
                    code: crate::ingest::mapping::RejectCode::UnknownKind,
                    column: Some(mapping.column("kind").to_owned()),
                    problem: e.to_string(),
                    raw: None,
                }),
                (None, serde_json::Value::Object(_)) => {
                    let record = Record::from_json(&entry.raw.0);
                    map_event(&record, mapping, now).map(|mut e| {
                        repeats
                            .entry(entry.source.clone())
                            .or_default()
                            .number(&mut e, derives_id(&record, mapping));
                        e
                    })
                }
                (None, _) => Err(Rejection {
                    code: crate::ingest::mapping::RejectCode::Malformed,
                    column: None,
                    problem: "the row could not be read when it arrived; fix it at its source and send it again".into(),
                    raw: None,
                }),
            };
            match mapped {
                Ok(event) => {
                    db.resolve_customers(&ids, &[event.customer.as_str()])
                        .await?;
                    if ids.get(event.customer.as_str()).is_some() {
                        let (batch, release) =
                            by_source.entry(entry.source.clone()).or_insert_with(|| {
                                (
                                    IngestBatch {
                                        source: entry.source.clone(),
                                        kinds: mapping.catalog.clone(),
                                        ..Default::default()
                                    },
                                    vec![],
                                )
                            });
                        batch.events.push(event);
                        release.push(entry.id);
                    } else {
                        let reason = format!(
                            "unknown customer {:?}; stored by `attune quarantine retry` once the customer is imported",
                            event.customer.as_str()
                        );
                        let kept = QuarantinedEvent::new(&event, &mapping.catalog);
                        still.push((entry.id, "unknown_customer", reason, Some(kept)));
                    }
                }
                Err(rej) => still.push((entry.id, rej.code.as_str(), rej.to_string(), None)),
            }
        }
        for (_, (mut batch, release)) in by_source {
            batch.release = release;
            let c = db.ingest(&ids, &batch, FailPoint::Never).await?;
            out.released += c.stored;
            out.duplicate += c.duplicate;
        }
        out.still_quarantined += still.len() as u64;
        db.requarantine(&still).await?;
    }
    Ok(out)
}
