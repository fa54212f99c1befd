//! SQLite's ingest transaction, stepped through SQLite's own API ([`crate::store::raw`]).
//!
//! One writer thread holds the write lock (`BEGIN IMMEDIATE`) for the whole transaction and
//! takes the batches as the async side reads, parses, resolves and sorts them, so parsing
//! and storing run on both cores at once. Events, rollups and changed marks are written
//! by multi-row statements ([`ROWS`] rows a step: the cost of a step, not of a row,
//! dominated one-row statements). A step that stored fewer events than it was given had
//! duplicates, found by the id each stored row got. Rollups are summed in memory and
//! written once at the end of the transaction, in key order, as are the changed-customer
//! marks. Every key starts with the day (`events`, `activity_daily`), so a transaction of
//! activity from the same weeks writes the ends of the trees, not pages all over them.

use super::{
    FailPoint, IngestCounts, Message, Pending, Progress, Result, RollupPart, StoreError, day_of,
    milli,
};
use crate::store::raw::{Raw, Stmt};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::store::Shared;

// Conflict clauses: `OR IGNORE` and `OR FAIL` where they say what is meant. A statement
// of many rows that may *abort* (the default for `NOT NULL`, including a key's columns)
// makes SQLite copy every page it touches to a statement journal first, so it can undo
// just that statement: 5% of the writer's time when every insert did.

/// Adds (day, customer, kind) sums to the rollups of a day that already has some.
const ROLLUPS_HEAD: &str =
    "INSERT INTO activity_daily (day, customer_id, kind, n, total_milli) VALUES";
const ROLLUPS_TAIL: &str =
    "ON CONFLICT (day, customer_id, kind) DO UPDATE SET n = activity_daily.n + excluded.n,
        total_milli = activity_daily.total_milli + excluded.total_milli";

/// Writes the first rollups of a day, which cannot conflict: the transaction found the
/// day without rollups under the write lock, and the sums have one row per key. Were
/// one to conflict all the same, `OR FAIL` stops the statement with an error, and the
/// transaction is rolled back.
const NEW_DAY_ROLLUPS_HEAD: &str =
    "INSERT OR FAIL INTO activity_daily (day, customer_id, kind, n, total_milli) VALUES";

/// Whether a day has rollups yet.
const DAY_HAS_ROLLUPS: &str = "SELECT 1 FROM activity_daily WHERE day = $1 LIMIT 1";

/// Notes customers changed, at the end of the log readers fold into `activity_changes`.
const CHANGED_HEAD: &str =
    "INSERT OR IGNORE INTO activity_changes_log (changed_at, customer_id) VALUES";

/// Rows per multi-row statement.
const ROWS: usize = 64;

/// `head`, then `rows` tuples of `cols` parameters numbered from `first` (each tuple
/// starting with the parameters shared by all rows, `?1` to `?{first - 1}`), then `tail`.
fn multi_row(head: &str, cols: usize, rows: usize, first: usize, tail: &str) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        for shared in 1..first {
            let _ = write!(sql, "?{shared}, ");
        }
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "?{}", first + r * cols + c);
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// A statement for `ROWS` rows and one for the last, shorter step (prepared when needed).
struct MultiRow<'r> {
    raw: &'r Raw,
    head: &'static str,
    cols: usize,
    first: usize,
    tail: &'static str,
    full: Stmt<'r>,
    rest: Option<(usize, Stmt<'r>)>,
}

impl<'r> MultiRow<'r> {
    fn new(
        raw: &'r Raw,
        head: &'static str,
        cols: usize,
        first: usize,
        tail: &'static str,
    ) -> Result<Self> {
        Ok(Self {
            raw,
            head,
            cols,
            first,
            tail,
            full: raw.prepare(&multi_row(head, cols, ROWS, first, tail))?,
            rest: None,
        })
    }

    /// The statement for `rows` rows (`ROWS` or fewer).
    fn stmt(&mut self, rows: usize) -> Result<&mut Stmt<'r>> {
        if rows == ROWS {
            return Ok(&mut self.full);
        }
        if self.rest.as_ref().is_none_or(|(n, _)| *n != rows) {
            let sql = multi_row(self.head, self.cols, rows, self.first, self.tail);
            self.rest = Some((rows, self.raw.prepare(&sql)?));
        }
        Ok(&mut self.rest.as_mut().expect("prepared just now").1)
    }

    /// The number of row `r`'s column `c` (both from 0).
    fn param(&self, r: usize, c: usize) -> i32 {
        (self.first + r * self.cols + c) as i32
    }
}

/// A duplicate (a row whose key is stored already) is skipped. `kind` is the kind's code;
/// `attributes` is NULL when the event has none.
const EVENTS_HEAD: &str = "INSERT OR IGNORE INTO events (ingested_at, customer_id, kind, occurred_at, day, value, attributes, source, source_event_id, id) VALUES";
/// Each row: `?1` (when ingested, shared), then nine parameters of its own.
const EVENT_COLS: usize = 9;

/// The id a stored event got: how a step with duplicates tells which rows were new.
const STORED_ID: &str = "SELECT id FROM events WHERE day = $1 AND customer_id = $2 AND source = $3 AND source_event_id = $4";

/// The event inserts of one transaction, inside it. Event ids come from `events_next_id`,
/// written back by [`EventWriter::finish`].
pub(super) struct EventWriter<'r> {
    insert: MultiRow<'r>,
    stored_id: Stmt<'r>,
    next_id: i64,
}

impl<'r> EventWriter<'r> {
    pub(super) fn new(raw: &'r Raw) -> Result<Self> {
        let mut next = raw.prepare("SELECT next FROM events_next_id")?;
        let next_id = if next.step()? {
            next.i64(0)
        } else {
            return Err(StoreError::Data(
                "events_next_id has no row: the schema is damaged".into(),
            ));
        };
        drop(next);
        Ok(Self {
            insert: MultiRow::new(raw, EVENTS_HEAD, EVENT_COLS, 2, "")?,
            stored_id: raw.prepare(STORED_ID)?,
            next_id,
        })
    }

    /// Inserts `rows` (customer row id, event), at most [`ROWS`]; pushes for each whether
    /// it was new onto `new`.
    fn insert(
        &mut self,
        raw: &Raw,
        rows: &[(i64, &crate::domain::ActivityEvent)],
        now: i64,
        new: &mut Vec<bool>,
    ) -> Result<()> {
        let first_id = self.next_id;
        let params: Vec<[i32; EVENT_COLS]> = (0..rows.len())
            .map(|r| std::array::from_fn(|c| self.insert.param(r, c)))
            .collect();
        let s = self.insert.stmt(rows.len())?;
        s.run_borrowing(|b| {
            // `?1`: every row's `ingested_at`.
            b.i64(1, now)?;
            for (r, (p, (customer, e))) in params.iter().zip(rows).enumerate() {
                let at = e.occurred_at.timestamp();
                b.i64(p[0], *customer)?;
                b.i64(p[1], e.kind.0.into())?;
                b.i64(p[2], at)?;
                b.i64(p[3], day_of(at))?;
                b.opt_f64(p[4], e.value.filter(|v| v.is_finite()))?;
                if e.attributes.is_empty() {
                    b.null(p[5])?;
                } else {
                    let text = serde_json::to_string(&e.attributes).unwrap_or_else(|_| "{}".into());
                    b.owned_text(p[5], &text)?;
                }
                b.text(p[6], &e.source)?;
                b.text(p[7], &e.source_event_id)?;
                b.i64(p[8], first_id + r as i64)?;
            }
            Ok(())
        })?;
        self.next_id += rows.len() as i64;
        if raw.changes() == rows.len() as u64 {
            new.extend(std::iter::repeat_n(true, rows.len()));
            return Ok(());
        }
        // Some were stored already (or twice in this step): a row is new when the stored
        // event under its key has the id this step gave it.
        for (r, (customer, e)) in rows.iter().enumerate() {
            let at = e.occurred_at.timestamp();
            let q = &mut self.stored_id;
            q.bind_i64(1, day_of(at))?;
            q.bind_i64(2, *customer)?;
            q.bind_text(3, &e.source)?;
            q.bind_text(4, &e.source_event_id)?;
            let stored = if q.step()? { Some(q.i64(0)) } else { None };
            q.reset()?;
            new.push(stored == Some(first_id + r as i64));
        }
        // Ids after the last new row were not used: the next step takes them.
        let used = new[new.len() - rows.len()..]
            .iter()
            .rposition(|&n| n)
            .map_or(0, |r| r + 1);
        self.next_id = first_id + used as i64;
        Ok(())
    }

    /// Writes back the next event id.
    pub(super) fn finish(self, raw: &Raw) -> Result<()> {
        let mut s = raw.prepare("UPDATE events_next_id SET next = $1")?;
        s.bind_i64(1, self.next_id)?;
        s.run()
    }
}

/// Runs one ingest transaction on `raw`: batches from `batches` until it closes, then the
/// rollups, changed marks, quarantine, progress and released quarantine rows, then the
/// commit. Any error leaves the transaction open, and [`crate::store::raw`] rolls it back.
pub(super) fn ingest(
    raw: &Raw,
    messages: &mut tokio::sync::mpsc::Receiver<Message>,
    source: &str,
    now: i64,
    fail: FailPoint,
) -> Result<IngestCounts> {
    raw.execute(super::INGEST_CACHE)?;
    // On an error the transaction is still open; `raw` rolls it back.
    let out = transaction(raw, messages, source, now, fail);
    raw.execute(crate::store::NORMAL_CACHE)?;
    raw.execute(AUTO_CHECKPOINT)?;
    out
}

/// SQLite's own automatic checkpoint (every 1,000 pages), given back to the connection.
const AUTO_CHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 1000";

/// WAL frames (4 KiB pages) past which an ingest truncates the WAL before returning.
const WAL_LIMIT: i64 = 262_144;

/// Copies the WAL frames earlier transactions left into the database: a `PASSIVE`
/// checkpoint on another connection, in the background, beside the transaction being
/// written (on the other core). It records how many frames the WAL held for
/// [`truncate_wal`]. None starts while one is running (`None`): the next ingest, or
/// SQLite's automatic checkpoint on other connections, catches up. A checkpoint never
/// completes while a writer keeps appending, so the WAL only starts over when
/// [`truncate_wal`] empties it.
///
/// A large transaction ([`super::LARGE_TRANSACTION`]) waits for it after its commit, so the WAL's copy keeps pace with a
/// long import; a request of a few thousand events does not, so it never waits for the
/// copy of what the requests before it wrote.
pub(super) fn start_checkpoint(
    pool: &sqlx::SqlitePool,
    shared: &Arc<Shared>,
) -> Option<tokio::task::JoinHandle<()>> {
    let running = shared.checkpointing.clone().try_lock_owned().ok()?;
    let (pool, shared) = (pool.clone(), shared.clone());
    Some(tokio::spawn(async move {
        let _running = running;
        let frames = crate::store::raw::with_connection(&pool, |raw| {
            let mut s = raw.prepare("PRAGMA wal_checkpoint(PASSIVE)")?;
            Ok(if s.step()? { s.i64(1) } else { 0 })
        })
        .await;
        match frames {
            Ok(frames) => shared.wal_frames.store(frames, Ordering::Relaxed),
            // Nothing is lost: the frames stay in the WAL for the next checkpoint.
            Err(e) => tracing::warn!(error = %e, "checkpointing the WAL after an ingest"),
        }
    }))
}

/// Empties the WAL once the last checkpoint found it holding more than [`WAL_LIMIT`]
/// frames, after an ingest's commit, before the next ingest's turn: the frames left to
/// copy are then mostly that transaction's.
pub(super) async fn truncate_wal(pool: &sqlx::SqlitePool, shared: &Shared) -> Result<()> {
    if shared.wal_frames.load(Ordering::Relaxed) <= WAL_LIMIT {
        return Ok(());
    }
    try_empty_wal(pool, shared).await
}

/// Copies the whole WAL into the database and empties it, after any checkpoint running.
pub(crate) async fn empty_wal(pool: &sqlx::SqlitePool, shared: &Shared) -> Result<()> {
    let _running = shared.checkpointing.lock().await;
    crate::store::raw::with_connection(pool, |raw| raw.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        .await?;
    shared.wal_frames.store(0, Ordering::Relaxed);
    Ok(())
}

/// [`empty_wal`] if no reader is in the way: one try, no waiting. A `TRUNCATE` checkpoint
/// holds the write lock while it waits for readers of older snapshots; waiting there for
/// a long read (planning's, a scoring run's) held every writer of the daemon for the
/// busy timeout (two 30 s stalls in a 10-minute run). Frames it could not reset stay in
/// the WAL for the next try.
async fn try_empty_wal(pool: &sqlx::SqlitePool, shared: &Shared) -> Result<()> {
    try_empty_wal_within(pool, shared, 0).await.map(|_| ())
}

/// [`empty_wal`], waiting at most `wait_ms` for readers of older snapshots (SQLite's busy
/// handler); `Some(true)` when the WAL was emptied, `Some(false)` when readers were still
/// in the way (the frames copied so far stay copied), `None` when a checkpoint was
/// already running. The caller holds the write turn: the checkpoint holds SQLite's write
/// lock while it waits, and attune's writers then wait for their turn without a
/// connection.
async fn try_empty_wal_within(
    pool: &sqlx::SqlitePool,
    shared: &Shared,
    wait_ms: u32,
) -> Result<Option<bool>> {
    let Ok(_running) = shared.checkpointing.clone().try_lock_owned() else {
        return Ok(None);
    };
    let busy = crate::store::raw::with_connection(pool, move |raw| {
        raw.execute(&format!("PRAGMA busy_timeout = {wait_ms}"))?;
        let busy: Result<bool> = (|| {
            let mut s = raw.prepare("PRAGMA wal_checkpoint(TRUNCATE)")?;
            Ok(if s.step()? { s.i64(0) != 0 } else { true })
        })();
        raw.execute(BUSY_TIMEOUT)?;
        // SQLITE_BUSY as an error is the same answer as busy = 1.
        Ok(busy.unwrap_or(true))
    })
    .await?;
    if !busy {
        shared.wal_frames.store(0, Ordering::Relaxed);
    }
    Ok(Some(!busy))
}

/// The size of the WAL of the database at `path` (0 when there is none).
pub(crate) fn wal_bytes(path: &std::path::Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

/// What [`keep_wal_short`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKept {
    /// The WAL was no longer than the limit.
    Short,
    /// Emptied; it had grown to this many bytes.
    Emptied(u64),
    /// Readers of older snapshots were still reading after the wait; tried again later.
    ReadersInTheWay(u64),
    /// Another checkpoint (an ingest's) was running; tried again later.
    CheckpointRunning,
}

/// Empties the WAL of the database at `path` once it has grown past `limit` bytes,
/// waiting at most `wait_ms` for readers; the caller holds the write turn.
///
/// SQLite only starts its WAL over when every frame has been copied into the database
/// and no reader is still reading one; its automatic checkpoints never wait for that. In
/// a daemon whose readers always overlap (pulls every second, scoring and planning reading
/// page after page) that moment never came: the WAL grew by ~50 MB a full run, to 1.3 GB in
/// three minutes, and planning's reads of 50,000 customers slowed from 0.3 s to 100-190 s.
/// Every attune read is one page, so readers of older snapshots finish within a second.
pub(crate) async fn keep_wal_short(
    pool: &sqlx::SqlitePool,
    shared: &Shared,
    path: &std::path::Path,
    limit: u64,
    wait_ms: u32,
) -> Result<WalKept> {
    let size = wal_bytes(path);
    if size <= limit {
        return Ok(WalKept::Short);
    }
    Ok(match try_empty_wal_within(pool, shared, wait_ms).await? {
        Some(true) => WalKept::Emptied(size),
        Some(false) => WalKept::ReadersInTheWay(size),
        None => WalKept::CheckpointRunning,
    })
}

/// The busy timeout every connection has (`Db::connect`), given back after a try.
const BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 30000";

fn transaction(
    raw: &Raw,
    messages: &mut tokio::sync::mpsc::Receiver<Message>,
    source: &str,
    now: i64,
    fail: FailPoint,
) -> Result<IngestCounts> {
    raw.execute("BEGIN IMMEDIATE")?;
    let mut writer = EventWriter::new(raw)?;
    let mut parts: Vec<RollupPart> = Vec::new();
    let mut duplicate = 0;
    let mut new = Vec::with_capacity(ROWS);
    let mut waited = std::time::Duration::ZERO;
    let started = std::time::Instant::now();
    let cpu_started = tracing::enabled!(tracing::Level::DEBUG)
        .then(thread_cpu)
        .flatten();
    let mut pending = loop {
        let wait = std::time::Instant::now();
        let message = messages.blocking_recv();
        waited += wait.elapsed();
        match message {
            Some(Message::Events(batch, known)) => {
                parts.reserve(known.len());
                for chunk in known.chunks(ROWS) {
                    let rows: Vec<(i64, &crate::domain::ActivityEvent)> =
                        chunk.iter().map(|&(c, i)| (c, &batch.events[i])).collect();
                    new.clear();
                    writer.insert(raw, &rows, now, &mut new)?;
                    for (&(customer, e), &is_new) in rows.iter().zip(&new) {
                        if is_new {
                            let at = e.occurred_at.timestamp();
                            parts.push((day_of(at), customer, e.kind.0, milli(e.value)));
                        } else {
                            duplicate += 1;
                        }
                    }
                }
                // Freeing a batch's strings is a tenth of the writer's time: done on a
                // thread of its own.
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
    writer.finish(raw)?;
    pending.counts.duplicate = duplicate;
    let inserted = started.elapsed();
    pending.counts.stored = parts.len() as u64;
    write_rollups(raw, &mut parts)?;
    let rolled = started.elapsed();
    pending.counts.customers_changed = mark_changed(raw, &parts, now)?;
    let marked = started.elapsed();
    drop(parts);

    pending.sort_quarantine();
    let (new, old) = write_quarantine(raw, source, &pending, now)?;
    pending.counts.quarantined = new;
    pending.counts.already_quarantined = old;
    write_progress(raw, source, &pending, now)?;
    release(raw, &pending.released, now)?;
    set_churned(raw, &pending.churned)?;
    if fail.fails_before_commit() {
        return Err(StoreError::Data("failing before commit, as asked".into()));
    }
    raw.execute("COMMIT")?;
    tracing::debug!(
        events = pending.counts.stored,
        waiting_for_batches = ?waited,
        inserting = ?inserted - waited,
        rollups = ?rolled - inserted,
        changed_marks = ?marked - rolled,
        finishing_and_commit = ?started.elapsed() - marked,
        writer_cpu = ?cpu_started.and_then(|a| Some(thread_cpu()?.saturating_sub(a))),
        "SQLite ingest transaction"
    );
    Ok(pending.counts)
}

/// The CPU time this thread has used, where Linux tells it (`/proc/thread-self/stat`):
/// beside the transaction's wall time, it shows whether the writer had a core to itself.
fn thread_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command (which may hold spaces): state is the 3rd; utime and
    // stime, in clock ticks of 10 ms, the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis((user + system) * 10))
}

/// Sums the new events by (day, customer, kind) and adds each sum to its rollup row, in
/// key order: a day's first rollups are inserted, a day with some already is added to.
fn write_rollups(raw: &Raw, parts: &mut [RollupPart]) -> Result<()> {
    let sums = super::sum_rollups(parts);
    let mut add = MultiRow::new(raw, ROLLUPS_HEAD, 5, 1, ROLLUPS_TAIL)?;
    let mut new_day = MultiRow::new(raw, NEW_DAY_ROLLUPS_HEAD, 5, 1, "")?;
    let mut has_rollups = raw.prepare(DAY_HAS_ROLLUPS)?;
    for day in sums.chunk_by(|a, b| a[0] == b[0]) {
        has_rollups.bind_i64(1, day[0][0])?;
        let seen = has_rollups.step()?;
        has_rollups.reset()?;
        let write = if seen { &mut add } else { &mut new_day };
        for chunk in day.chunks(ROWS) {
            let params: Vec<i32> = (0..chunk.len()).map(|r| write.param(r, 0)).collect();
            let s = write.stmt(chunk.len())?;
            for (row, first) in chunk.iter().zip(params) {
                for (c, v) in row.iter().enumerate() {
                    s.bind_i64(first + c as i32, *v)?;
                }
            }
            s.run()?;
        }
        // The day's blocks follow its rows, in this transaction.
        super::blocks::after_rollups(raw, day, seen)?;
    }
    Ok(())
}

/// Marks each customer with a new event as changed; returns how many.
fn mark_changed(raw: &Raw, parts: &[RollupPart], now: i64) -> Result<u64> {
    let mut customers: Vec<i64> = parts.iter().map(|p| p.1).collect();
    customers.sort_unstable();
    customers.dedup();
    // Each row: (customer, `?1`), `?1` the time of the change.
    let mut mark = MultiRow::new(raw, CHANGED_HEAD, 1, 2, "")?;
    for chunk in customers.chunks(ROWS) {
        let params: Vec<i32> = (0..chunk.len()).map(|r| mark.param(r, 0)).collect();
        let s = mark.stmt(chunk.len())?;
        s.bind_i64(1, now)?;
        for (c, p) in chunk.iter().zip(params) {
            s.bind_i64(p, *c)?;
        }
        s.run()?;
    }
    Ok(customers.len() as u64)
}

/// The quarantined rows, one step each; returns (new, already quarantined).
fn write_quarantine(raw: &Raw, source: &str, pending: &Pending, now: i64) -> Result<(u64, u64)> {
    let mut insert = raw.prepare(super::INSERT_QUARANTINE)?;
    let mut new = 0;
    for (r, e) in &pending.quarantine {
        insert.bind_text(1, source)?;
        insert.bind_text(2, &r.id)?;
        insert.bind_opt_text(3, r.customer.as_deref())?;
        insert.bind_text(4, r.code.as_str())?;
        insert.bind_text(5, &r.reason)?;
        insert.bind_text(6, &r.location)?;
        insert.bind_text(7, &json_text(&r.raw)?)?;
        match e {
            Some(e) => insert.bind_text(8, &json_text(e)?)?,
            None => insert.bind_null(8)?,
        }
        insert.bind_i64(9, now)?;
        insert.run()?;
        new += raw.changes();
    }
    Ok((new, pending.quarantine.len() as u64 - new))
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Data(format!("writing a quarantined row as JSON: {e}")))
}

fn write_progress(raw: &Raw, source: &str, pending: &Pending, now: i64) -> Result<()> {
    match &pending.progress {
        Progress::None => {}
        Progress::Cursor(position) => {
            let mut s = raw.prepare(super::SAVE_CURSOR)?;
            s.bind_text(1, source)?;
            s.bind_text(2, position)?;
            s.bind_i64(3, now)?;
            s.run()?;
        }
        Progress::File {
            file,
            fingerprint,
            lines_done,
            finished,
        } => {
            let c = &pending.counts;
            let mut s = raw.prepare(super::SAVE_FILE)?;
            s.bind_text(1, source)?;
            s.bind_text(2, file)?;
            s.bind_text(3, fingerprint)?;
            s.bind_i64(4, *lines_done as i64)?;
            s.bind_text(5, finished.unwrap_or("in_progress"))?;
            s.bind_i64(6, now)?;
            s.bind_opt_i64(7, finished.map(|_| now))?;
            s.bind_i64(8, c.stored as i64)?;
            s.bind_i64(9, c.duplicate as i64)?;
            s.bind_i64(10, (c.quarantined + c.already_quarantined) as i64)?;
            s.run()?;
        }
    }
    Ok(())
}

/// A `churned` event sets its customer's `churned_on` to its day, unless it is earlier.
fn set_churned(raw: &Raw, churned: &[(i64, i64)]) -> Result<()> {
    if churned.is_empty() {
        return Ok(());
    }
    let mut s = raw.prepare(super::SET_CHURNED)?;
    for (customer, day) in churned {
        s.bind_text(
            1,
            &crate::features::day_from_number(*day as i32).to_string(),
        )?;
        s.bind_i64(2, *customer)?;
        s.run()?;
    }
    Ok(())
}

fn release(raw: &Raw, ids: &[i64], now: i64) -> Result<()> {
    let mut s = raw
        .prepare("UPDATE quarantine SET released_at = $1 WHERE released_at IS NULL AND id = $2")?;
    for id in ids {
        s.bind_i64(1, now)?;
        s.bind_i64(2, *id)?;
        s.run()?;
    }
    Ok(())
}

/// Inserts events with no rollups, changed marks, quarantine or duplicate counting: the
/// raw insert ceiling of `attune-bench ingest`. The same statement, order and transaction
/// size as [`ingest`].
pub(super) fn insert_raw(
    raw: &Raw,
    rows: &[(i64, crate::domain::ActivityEvent)],
    now: i64,
) -> Result<()> {
    // Ingest's page cache, with SQLite's automatic checkpoints: the database's own speed.
    raw.execute(super::INGEST_CACHE)?;
    raw.execute(AUTO_CHECKPOINT)?;
    for batch in rows.chunks(super::COMMIT_ROWS) {
        let mut order: Vec<&(i64, crate::domain::ActivityEvent)> = batch.iter().collect();
        order.sort_by_key(|(id, e)| (day_of(e.occurred_at.timestamp()), *id, e.occurred_at));
        raw.execute("BEGIN IMMEDIATE")?;
        let mut writer = EventWriter::new(raw)?;
        let mut new = Vec::with_capacity(ROWS);
        for chunk in order.chunks(ROWS) {
            let rows: Vec<(i64, &crate::domain::ActivityEvent)> =
                chunk.iter().map(|(id, e)| (*id, e)).collect();
            new.clear();
            writer.insert(raw, &rows, now, &mut new)?;
        }
        writer.finish(raw)?;
        raw.execute("COMMIT")?;
    }
    raw.execute(crate::store::NORMAL_CACHE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DatabaseUrl, Db};

    /// A reader holding an old snapshot (planning's long read) while the WAL is past its
    /// limit: the truncation after an ingest gives up at once and leaves the frames for
    /// the next try, instead of holding the write lock for the busy timeout (30 s),
    /// during which every writer of the daemon stood still.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_truncation_never_waits_for_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&DatabaseUrl::Sqlite(dir.path().join("t.db")))
            .await
            .unwrap();
        let Db::Sqlite(pool, shared) = &db else {
            unreachable!()
        };
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(pool)
            .await
            .unwrap();
        let mut reader = pool.begin().await.unwrap();
        let _: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        // Written after the reader's snapshot: the WAL cannot start over under it.
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(pool)
            .await
            .unwrap();
        shared.wal_frames.store(WAL_LIMIT + 1, Ordering::Relaxed);
        // Bounded well under the busy timeout: waiting at all is the defect.
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            truncate_wal(pool, shared),
        )
        .await
        .expect("the truncation waited for the reader")
        .unwrap();
        assert!(
            shared.wal_frames.load(Ordering::Relaxed) > WAL_LIMIT,
            "blocked by the reader, so the frames are left for the next try"
        );
        reader.rollback().await.unwrap();
        truncate_wal(pool, shared).await.unwrap();
        assert_eq!(shared.wal_frames.load(Ordering::Relaxed), 0);
        let wal = dir.path().join("t.db-wal");
        assert_eq!(std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0), 0);
        // The connection's busy timeout is given back.
        let (ms,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(ms, 30_000);
    }

    /// Past its limit, the WAL is emptied once the readers of older snapshots finish: a
    /// reader still reading after the wait leaves it for the next look (after about the
    /// wait, not the busy timeout); one that finishes within the wait does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_emptied_once_readers_of_older_snapshots_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::connect(&DatabaseUrl::Sqlite(path.clone()))
            .await
            .unwrap();
        let Db::Sqlite(pool, _) = &db else {
            unreachable!()
        };
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(pool)
            .await
            .unwrap();
        let fill = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT i FROM n";
        sqlx::query(fill).execute(pool).await.unwrap();
        assert_eq!(
            db.keep_wal_short(u64::MAX, 100).await.unwrap(),
            WalKept::Short
        );
        let grown = wal_bytes(&path);
        assert!(grown > 0);

        let mut reader = pool.begin().await.unwrap();
        let _: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        sqlx::query(fill).execute(pool).await.unwrap();
        let t = std::time::Instant::now();
        let kept = db.keep_wal_short(1, 300).await.unwrap();
        assert!(
            matches!(kept, WalKept::ReadersInTheWay(b) if b >= grown),
            "{kept:?}"
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "bounded by the wait: {:?}",
            t.elapsed()
        );

        // A reader that finishes within the wait is waited for.
        let finish = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            reader.rollback().await.unwrap();
        });
        let kept = db.keep_wal_short(1, 5_000).await.unwrap();
        finish.await.unwrap();
        assert!(
            matches!(kept, WalKept::Emptied(b) if b >= grown),
            "{kept:?}"
        );
        assert_eq!(wal_bytes(&path), 0);
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(rows, 40_000);
        let (ms,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(ms, 30_000);
    }
}
