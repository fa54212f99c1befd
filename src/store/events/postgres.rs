//! PostgreSQL's ingest transaction, on a task of its own while the caller reads, parses,
//! resolves and sorts the next batch.
//!
//! Two ways in, chosen per day:
//! - **Bulk, for days with no events yet**, in transactions whose first batch has at least
//!   [`LARGE_TRANSACTION`] events (a file or a large pull): the events go in with binary `COPY`,
//!   their rollups are summed in memory and copied once at the end, and so are the
//!   changed-customer marks. `COPY` cannot skip a duplicate, so the transaction first makes
//!   sure none can exist: the day holds no event, it holds the day's advisory lock
//!   exclusively (every other writer of that day takes it shared, and waits), and events
//!   repeated within the transaction are caught by a hash of their key and sent the other
//!   way.
//! - **Row by row for the rest** (requests, small pulls, days already holding events):
//!   `INSERT ... ON CONFLICT DO NOTHING` from arrays, rollups and marks computed from what
//!   was inserted, in one statement per chunk, under the day's lock held shared.
//!
//! Bulk transactions take one advisory lock between them first, so the only transaction
//! holding days exclusively never waits for a lock it could deadlock on: days it does not
//! get at once are written row by row.

use std::collections::HashMap;
use std::hash::BuildHasher;

use sqlx::types::Json;

use super::{
    FailPoint, IngestCounts, LARGE_TRANSACTION, Message, Pending, Progress, RefusedRow, Result,
    RollupPart, SAVE_CURSOR, SAVE_FILE, StoreError, day_of, milli,
};
use crate::domain::{ActivityEvent, EventKinds};
use crate::store::BATCH_ROWS;
use crate::store::quarantine::QuarantinedEvent;

// The end of PostgreSQL's ingest transaction; SQLite's steps the same SQL texts through
// `raw` (`sqlite.rs`).

macro_rules! write_quarantine {
    ($tx:expr, $source:expr, $rows:expr, $now:expr) => {{
        let mut new = 0u64;
        for chunk in $rows.chunks(BATCH_ROWS) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO quarantine (source, source_event_id, customer_external_id, reason_code, reason, location, raw, event, received_at) ",
            );
            q.push_values(chunk, |mut b, (r, e): &(RefusedRow, Option<QuarantinedEvent>)| {
                b.push_bind($source)
                    .push_bind(r.id.as_str())
                    .push_bind(r.customer.as_deref())
                    .push_bind(r.code.as_str())
                    .push_bind(r.reason.as_str())
                    .push_bind(r.location.as_str())
                    .push_bind(Json(&r.raw))
                    .push_bind(e.as_ref().map(Json))
                    .push_bind($now);
            });
            q.push(" ON CONFLICT (source, source_event_id) DO NOTHING");
            new += q.build().execute(&mut *$tx).await?.rows_affected();
        }
        (new, $rows.len() as u64 - new)
    }};
}

macro_rules! write_progress {
    ($tx:expr, $source:expr, $progress:expr, $now:expr, $counts:expr) => {{
        match $progress {
            Progress::None => {}
            Progress::Cursor(position) => {
                sqlx::query(SAVE_CURSOR)
                    .bind($source)
                    .bind(position.as_str())
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
            Progress::File {
                file,
                fingerprint,
                lines_done,
                finished,
            } => {
                let status = finished.unwrap_or("in_progress");
                let finished_at = finished.map(|_| $now);
                let c: &IngestCounts = $counts;
                sqlx::query(SAVE_FILE)
                    .bind($source)
                    .bind(file.as_str())
                    .bind(fingerprint.as_str())
                    .bind(*lines_done as i64)
                    .bind(status)
                    .bind($now)
                    .bind(finished_at)
                    .bind(c.stored as i64)
                    .bind(c.duplicate as i64)
                    .bind((c.quarantined + c.already_quarantined) as i64)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}

/// The end of PostgreSQL's ingest transaction: the quarantined rows, the source's
/// progress, the released quarantine rows, the test fail point, then the commit.
macro_rules! finish_transaction {
    ($tx:ident, $source:expr, $pending:expr, $now:expr, $fail:expr) => {{
        $pending.sort_quarantine();
        let (new, old) = write_quarantine!($tx, $source.as_str(), $pending.quarantine, $now);
        $pending.counts.quarantined = new;
        $pending.counts.already_quarantined = old;
        write_progress!(
            $tx,
            $source.as_str(),
            &$pending.progress,
            $now,
            &$pending.counts
        );
        release!($tx, $pending.released, $now);
        for (customer, day) in &$pending.churned {
            sqlx::query(super::SET_CHURNED)
                .bind(crate::features::day_from_number(*day as i32))
                .bind(*customer)
                .execute(&mut *$tx)
                .await?;
        }
        if $fail.fails_before_commit() {
            return Err(StoreError::Data("failing before commit, as asked".into()));
        }
        $tx.commit().await?;
    }};
}

macro_rules! release {
    ($tx:expr, $ids:expr, $now:expr) => {{
        for chunk in $ids.chunks(BATCH_ROWS) {
            let mut q = sqlx::QueryBuilder::new("UPDATE quarantine SET released_at = ");
            q.push_bind($now)
                .push(" WHERE released_at IS NULL AND id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *$tx).await?;
        }
    }};
}

/// Advisory lock keys: `(INGEST_LOCKS, day)` for a day's writers, `(INGEST_LOCKS, BULK)`
/// taken by bulk transactions one at a time.
const INGEST_LOCKS: i32 = 0x6174_7475; // "attu"
const BULK: i32 = i32::MIN;

/// Rows per row-by-row statement.
const CHUNK: usize = 10_000;

/// Bytes of `COPY` data sent at a time.
const SEND_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Bulk,
    RowByRow,
}

/// What a transaction has written in bulk so far.
#[derive(Default)]
struct Bulk {
    days: HashMap<i32, Way>,
    /// Hashes of the keys of the events written in bulk: a repeat goes row by row, where
    /// `ON CONFLICT` tells a duplicate from a hash collision.
    keys: std::collections::HashSet<u64, foldhash::fast::FixedState>,
    parts: Vec<RollupPart>,
    /// Whether any event went row by row on a day written in bulk: its rollup row exists
    /// already, so the bulk rollups are added to, not copied.
    mixed: bool,
}

/// Stores the batches `messages` brings in one transaction, until [`Message::Finish`].
pub(super) async fn ingest(
    pool: sqlx::PgPool,
    mut messages: tokio::sync::mpsc::Receiver<Message>,
    source: String,
    now: i64,
    fail: FailPoint,
) -> Result<IngestCounts> {
    let mut tx = pool.begin().await?;
    let mut bulk: Option<Bulk> = None;
    let mut first = true;
    let mut stored = 0u64;
    let mut duplicate = 0u64;
    let mut changed = 0u64;
    let started = std::time::Instant::now();
    let mut waited = std::time::Duration::ZERO;
    let (mut bulk_rows, mut row_rows) = (0usize, 0usize);
    let mut pending: Pending = loop {
        let wait = std::time::Instant::now();
        let message = messages.recv().await;
        waited += wait.elapsed();
        match message {
            Some(Message::Events(batch, known)) => {
                if std::mem::take(&mut first) && known.len() >= LARGE_TRANSACTION {
                    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                        .bind(INGEST_LOCKS)
                        .bind(BULK)
                        .execute(&mut *tx)
                        .await?;
                    bulk = Some(Bulk::default());
                }
                let rows: Vec<(i64, &ActivityEvent)> =
                    known.iter().map(|&(c, i)| (c, &batch.events[i])).collect();
                let (fast, slow) = match bulk.as_mut() {
                    Some(b) => split(&mut tx, b, &rows).await?,
                    None => {
                        lock_days_shared(&mut tx, &days_of(&rows)).await?;
                        (Vec::new(), rows)
                    }
                };
                if !fast.is_empty() {
                    copy_events(&mut tx, &fast, &batch.kinds, now).await?;
                    let b = bulk.as_mut().expect("bulk rows only in a bulk transaction");
                    b.parts.extend(fast.iter().map(|(c, e)| {
                        let at = e.occurred_at.timestamp();
                        (day_of(at), *c, e.kind.0, milli(e.value))
                    }));
                    stored += fast.len() as u64;
                    bulk_rows += fast.len();
                }
                for chunk in slow.chunks(CHUNK) {
                    let (s, c) = super::pg_insert_chunk(&mut tx, chunk, &batch.kinds, now).await?;
                    stored += s;
                    duplicate += chunk.len() as u64 - s;
                    changed += c;
                }
                row_rows += slow.len();
                drop((fast, slow));
                // Freeing a batch's strings is a tenth of the time: off this task.
                tokio::task::spawn_blocking(move || drop(batch));
            }
            Some(Message::Finish(pending)) => break pending,
            None => {
                return Err(StoreError::Data(
                    "the batches stopped before their end; nothing of them was stored".into(),
                ));
            }
        }
    };
    let inserted = started.elapsed();
    if let Some(b) = bulk.as_mut() {
        changed += write_bulk_rollups(&mut tx, b, now).await?;
    }
    let rolled = started.elapsed();
    pending.counts.stored = stored;
    pending.counts.duplicate = duplicate;
    pending.counts.customers_changed = changed;
    finish_transaction!(tx, source, pending, now, fail);
    tracing::debug!(
        events = stored,
        bulk = bulk_rows,
        row_by_row = row_rows,
        waiting_for_batches = ?waited,
        inserting = ?inserted - waited,
        rollups_and_marks = ?rolled - inserted,
        finishing_and_commit = ?started.elapsed() - rolled,
        "PostgreSQL ingest transaction"
    );
    Ok(pending.counts)
}

/// The distinct days of `rows`, in order.
fn days_of(rows: &[(i64, &ActivityEvent)]) -> Vec<i32> {
    let mut days: Vec<i32> = rows
        .iter()
        .map(|(_, e)| day_of(e.occurred_at.timestamp()) as i32)
        .collect();
    days.sort_unstable();
    days.dedup();
    days
}

/// Takes each day's lock shared, in day order: a bulk transaction holding one of them
/// exclusively has it to itself until it commits.
async fn lock_days_shared(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    days: &[i32],
) -> Result<()> {
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT COUNT(pg_advisory_xact_lock_shared($1, d)) FROM (SELECT unnest($2::integer[]) AS d ORDER BY 1) AS u",
    )
    .bind(INGEST_LOCKS)
    .bind(days)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Decides the way of each day `rows` brings that the transaction has not seen yet, then
/// splits `rows` into those written in bulk and those written row by row.
async fn split<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    bulk: &mut Bulk,
    rows: &[(i64, &'a ActivityEvent)],
) -> Result<(Vec<(i64, &'a ActivityEvent)>, Vec<(i64, &'a ActivityEvent)>)> {
    let new: Vec<i32> = days_of(rows)
        .into_iter()
        .filter(|d| !bulk.days.contains_key(d))
        .collect();
    if !new.is_empty() {
        // Days with no event that nobody else is writing: locked exclusively at once, or
        // not at all (this transaction never waits for a day it could deadlock on).
        let locked: Vec<i32> = sqlx::query_scalar(
            "SELECT d FROM unnest($2::integer[]) AS u(d)
             WHERE CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.day = u.d) THEN false
                   ELSE pg_try_advisory_xact_lock($1, d) END",
        )
        .bind(INGEST_LOCKS)
        .bind(&new)
        .fetch_all(&mut **tx)
        .await?;
        // Another writer may have committed events for a day between the first look and
        // the lock: look again, under the lock.
        let taken: Vec<i32> = if locked.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT d FROM unnest($1::integer[]) AS u(d)
                 WHERE EXISTS (SELECT 1 FROM events e WHERE e.day = u.d)",
            )
            .bind(&locked)
            .fetch_all(&mut **tx)
            .await?
        };
        let shared: Vec<i32> = new
            .iter()
            .copied()
            .filter(|d| !locked.contains(d))
            .collect();
        lock_days_shared(tx, &shared).await?;
        for d in new {
            let way = if locked.contains(&d) && !taken.contains(&d) {
                Way::Bulk
            } else {
                Way::RowByRow
            };
            bulk.days.insert(d, way);
        }
    }
    let hasher = foldhash::fast::FixedState::with_seed(0x5eed);
    let mut fast = Vec::with_capacity(rows.len());
    let mut slow = Vec::new();
    for &(c, e) in rows {
        let day = day_of(e.occurred_at.timestamp()) as i32;
        if bulk.days.get(&day) == Some(&Way::Bulk) {
            let key = hasher.hash_one((day, c, e.source.as_str(), e.source_event_id.as_str()));
            if bulk.keys.insert(key) {
                fast.push((c, e));
            } else {
                bulk.mixed = true;
                slow.push((c, e));
            }
        } else {
            slow.push((c, e));
        }
    }
    Ok((fast, slow))
}

/// `COPY ... FROM STDIN (FORMAT binary)`: the signature, flags and header extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The binary `COPY` encoding of one row at a time.
pub(in crate::store) struct CopyRows(Vec<u8>);

impl CopyRows {
    fn new() -> Self {
        let mut buf = Vec::with_capacity(SEND_BYTES + (64 << 10));
        buf.extend_from_slice(COPY_HEADER);
        Self(buf)
    }
    pub(in crate::store) fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&2i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&4i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(in crate::store) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&8i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(in crate::store) fn f64(&mut self, v: Option<f64>) {
        match v {
            Some(v) => {
                self.0.extend_from_slice(&8i32.to_be_bytes());
                self.0.extend_from_slice(&v.to_be_bytes());
            }
            None => self.0.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn text(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    /// bytea: the bytes as they are.
    pub(in crate::store) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as i32).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    /// jsonb: a version byte, then the JSON text.
    fn jsonb(&mut self, json: &str) {
        self.0
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.0.push(1);
        self.0.extend_from_slice(json.as_bytes());
    }
    fn full(&self) -> bool {
        self.0.len() >= SEND_BYTES
    }
    fn end(&mut self) {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

/// Copies `rows` into `table` (`columns`), `encode` writing each row.
pub(in crate::store) async fn copy_in<T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    statement: &str,
    rows: &[T],
    mut encode: impl FnMut(&mut CopyRows, &T),
) -> Result<()> {
    let mut copy = tx.copy_in_raw(statement).await?;
    let mut buf = CopyRows::new();
    for row in rows {
        encode(&mut buf, row);
        if buf.full() {
            copy.send(buf.0.as_slice()).await?;
            buf.0.clear();
        }
    }
    buf.end();
    copy.send(buf.0.as_slice()).await?;
    copy.finish().await?;
    Ok(())
}

async fn copy_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[(i64, &ActivityEvent)],
    kinds: &EventKinds,
    now: i64,
) -> Result<()> {
    copy_in(
        tx,
        "COPY events (customer_id, kind, occurred_at, day, value, attributes, source, source_event_id, ingested_at) FROM STDIN (FORMAT binary)",
        rows,
        |b, (c, e)| {
            let at = e.occurred_at.timestamp();
            b.row(9);
            b.i64(*c);
            b.text(&kinds.name(e.kind));
            b.i64(at);
            b.i32(day_of(at) as i32);
            b.f64(e.value.filter(|v| v.is_finite()));
            if e.attributes.is_empty() {
                b.jsonb("{}");
            } else {
                let attrs = serde_json::to_string(&e.attributes).unwrap_or_else(|_| "{}".into());
                b.jsonb(&attrs);
            }
            b.text(&e.source);
            b.text(&e.source_event_id);
            b.i64(now);
        },
    )
    .await
}

/// Writes the rollups and changed marks of the events written in bulk: summed by key in
/// memory, then copied (added to, when some event of those days went row by row).
/// Returns how many customers were marked.
async fn write_bulk_rollups(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    bulk: &mut Bulk,
    now: i64,
) -> Result<u64> {
    if bulk.parts.is_empty() {
        return Ok(0);
    }
    let parts = &mut bulk.parts;
    let sums = super::sum_rollups(parts);
    if bulk.mixed {
        for chunk in sums.chunks(CHUNK) {
            let (mut d, mut c, mut k, mut n, mut t) = (vec![], vec![], vec![], vec![], vec![]);
            for s in chunk {
                d.push(s[0] as i32);
                c.push(s[1]);
                k.push(s[2] as i16);
                n.push(s[3]);
                t.push(s[4]);
            }
            sqlx::query(
                "INSERT INTO activity_daily (day, customer_id, kind, n, total_milli)
                 SELECT * FROM UNNEST($1::integer[], $2::bigint[], $3::smallint[], $4::bigint[], $5::bigint[])
                 ON CONFLICT (day, customer_id, kind) DO UPDATE SET n = activity_daily.n + excluded.n,
                     total_milli = activity_daily.total_milli + excluded.total_milli",
            )
            .bind(&d)
            .bind(&c)
            .bind(&k)
            .bind(&n)
            .bind(&t)
            .execute(&mut **tx)
            .await?;
        }
    } else {
        copy_in(
            tx,
            "COPY activity_daily (day, customer_id, kind, n, total_milli) FROM STDIN (FORMAT binary)",
            &sums,
            |b, s| {
                b.row(5);
                b.i32(s[0] as i32);
                b.i64(s[1]);
                b.i16(s[2] as i16);
                b.i64(s[3]);
                b.i64(s[4]);
            },
        )
        .await?;
    }
    drop(sums);
    let mut customers: Vec<i64> = parts.iter().map(|p| p.1).collect();
    customers.sort_unstable();
    customers.dedup();
    copy_in(
        tx,
        "COPY activity_changes_log (changed_at, customer_id) FROM STDIN (FORMAT binary)",
        &customers,
        |b, c| {
            b.row(2);
            b.i64(now);
            b.i64(*c);
        },
    )
    .await?;
    Ok(customers.len() as u64)
}
