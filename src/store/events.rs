//! Activity: the ingest transaction (events, daily rollups, changed customers, quarantine
//! and the source's cursor, all committed together) and the rollup reads features need.
//!
//! A crash anywhere before the commit loses nothing and duplicates nothing: the source's
//! cursor only moves with the events it covers, and an event is never stored twice
//! (its day, customer, source and source event id are unique), so its rollup is counted once.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use super::quarantine::QuarantinedEvent;
use super::{BATCH_ROWS, Db, Result, StoreError, now_secs, on_pool};
use crate::domain::{ActivityEvent, EventKinds, KindCode, Meaning};
use crate::features::{Activity, DayCount, Lookback};
use crate::ingest::mapping::RejectCode;

pub(crate) mod blocks;
pub(in crate::store) mod postgres;
pub(crate) mod sqlite;

/// What the caller sends the transaction's writer (SQLite's writer thread, PostgreSQL's
/// writer task) while it reads, parses, resolves and sorts the next batch.
enum Message {
    /// A batch, and its events of known customers as (customer row id, index in
    /// `batch.events`), in key order.
    Events(IngestBatch, Vec<(i64, usize)>),
    /// The end of the transaction: what the batches gathered besides their events
    /// (quarantine, progress, released rows). Without it nothing is committed.
    Finish(Pending),
}

/// A row a source sent that could not be stored, kept in quarantine with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    /// The event's id in its source, or one derived from the raw row.
    pub id: String,
    pub customer: Option<String>,
    pub code: RejectCode,
    pub reason: String,
    /// Where it came from: `file:line`, `request 12 item 3`, `row id 991`.
    pub location: String,
    /// The row as received.
    pub raw: serde_json::Value,
}

/// How far a source has got, committed with the batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Progress {
    #[default]
    None,
    /// A pulled source's cursor (a watermark such as the last row id read).
    Cursor(String),
    /// A file from a drop directory: the rows committed so far, and its outcome once the
    /// last batch is in (`done` or `rejected`).
    File {
        file: String,
        fingerprint: String,
        lines_done: u64,
        finished: Option<&'static str>,
    },
}

/// One batch from one source.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    /// The configured source's name (the key of its cursor and its quarantine rows).
    pub source: String,
    /// Events that passed mapping; their customers are looked up here.
    pub events: Vec<ActivityEvent>,
    /// Where each event came from, for quarantine: `location_prefix` followed by the
    /// event's number here (a line, an item). Same length as `events`, or empty.
    pub positions: Vec<u64>,
    pub location_prefix: String,
    pub refused: Vec<RefusedRow>,
    pub progress: Progress,
    /// Quarantine rows this batch stores at last (a retry): marked released in the same
    /// transaction.
    pub release: Vec<i64>,
    /// The kinds the events were mapped with (their codes, names and meanings).
    pub kinds: Arc<EventKinds>,
}

/// A file's row in `source_files`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct SourceFile {
    pub lines_done: i64,
    pub status: String,
    pub stored: i64,
    pub duplicate: i64,
    pub quarantined: i64,
    pub started_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestCounts {
    pub stored: u64,
    /// Already stored (same source and source event id): never stored twice.
    pub duplicate: u64,
    /// Rows put in quarantine now (refused rows and events for unknown customers).
    pub quarantined: u64,
    /// Rows that were in quarantine already (a file read twice).
    pub already_quarantined: u64,
    /// Events whose customer attune does not know (quarantined): where each came from
    /// and the customer's id.
    pub unknown_customer: Vec<(String, String)>,
    /// Rows refused by mapping (quarantined): where each came from, the reason code and
    /// the reason.
    pub refused: Vec<(String, &'static str, String)>,
    /// Customers whose rollups changed.
    pub customers_changed: u64,
}

/// The map from the business's customer ids to attune's row ids, kept across batches and
/// shared between requests (clones share one map); ids it misses are looked up in the
/// database before an event counts as unknown.
#[derive(Debug, Clone, Default)]
pub struct CustomerIds {
    map: std::sync::Arc<std::sync::RwLock<super::IdMap>>,
}

impl CustomerIds {
    pub fn get(&self, external: &str) -> Option<i64> {
        self.read().get(external).copied()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, super::IdMap> {
        // A panic while holding the lock leaves a map that is still correct (inserts only).
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, external: String, id: i64) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(external, id);
    }
}

/// The page cache of the connection writing a batch (256 MiB); its commits leave the WAL
/// to [`sqlite::start_checkpoint`], which copies it into the database on another connection
/// while the next transaction writes.
const INGEST_CACHE: &str = "PRAGMA cache_size = -262144; PRAGMA wal_autocheckpoint = 0";

/// Rows per transaction of the raw insert ceiling (the default `commit_rows` of ingest).
const COMMIT_ROWS: usize = 1_000_000;

/// The whole day (since 1970-01-01, UTC) a unix time falls on: the leading column of the
/// events' unique key and of the rollups.
pub(crate) fn day_of(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// An event's value in the thousandths rollups sum (none counts as zero), rounded half
/// away from zero as SQL's `ROUND` does.
fn milli(value: Option<f64>) -> i64 {
    value
        .filter(|v| v.is_finite())
        .map_or(0, |v| (v * 1000.0).round() as i64)
}

/// One quarantined row, skipped when the source's row is in quarantine already.
const INSERT_QUARANTINE: &str = "INSERT INTO quarantine (source, source_event_id, customer_external_id, reason_code, reason, location, raw, event, received_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source, source_event_id) DO NOTHING";

/// A customer's `churned_on` from a `churned` event: its day, unless the record has an
/// earlier one.
const SET_CHURNED: &str = "UPDATE customers SET churned_on = $1 WHERE id = $2 AND (churned_on IS NULL OR churned_on > $1)";

/// A pulled source's cursor.
const SAVE_CURSOR: &str = "INSERT INTO source_cursors (source, position, updated_at) VALUES ($1, $2, $3)
    ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at";

/// A file's progress and, once finished, its outcome.
const SAVE_FILE: &str = "INSERT INTO source_files (source, file, fingerprint, lines_done, status, started_at, finished_at, stored, duplicate, quarantined)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (source, file, fingerprint) DO UPDATE SET lines_done = excluded.lines_done,
    status = excluded.status, finished_at = excluded.finished_at,
    stored = source_files.stored + excluded.stored, duplicate = source_files.duplicate + excluded.duplicate,
    quarantined = source_files.quarantined + excluded.quarantined";

/// Events from which a transaction is an import (a file, a large pull), not a request: on
/// SQLite it waits for the checkpoint beside it, so the WAL's copy keeps pace; on
/// PostgreSQL, when its first batch is this large, it writes days with no events yet in
/// bulk.
const LARGE_TRANSACTION: usize = 20_000;

/// One new event's part of its rollup: (day, customer, kind code, value in thousandths).
type RollupPart = (i64, i64, u16, i64);

/// The rollup rows `parts` add up to, in key order: [day, customer, kind, n, total_milli].
fn sum_rollups(parts: &mut [RollupPart]) -> Vec<[i64; 5]> {
    parts.sort_unstable_by_key(|&(day, customer, kind, _)| (day, customer, kind));
    let mut sums: Vec<[i64; 5]> = Vec::with_capacity(parts.len());
    for &(day, customer, kind, milli) in parts.iter() {
        match sums.last_mut() {
            Some(s) if (s[0], s[1], s[2]) == (day, customer, kind as i64) => {
                s[3] += 1;
                s[4] = s[4].saturating_add(milli);
            }
            _ => sums.push([day, customer, kind as i64, 1, milli]),
        }
    }
    sums
}

/// Failing on purpose after every write of a batch but before its commit: how the tests
/// show that a crash there loses and duplicates nothing. Only builds with the `testing`
/// feature (the tests, `attune-bench`) can ask for it; the daemon cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailPoint {
    #[default]
    Never,
    #[cfg(any(test, feature = "testing"))]
    BeforeCommit,
}

impl FailPoint {
    /// Whether to fail now, after the writes and before the commit.
    pub(crate) fn fails_before_commit(self) -> bool {
        #[cfg(any(test, feature = "testing"))]
        if self == FailPoint::BeforeCommit {
            return true;
        }
        false
    }
}

/// What a transaction has gathered so far, batch by batch.
#[derive(Default)]
struct Pending {
    counts: IngestCounts,
    quarantine: Vec<(RefusedRow, Option<QuarantinedEvent>)>,
    /// Customers whose `churned` events (events of a kind meaning churned) set their
    /// `churned_on`: (customer row id, day since 1970), in the transaction that stores them.
    churned: Vec<(i64, i64)>,
    released: Vec<i64>,
    rows: usize,
    progress: Progress,
}

impl Pending {
    /// Splits a batch into events of known customers, returned as (customer row id, index
    /// in `batch.events`) in key order, and the rest, which go to quarantine with the
    /// batch's refused rows.
    /// `found` holds each event's customer row id, if known ([`Db::customers_of`]).
    fn classify(&mut self, batch: &IngestBatch, found: &[Option<i64>]) -> Vec<(i64, usize)> {
        // (day, customer, time, index): the sort key computed once per event.
        let mut known: Vec<(i64, i64, i64, usize)> = Vec::with_capacity(batch.events.len());
        for (i, (e, id)) in batch.events.iter().zip(found).enumerate() {
            match *id {
                Some(id) => {
                    let at = e.occurred_at.timestamp();
                    known.push((day_of(at), id, at, i));
                    if batch.kinds.meaning(e.kind) == Some(Meaning::Churned) {
                        self.churned.push((id, day_of(at)));
                    }
                }
                None => {
                    let location = batch
                        .positions
                        .get(i)
                        .map(|n| format!("{}{n}", batch.location_prefix))
                        .unwrap_or_default();
                    self.counts
                        .unknown_customer
                        .push((location.clone(), e.customer.as_str().to_owned()));
                    self.quarantine.push((
                        RefusedRow {
                            id: e.source_event_id.clone(),
                            customer: Some(e.customer.as_str().to_owned()),
                            code: RejectCode::UnknownCustomer,
                            reason: format!(
                                "unknown customer {:?}; stored by `attune quarantine retry` once the customer is imported",
                                e.customer.as_str()
                            ),
                            location,
                            raw: serde_json::Value::Object(Default::default()),
                        },
                        Some(QuarantinedEvent::new(e, &batch.kinds)),
                    ));
                }
            }
        }
        self.quarantine
            .extend(batch.refused.iter().map(|r| (r.clone(), None)));
        self.counts.refused.extend(
            batch
                .refused
                .iter()
                .map(|r| (r.location.clone(), r.code.as_str(), r.reason.clone())),
        );
        self.released.extend(&batch.release);
        self.rows += batch.events.len() + batch.refused.len();
        if batch.progress != Progress::None {
            self.progress = batch.progress.clone();
        }
        // Sorted by day, customer and time: the events' unique key and the rollups start
        // with the day, so they are then written in key order.
        known.sort_unstable();
        known.into_iter().map(|(_, id, _, i)| (id, i)).collect()
    }

    /// In the order the source sent them, so a listing reads like the file.
    fn sort_quarantine(&mut self) {
        self.quarantine
            .sort_by(|(a, _), (b, _)| location_key(&a.location).cmp(&location_key(&b.location)));
    }
}

/// Inserts a chunk of events on PostgreSQL, with their rollups and changed marks computed
/// from what was inserted, in one statement. Returns (stored, customers changed).
async fn pg_insert_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    chunk: &[(i64, &ActivityEvent)],
    kinds: &EventKinds,
    now: i64,
) -> Result<(u64, u64)> {
    let mut cust = Vec::with_capacity(chunk.len());
    let mut kind = Vec::with_capacity(chunk.len());
    let mut at = Vec::with_capacity(chunk.len());
    let mut day = Vec::with_capacity(chunk.len());
    let mut value = Vec::with_capacity(chunk.len());
    let mut attrs = Vec::with_capacity(chunk.len());
    let mut source = Vec::with_capacity(chunk.len());
    let mut sid = Vec::with_capacity(chunk.len());
    for (id, e) in chunk {
        cust.push(*id);
        kind.push(kinds.name(e.kind).into_owned());
        at.push(e.occurred_at.timestamp());
        day.push(day_of(e.occurred_at.timestamp()) as i32);
        value.push(e.value.filter(|v| v.is_finite()));
        attrs.push(if e.attributes.is_empty() {
            "{}".to_owned()
        } else {
            serde_json::to_string(&e.attributes).unwrap_or_else(|_| "{}".into())
        });
        source.push(e.source.as_str());
        sid.push(e.source_event_id.as_str());
    }
    let (stored, changed): (i64, i64) = sqlx::query_as(PG_INSERT_CTE)
        .bind(&cust)
        .bind(&kind)
        .bind(&at)
        .bind(&value)
        .bind(&attrs)
        .bind(&source)
        .bind(&sid)
        .bind(now)
        .bind(&day)
        .fetch_one(&mut **tx)
        .await?;
    Ok((stored.max(0) as u64, changed.max(0) as u64))
}

/// The new events (duplicates skipped), their rollups and the customers they changed,
/// computed from what was inserted, in one statement.
const PG_INSERT_CTE: &str = "WITH ins AS (
        INSERT INTO events (customer_id, kind, occurred_at, day, value, attributes, source, source_event_id, ingested_at)
        SELECT c, k, t, d, v, a::jsonb, s, i, $8
        FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $9::integer[], $4::float8[], $5::text[], $6::text[], $7::text[]) AS u(c, k, t, d, v, a, s, i)
        ON CONFLICT (day, customer_id, source, source_event_id) DO NOTHING
        RETURNING customer_id, kind, day, value
    ), roll AS (
        INSERT INTO activity_daily (day, customer_id, kind, n, total_milli)
        SELECT ins.day, ins.customer_id, k.code, COUNT(*), SUM(round(COALESCE(ins.value, 0) * 1000)::bigint)
        FROM ins JOIN event_kinds k ON k.name = ins.kind
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (day, customer_id, kind) DO UPDATE SET n = activity_daily.n + excluded.n,
            total_milli = activity_daily.total_milli + excluded.total_milli
        RETURNING 1
    ), changed AS (
        INSERT INTO activity_changes_log (changed_at, customer_id)
        SELECT DISTINCT $8::bigint, customer_id FROM ins ORDER BY 2
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM changed)";

impl Db {
    /// Every known customer id, for a pull of many batches.
    pub async fn customer_ids(&self) -> Result<CustomerIds> {
        Ok(CustomerIds {
            map: std::sync::Arc::new(std::sync::RwLock::new(self.customer_id_map().await?)),
        })
    }

    /// Looks up ids `ids` does not know yet (customers imported since it was loaded).
    pub async fn resolve_customers(&self, ids: &CustomerIds, wanted: &[&str]) -> Result<()> {
        let missing: Vec<&str> = {
            let known = ids.read();
            wanted
                .iter()
                .copied()
                .filter(|e| !known.contains_key(*e))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        for chunk in missing.chunks(BATCH_ROWS) {
            let rows: Vec<(i64, String)> = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new("SELECT id, external_id FROM customers WHERE external_id IN (");
                let mut sep = q.separated(", ");
                for e in chunk {
                    sep.push_bind(*e);
                }
                q.push(")");
                q.build_query_as().fetch_all(p).await?
            });
            for (id, ext) in rows {
                ids.insert(ext, id);
            }
        }
        Ok(())
    }

    /// The row id of each event's customer, `None` when unknown: from `ids`, and from the
    /// database for those `ids` misses (customers imported since it was loaded).
    async fn customers_of(
        &self,
        ids: &CustomerIds,
        events: &[ActivityEvent],
    ) -> Result<Vec<Option<i64>>> {
        let mut found: Vec<Option<i64>> = {
            let map = ids.read();
            events
                .iter()
                .map(|e| map.get(e.customer.as_str()).copied())
                .collect()
        };
        if found.iter().any(Option::is_none) {
            let missing: Vec<&str> = events
                .iter()
                .zip(&found)
                .filter(|(_, id)| id.is_none())
                .map(|(e, _)| e.customer.as_str())
                .collect();
            self.resolve_customers(ids, &missing).await?;
            let map = ids.read();
            for (slot, e) in found.iter_mut().zip(events) {
                if slot.is_none() {
                    *slot = map.get(e.customer.as_str()).copied();
                }
            }
        }
        Ok(found)
    }

    /// Stores one batch from a source in one transaction: its new events, their rollups,
    /// the customers they changed, its refused rows and unknown-customer events in
    /// quarantine, and its progress. Nothing is kept unless all of it is.
    pub async fn ingest(
        &self,
        ids: &CustomerIds,
        batch: &IngestBatch,
        fail: FailPoint,
    ) -> Result<IngestCounts> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(batch.clone()).await;
        drop(tx);
        Ok(self
            .ingest_stream(ids, &mut rx, usize::MAX, fail)
            .await?
            .unwrap_or_default())
    }

    /// Stores batches from `batches` in one transaction until it has `commit_rows` rows or
    /// the channel closes; `None` when there was no batch. A transaction's progress is its
    /// last batch's. Large transactions are much faster on big tables: the customer index
    /// and the rollups are written once per transaction, in key order.
    pub async fn ingest_stream(
        &self,
        ids: &CustomerIds,
        batches: &mut tokio::sync::mpsc::Receiver<IngestBatch>,
        commit_rows: usize,
        fail: FailPoint,
    ) -> Result<Option<IngestCounts>> {
        let Some(first) = batches.recv().await else {
            return Ok(None);
        };
        let source = first.source.clone();
        let now = now_secs();
        let (tx, rx) = tokio::sync::mpsc::channel::<Message>(1);
        let forward = self.forward(ids, batches, first, commit_rows, tx);
        match self {
            Db::Sqlite(p, shared) => {
                // One writer thread stores what this side reads, resolves and sorts: the
                // batches of one transaction, up to `commit_rows` rows, while the source
                // reads the next.
                // Writers of this process take turns here, in the order they came, instead
                // of polling SQLite's write lock with its busy handler's sleeps.
                let _turn = self.bulk_turn().await;
                let writer = {
                    let mut rx = rx;
                    super::raw::with_connection(p, move |raw| {
                        sqlite::ingest(raw, &mut rx, &source, now, fail)
                    })
                };
                let checkpoint = sqlite::start_checkpoint(p, shared);
                let (counts, forwarded) = tokio::join!(writer, forward);
                forwarded?;
                let counts = counts?;
                if let Some(checkpoint) = checkpoint
                    && (counts.stored + counts.duplicate) as usize >= LARGE_TRANSACTION
                {
                    let _ = checkpoint.await;
                }
                sqlite::truncate_wal(p, shared).await?;
                crate::metrics::get().ingested(counts.stored, counts.duplicate, counts.quarantined);
                Ok(Some(counts))
            }
            Db::Postgres(p) => {
                // The writer is a task of its own, so it sends one batch while this side
                // parses the next on the other core.
                let writer = tokio::spawn(postgres::ingest(p.clone(), rx, source, now, fail));
                let (counts, forwarded) = tokio::join!(writer, forward);
                forwarded?;
                let counts = counts
                    .map_err(|e| StoreError::Data(format!("the ingest writer stopped: {e}")))??;
                crate::metrics::get().ingested(counts.stored, counts.duplicate, counts.quarantined);
                Ok(Some(counts))
            }
        }
    }

    /// Resolves and sorts each batch of one transaction (the first, then what `batches`
    /// brings until `commit_rows` rows), sends it to the writer, then the end.
    async fn forward(
        &self,
        ids: &CustomerIds,
        batches: &mut tokio::sync::mpsc::Receiver<IngestBatch>,
        first: IngestBatch,
        commit_rows: usize,
        tx: tokio::sync::mpsc::Sender<Message>,
    ) -> Result<()> {
        let mut pending = Pending::default();
        let mut next = Some(first);
        while let Some(batch) = next.take() {
            let found = self.customers_of(ids, &batch.events).await?;
            let known = pending.classify(&batch, &found);
            if tx.send(Message::Events(batch, known)).await.is_err() {
                // The writer stopped; its error is the answer.
                return Ok(());
            }
            if pending.rows < commit_rows {
                next = batches.recv().await;
            }
        }
        let _ = tx.send(Message::Finish(pending)).await;
        Ok(())
    }

    /// Stores events for known customers (tests and the demo): one batch, no cursor.
    pub async fn insert_events(&self, events: &[ActivityEvent]) -> Result<IngestCounts> {
        let ids = self.customer_ids().await?;
        self.ingest_events(&ids, events).await
    }

    /// [`Db::insert_events`] with the id map already loaded (for many batches).
    pub async fn ingest_events(
        &self,
        ids: &CustomerIds,
        events: &[ActivityEvent],
    ) -> Result<IngestCounts> {
        let batch = IngestBatch {
            source: "import".into(),
            events: events.to_vec(),
            kinds: Arc::new(self.stored_catalog().await?),
            ..Default::default()
        };
        self.ingest(ids, &batch, FailPoint::Never).await
    }

    /// Inserts events as fast as the database takes them, without rollups, changed marks or
    /// quarantine: the raw insert ceiling the ingest benchmark compares with. SQLite: the
    /// same prepared insert, order and transaction size (a million rows) as ingest;
    /// PostgreSQL: COPY.
    pub async fn insert_events_raw(&self, rows: &[(i64, ActivityEvent)]) -> Result<()> {
        let now = now_secs();
        match self {
            Db::Sqlite(p, ..) => {
                let rows = rows.to_vec();
                super::raw::with_connection(p, move |raw| sqlite::insert_raw(raw, &rows, now))
                    .await?;
            }
            Db::Postgres(p) => {
                use std::fmt::Write as _;
                let mut conn = p.acquire().await?;
                for batch in rows.chunks(50 * BATCH_ROWS) {
                    let mut copy = conn
                        .copy_in_raw(
                            "COPY events (customer_id, kind, occurred_at, day, value, attributes, source, source_event_id, ingested_at) FROM STDIN",
                        )
                        .await?;
                    let mut buf = String::with_capacity(batch.len() * 96);
                    let esc = |s: &str| {
                        s.replace('\\', "\\\\")
                            .replace('\t', "\\t")
                            .replace('\n', "\\n")
                    };
                    let kinds = EventKinds::builtin();
                    for (id, e) in batch {
                        let value = e.value.map_or("\\N".to_owned(), |v| v.to_string());
                        let attrs =
                            serde_json::to_string(&e.attributes).unwrap_or_else(|_| "{}".into());
                        let _ = writeln!(
                            buf,
                            "{id}\t{}\t{}\t{}\t{value}\t{}\t{}\t{}\t{now}",
                            kinds.name(e.kind),
                            e.occurred_at.timestamp(),
                            day_of(e.occurred_at.timestamp()),
                            esc(&attrs),
                            esc(&e.source),
                            esc(&e.source_event_id)
                        );
                    }
                    copy.send(buf.as_bytes()).await?;
                    copy.finish().await?;
                }
            }
        }
        Ok(())
    }

    /// A source's committed cursor.
    pub async fn source_cursor(&self, source: &str) -> Result<Option<String>> {
        let sql = "SELECT position FROM source_cursors WHERE source = $1";
        let row: Option<(String,)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(source).fetch_optional(p).await?);
        Ok(row.map(|(s,)| s))
    }

    /// A file's progress: lines committed and its outcome if finished.
    pub async fn source_file(
        &self,
        source: &str,
        file: &str,
        fingerprint: &str,
    ) -> Result<Option<SourceFile>> {
        let sql = "SELECT lines_done, status, stored, duplicate, quarantined, started_at FROM source_files
                   WHERE source = $1 AND file = $2 AND fingerprint = $3";
        Ok(on_pool!(self, p => sqlx::query_as(sql)
            .bind(source).bind(file).bind(fingerprint).fetch_optional(p).await?))
    }

    /// Quarantine rows of a source received since `since` whose location starts with
    /// `prefix` (a file's rows), as (location, reason code, reason), in order.
    pub async fn quarantined_at(
        &self,
        source: &str,
        prefix: &str,
        since: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let sql = "SELECT location, reason_code, reason FROM quarantine
                   WHERE source = $1 AND received_at >= $3 AND substr(location, 1, length($2)) = $2 ORDER BY id";
        Ok(
            on_pool!(self, p => sqlx::query_as(sql).bind(source).bind(prefix).bind(since).fetch_all(p).await?),
        )
    }

    /// Daily rollups of customers with ids in `first..=last`, for days before
    /// `before_day`: on PostgreSQL only the kinds and days `lookback` asks for (what is not
    /// read is counted, so a customer with only unread activity still has activity), on
    /// SQLite all of them, reading the range in two halves on two connections at once.
    pub async fn activity_between(
        &self,
        first: i64,
        last: i64,
        before_day: i32,
        lookback: &Lookback,
    ) -> Result<HashMap<i64, Activity>> {
        match self {
            // SQLite reads every row: evaluating the filter per row cost more than building
            // the rows it saved (5.3 s against 3.1 s for a million customers' rollups).
            // Rows are stepped through SQLite's own API (`raw`), two halves of the range
            // on two connections and threads at once: sqlx would hand each row across
            // threads with a wake-up. Rollups are keyed by day first, so each half seeks
            // its slice of every day.
            Db::Sqlite(p, ..) => {
                let Some(first_day) = self.first_rollup_day().await? else {
                    return Ok(HashMap::new());
                };
                let middle = first.saturating_add(last.saturating_sub(first) / 2);
                let read = |a: i64, b: i64| {
                    super::raw::with_scan(p, move |raw| {
                        let mut out = ByCustomer::new(a, b);
                        if a > b {
                            return Ok(HashMap::new());
                        }
                        // Sealed days from their blocks, the others from their rows: the
                        // same rows in the same order.
                        let sealed = blocks::sealed_days(raw, first_day, before_day as i64)?;
                        let mut stmt = raw.prepare(SQLITE_ROLLUPS)?;
                        let mut from_blocks = raw.prepare(blocks::READ)?;
                        for day in first_day..before_day as i64 {
                            if sealed.binary_search(&day).is_ok() {
                                let d = i32::try_from(day).map_err(|_| {
                                    StoreError::Data(format!(
                                        "activity_blocks day {day} out of range"
                                    ))
                                })?;
                                blocks::read(
                                    &mut from_blocks,
                                    day,
                                    (a, b),
                                    |(customer, kind, n, total)| {
                                        out.push(customer, day_count(customer, d, kind, n, total)?);
                                        Ok(())
                                    },
                                )?;
                                continue;
                            }
                            stmt.bind_i64(1, day)?;
                            stmt.bind_i64(2, a)?;
                            stmt.bind_i64(3, b)?;
                            while stmt.step()? {
                                let customer = stmt.i64(0);
                                let day = i32::try_from(day).map_err(|_| {
                                    StoreError::Data(format!(
                                        "activity_daily row of customer {customer} has day {day} out of range"
                                    ))
                                })?;
                                out.push(
                                    customer,
                                    day_count(
                                        customer,
                                        day,
                                        stmt.i64(1),
                                        stmt.i64(2),
                                        stmt.i64(3),
                                    )?,
                                );
                            }
                            stmt.reset()?;
                        }
                        Ok(out.into_map())
                    })
                };
                let (mut a, b) =
                    tokio::try_join!(read(first, middle), read(middle.saturating_add(1), last))?;
                a.extend(b);
                Ok(a)
            }
            Db::Postgres(p) => {
                let Some(first_day) = self.first_rollup_day().await? else {
                    return Ok(HashMap::new());
                };
                let filter = lookback_filter(lookback);
                let days = super::days_in("day", first_day, before_day as i64 - 1);
                type Row = (i64, i64, Vec<i32>, Vec<i16>, Vec<i64>, Vec<i64>);
                let sql = format!(
                    "SELECT customer_id, COUNT(*),
                        COALESCE(array_agg(day) FILTER (WHERE {filter}), '{{}}'),
                        COALESCE(array_agg(kind) FILTER (WHERE {filter}), '{{}}'),
                        COALESCE(array_agg(n) FILTER (WHERE {filter}), '{{}}'),
                        COALESCE(array_agg(total_milli) FILTER (WHERE {filter}), '{{}}')
                     FROM activity_daily WHERE {days} AND customer_id BETWEEN $1 AND $2 AND day < $3
                     GROUP BY customer_id"
                );
                // Two halves of the range on two connections at once: the server groups
                // one while it groups the other (on 2 cores, 18.3 s for a million
                // customers' rollups in one query per page).
                let middle = first.saturating_add(last.saturating_sub(first) / 2);
                let read = |a: i64, b: i64| {
                    sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(a)
                        .bind(b)
                        .bind(before_day)
                        .fetch_all(p)
                };
                let (mut rows, more) =
                    tokio::try_join!(read(first, middle), read(middle.saturating_add(1), last))?;
                rows.extend(more);
                rows.into_iter()
                    .map(|(id, count, d, k, n, t)| {
                        let days = d
                            .into_iter()
                            .zip(k)
                            .zip(n.into_iter().zip(t))
                            .map(|((day, kind), (n, t))| day_count(id, day, kind as i64, n, t))
                            .collect::<Result<Vec<_>>>()?;
                        let unread = (count.max(0) as usize).saturating_sub(days.len()) as u32;
                        Ok((id, Activity::partial(days, unread)))
                    })
                    .collect()
            }
        }
    }

    /// Daily rollups of these customers, for days before `before_day`.
    pub async fn activity_of(
        &self,
        ids: &[i64],
        before_day: i32,
        lookback: &Lookback,
    ) -> Result<HashMap<i64, Activity>> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // Runs of nearby ids read as ranges; scattered ids cost one small range each.
        let mut i = 0;
        while i < sorted.len() {
            let first = sorted[i];
            let mut j = i;
            while j + 1 < sorted.len() && sorted[j + 1] - sorted[i] < 4 * BATCH_ROWS as i64 {
                j += 1;
            }
            let wanted: HashSet<i64> = sorted[i..=j].iter().copied().collect();
            for (id, a) in self
                .activity_between(first, sorted[j], before_day, lookback)
                .await?
            {
                if wanted.contains(&id) {
                    out.insert(id, a);
                }
            }
            i = j + 1;
        }
        Ok(out)
    }

    /// Moves the changes ingest logged into `activity_changes`, keeping each customer's
    /// latest. Each log row is folded exactly once: on SQLite the transaction holds the
    /// write lock from its first statement; on PostgreSQL one statement deletes the rows it
    /// folds.
    async fn fold_changes(&self) -> Result<()> {
        const KEEP_LATEST: &str = "ON CONFLICT (customer_id) DO UPDATE SET changed_at = CASE
            WHEN excluded.changed_at > activity_changes.changed_at THEN excluded.changed_at
            ELSE activity_changes.changed_at END";
        let _turn = self.bulk_turn().await;
        match self {
            Db::Sqlite(p, ..) => {
                let mut tx = p.begin().await?;
                // In the log's own order, the latest change winning: grouping by customer
                // would sort the whole log in memory (600 MB for a 7M-row log).
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO activity_changes (customer_id, changed_at)
                     SELECT customer_id, changed_at FROM activity_changes_log
                     WHERE true ORDER BY changed_at, customer_id {KEEP_LATEST}"
                )))
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM activity_changes_log")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Db::Postgres(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "WITH moved AS (DELETE FROM activity_changes_log RETURNING customer_id, changed_at)
                     INSERT INTO activity_changes (customer_id, changed_at)
                     SELECT customer_id, MAX(changed_at) FROM moved
                     GROUP BY customer_id ORDER BY customer_id {KEEP_LATEST}"
                )))
                .execute(p)
                .await?;
            }
        }
        Ok(())
    }

    /// Customers whose activity or record changed since they were last scored, with when.
    pub async fn changed_customers(&self, limit: i64) -> Result<Vec<(i64, i64)>> {
        self.fold_changes().await?;
        let sql =
            "SELECT customer_id, changed_at FROM activity_changes ORDER BY customer_id LIMIT $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(limit).fetch_all(p).await?))
    }

    /// Forgets changes scored by a run that started at `started_at`: a change made after
    /// that stays marked for the next run. Returns how many marks were removed (for a full
    /// run, `ids` none, the log's entries are removed without being folded into marks
    /// first, and are not counted).
    pub async fn clear_changes(&self, ids: Option<&[i64]>, started_at: i64) -> Result<u64> {
        if ids.is_some() {
            self.fold_changes().await?;
        }
        let _turn = self.bulk_turn().await;
        let mut cleared = 0;
        on_pool!(self, p => {
            match ids {
                None => cleared += self.clear_all_changes(started_at).await?,
                Some(ids) => {
                    let mut tx = p.begin().await?;
                    for chunk in ids.chunks(BATCH_ROWS) {
                        let mut q = sqlx::QueryBuilder::new("DELETE FROM activity_changes WHERE changed_at <= ");
                        q.push_bind(started_at).push(" AND customer_id IN ");
                        super::push_ids(&mut q, chunk);
                        cleared += q.build().execute(&mut *tx).await?.rows_affected();
                    }
                    tx.commit().await?;
                }
            }
        });
        Ok(cleared)
    }

    /// A full run's clear: it scored everyone, so the log need not be folded first (after
    /// the first load, 7 million entries took 2 s to fold into marks that were then
    /// deleted). Entries and marks up to the run's start go; later entries stay in the log
    /// and are folded when next read, to the same marks a fold now would have kept. On
    /// SQLite, under the write lock from the start, a table with nothing later is emptied
    /// whole, which SQLite does without visiting each row. Returns the marks removed.
    async fn clear_all_changes(&self, started_at: i64) -> Result<u64> {
        const TABLES: [&str; 2] = ["activity_changes_log", "activity_changes"];
        let mut cleared = 0;
        match self {
            Db::Sqlite(p, ..) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                for table in TABLES {
                    let later: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT 1 FROM {table} WHERE changed_at > $1 LIMIT 1"
                    )))
                    .bind(started_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let removed = match later {
                        None => {
                            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                                .execute(&mut *tx)
                                .await?
                        }
                        Some(_) => {
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DELETE FROM {table} WHERE changed_at <= $1"
                            )))
                            .bind(started_at)
                            .execute(&mut *tx)
                            .await?
                        }
                    };
                    if table == "activity_changes" {
                        cleared = removed.rows_affected();
                    }
                }
                tx.commit().await?;
            }
            // Row by row either way; a change logged meanwhile is later than the run.
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                for table in TABLES {
                    let removed = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE changed_at <= $1"
                    )))
                    .bind(started_at)
                    .execute(&mut *tx)
                    .await?;
                    if table == "activity_changes" {
                        cleared = removed.rows_affected();
                    }
                }
                tx.commit().await?;
            }
        }
        Ok(cleared)
    }

    /// The first day any rollup is for (the start of every day-by-day read).
    pub(crate) async fn first_rollup_day(&self) -> Result<Option<i64>> {
        let sql = "SELECT CAST(MIN(day) AS BIGINT) FROM activity_daily";
        let (day,): (Option<i64>,) = on_pool!(self, p => sqlx::query_as(sql).fetch_one(p).await?);
        Ok(day)
    }

    /// Builds the blocks of the days whose rollups were stored before blocks existed
    /// (SQLite; PostgreSQL reads rows), a day per transaction; returns how many days.
    /// Scans read an unsealed day's rows instead, so this only makes them faster.
    pub async fn seal_rollup_days(&self) -> Result<usize> {
        let Db::Sqlite(p, ..) = self else {
            return Ok(0);
        };
        fn unsealed(raw: &super::raw::Raw) -> Result<Vec<i64>> {
            // Two subqueries, each one seek of the day-first key (MIN and MAX together
            // would scan every row).
            let mut range = raw.prepare(
                "SELECT (SELECT MIN(day) FROM activity_daily), (SELECT MAX(day) FROM activity_daily)",
            )?;
            range.step()?;
            match (range.opt_i64(0), range.opt_i64(1)) {
                (Some(first), Some(last)) => blocks::unsealed_days(raw, first, last),
                _ => Ok(Vec::new()),
            }
        }
        // Looked for first without the bulk writers' turn: a run's start does not wait
        // for an import when there is nothing to seal (every day since blocks exist).
        if super::raw::with_connection(p, unsealed).await?.is_empty() {
            return Ok(0);
        }
        let _turn = self.bulk_turn().await;
        super::raw::with_connection(p, |raw| {
            let days = unsealed(raw)?;
            for &day in &days {
                blocks::seal_day(raw, day)?;
            }
            Ok(days.len())
        })
        .await
    }

    /// The first and last day any event is on.
    pub(crate) async fn event_days(&self) -> Result<Option<(i64, i64)>> {
        // Two subqueries: each is one seek of the day-first index.
        let sql = "SELECT CAST((SELECT MIN(day) FROM events) AS BIGINT), CAST((SELECT MAX(day) FROM events) AS BIGINT)";
        let row: (Option<i64>, Option<i64>) =
            on_pool!(self, p => sqlx::query_as(sql).fetch_one(p).await?);
        Ok(row.0.zip(row.1))
    }
}

/// Orders locations such as `f.csv:9` before `f.csv:10`: by the text before the trailing
/// number, then by the number.
fn location_key(location: &str) -> (&str, u64) {
    let digits = location.len()
        - location
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let (head, tail) = location.split_at(location.len() - digits);
    (head, tail.parse().unwrap_or(0))
}

fn day_count(customer: i64, day: i32, kind: i64, n: i64, total_milli: i64) -> Result<DayCount> {
    let kind = u16::try_from(kind).map(KindCode).map_err(|_| {
        StoreError::Data(format!(
            "activity_daily row of customer {customer} on day {day} has kind code {kind}, out of range"
        ))
    })?;
    Ok(DayCount {
        day,
        kind,
        n: n.clamp(0, u32::MAX as i64) as u32,
        total: total_milli as f64 / 1000.0,
    })
}

/// A range of customers' rollups on one day, in the primary key's order.
const SQLITE_ROLLUPS: &str = "SELECT customer_id, kind, n, total_milli FROM activity_daily
    WHERE day = ?1 AND customer_id BETWEEN ?2 AND ?3";

/// Rollup rows gathered day by day for a range of customers: in a vector indexed by the
/// id's offset when the range is a page (ids are dense), in a map otherwise.
enum ByCustomer {
    Dense(i64, Vec<Vec<DayCount>>),
    Sparse(HashMap<i64, Vec<DayCount>>),
}

impl ByCustomer {
    fn new(first: i64, last: i64) -> Self {
        match usize::try_from(last.saturating_sub(first)) {
            Ok(span) if span < 1 << 22 => Self::Dense(first, vec![Vec::new(); span + 1]),
            _ => Self::Sparse(HashMap::new()),
        }
    }

    fn push(&mut self, customer: i64, day: DayCount) {
        match self {
            Self::Dense(first, v) => {
                if let Some(slot) = usize::try_from(customer - *first)
                    .ok()
                    .and_then(|i| v.get_mut(i))
                {
                    slot.push(day);
                }
            }
            Self::Sparse(m) => m.entry(customer).or_default().push(day),
        }
    }

    fn into_map(self) -> HashMap<i64, Activity> {
        match self {
            Self::Dense(first, v) => v
                .into_iter()
                .enumerate()
                .filter(|(_, days)| !days.is_empty())
                .map(|(i, days)| (first + i as i64, Activity::new(days)))
                .collect(),
            Self::Sparse(m) => m.into_iter().map(|(c, d)| (c, Activity::new(d))).collect(),
        }
    }
}

/// The SQL condition selecting the rollup rows `lookback` asks for, relative to `$3` (the
/// day they are read for). Codes and day counts are numbers, so they are written inline.
fn lookback_filter(lookback: &Lookback) -> String {
    if lookback.is_everything() {
        return "1 = 1".into();
    }
    let mut all: Vec<String> = Vec::new();
    let mut windowed: Vec<String> = Vec::new();
    for (code, window) in lookback.kinds() {
        match window {
            None => all.push(code.to_string()),
            Some(days) => windowed.push(format!("(kind = {code} AND day >= $3 - {days})")),
        }
    }
    let mut parts = windowed;
    if !all.is_empty() {
        parts.insert(0, format!("kind IN ({})", all.join(", ")));
    }
    if parts.is_empty() {
        return "1 = 0".into();
    }
    format!("({})", parts.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_rows_with_unknown_kinds_are_named() {
        let d = day_count(7, 19999, 1, 3, 12500).unwrap();
        assert_eq!(
            (d.day, d.kind, d.n, d.total),
            (19999, crate::domain::Meaning::Usage.code(), 3, 12.5)
        );
        // Declared kinds have codes of their own.
        assert_eq!(day_count(7, 1, 131, 1, 0).unwrap().kind, KindCode(131));
        let e = day_count(7, 1, 70_000, 1, 0).unwrap_err().to_string();
        assert!(
            e.contains("customer 7") && e.contains("kind code 70000, out of range"),
            "{e}"
        );
        assert_eq!(day_count(7, 1, 1, -4, 0).unwrap().n, 0);
    }

    #[test]
    fn lookback_filters_read_only_what_features_need() {
        let f = lookback_filter(&crate::features::FeatureSpec::default_spec().lookback());
        assert!(f.contains("(kind = 1 AND day >= $3 - 120)"), "{f}");
        assert!(
            !f.contains(" 4,") && !f.contains("kind = 4 "),
            "payments made are not read: {f}"
        );
        assert_eq!(lookback_filter(&Lookback::everything()), "1 = 1");
    }

    #[test]
    fn locations_sort_by_their_number() {
        let mut v = vec!["f.csv:10", "f.csv:9", "g.csv:1", "request 3 item 2"];
        v.sort_by_key(|l| location_key(l));
        assert_eq!(v, ["f.csv:9", "f.csv:10", "g.csv:1", "request 3 item 2"]);
    }

    #[test]
    fn days_are_whole_utc_days_and_values_thousandths_like_sql() {
        assert_eq!(
            [-86_401, -1, 0, 86_399, 86_400].map(day_of),
            [-2, -1, 0, 0, 1]
        );
        // SQL's ROUND: half away from zero; no value or a non-finite one counts as zero.
        assert_eq!(
            [Some(2.5), Some(-0.0015), Some(0.0004), None, Some(f64::NAN)].map(milli),
            [2500, -2, 0, 0, 0]
        );
    }
}
