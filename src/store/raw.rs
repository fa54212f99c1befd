//! Direct SQLite calls on a pooled connection, for the bulk reads and writes of scoring,
//! where sqlx's hand-off of every row from its worker thread costs more than SQLite's own
//! work (a thread wake-up per row, and text conversions to pack rows together).
//!
//! The connection comes from the same pool (same WAL, `busy_timeout` and cache settings),
//! is locked out of sqlx's worker with [`sqlx::sqlite::SqliteConnection::lock_handle`], and
//! is driven on a blocking thread. Statements are finalized when dropped, and a
//! transaction left open by an error or a panic is rolled back (in a guard's `Drop`)
//! before the connection goes back to the pool.
//!
//! The only module allowed `unsafe`: each block is one FFI call, with why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;

use libsqlite3_sys as ffi;
use sqlx::SqlitePool;

use super::{Result, StoreError};

/// A locked SQLite connection handle, valid for the closure given to [`with_connection`].
pub(super) struct Raw {
    db: *mut ffi::sqlite3,
}

/// Runs `work` on a blocking thread with the raw handle of a connection from `pool`.
pub(super) async fn with_connection<R, F>(pool: &SqlitePool, work: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(&Raw) -> Result<R> + Send + 'static,
{
    let mut conn = pool.acquire().await?;
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut locked = rt.block_on(conn.lock_handle())?;
        let raw = Raw {
            db: locked.as_raw_handle().as_ptr(),
        };
        // Whatever happens, a panic included, the connection goes back to the pool
        // outside a transaction: the guard rolls back when dropped, before `locked` is.
        let guard = Cleanup {
            raw: &raw,
            then: None,
        };
        let out = work(guard.raw);
        drop(guard);
        out
    })
    .await
    .map_err(|e| StoreError::Data(format!("a direct SQLite call stopped: {e}")))?
}

/// [`with_connection`] for a scan that reads a range once: the connection's page cache is
/// cut to 8 MB for it (the OS caches the file; three connections each filling the usual
/// 64 MB with pages read once held most of a scoring run's memory), then restored.
pub(super) async fn with_scan<R, F>(pool: &SqlitePool, work: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(&Raw) -> Result<R> + Send + 'static,
{
    with_connection(pool, move |raw| {
        raw.execute(SCAN_CACHE)?;
        // The cache is given back when the guard drops, a panic in `work` included.
        let guard = Cleanup {
            raw,
            then: Some(super::NORMAL_CACHE),
        };
        work(guard.raw)
    })
    .await
}

/// Puts a connection back as the pool expects it, on every way out of a closure (a
/// return, an error or a panic): a transaction left open is rolled back, then `then` (a
/// setting restored) runs.
struct Cleanup<'r> {
    raw: &'r Raw,
    then: Option<&'static str>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.raw.rollback_if_open();
        if let Some(sql) = self.then
            && let Err(e) = self.raw.execute(sql)
        {
            tracing::warn!(error = %e, sql, "restoring a connection setting");
        }
    }
}

const SCAN_CACHE: &str = "PRAGMA cache_size = -16384";

/// Process-wide SQLite settings, for a program's `main` before any database is opened
/// (SQLite takes them only before its first connection; later they are refused, harmlessly):
/// SQLite stops counting its allocations (`SQLITE_CONFIG_MEMSTATUS`, which SQLite's own
/// documentation recommends turning off for speed: the count takes a lock shared by every
/// connection on each allocation and free, which the ingest writer and the checkpoint
/// beside it contended for).
pub fn configure_process() {
    // SAFETY: called from `main` before the first connection, when no other thread uses
    // SQLite; the variadic argument is the `int` SQLITE_CONFIG_MEMSTATUS takes.
    // A refusal (SQLite already initialised) leaves the count on: slower, not wrong.
    let _ = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
}

impl Raw {
    /// Prepares one statement (`?1`, `?2`... or `$1`, `$2`... for parameters).
    pub(super) fn prepare(&self, sql: &str) -> Result<Stmt<'_>> {
        let text = CString::new(sql).map_err(|_| StoreError::Data("SQL with a NUL byte".into()))?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `db` is a live handle locked for this thread; `text` outlives the call.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(self.db, text.as_ptr(), -1, &mut stmt, std::ptr::null_mut())
        };
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            return Err(self.error(rc, "preparing a statement"));
        }
        Ok(Stmt {
            stmt,
            raw: self,
            _not_send: PhantomData,
        })
    }

    /// Runs statements that return no rows (`BEGIN IMMEDIATE`, `COMMIT`, ...).
    pub(super) fn execute(&self, sql: &str) -> Result<()> {
        let text = CString::new(sql).map_err(|_| StoreError::Data("SQL with a NUL byte".into()))?;
        // SAFETY: as in `prepare`; no callback, no error message buffer.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db,
                text.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc, sql));
        }
        Ok(())
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE on this connection.
    pub(super) fn changes(&self) -> u64 {
        // SAFETY: a live handle.
        unsafe { ffi::sqlite3_changes64(self.db) }.max(0) as u64
    }

    fn rollback_if_open(&self) {
        // SAFETY: a live handle; autocommit is 0 inside a transaction.
        if unsafe { ffi::sqlite3_get_autocommit(self.db) } == 0 {
            let _ = self.execute("ROLLBACK");
        }
    }

    fn error(&self, rc: c_int, doing: &str) -> StoreError {
        // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the handle.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }
            .to_string_lossy()
            .into_owned();
        StoreError::Data(format!("SQLite error {rc} {doing}: {message}"))
    }
}

/// A text's length as SQLite's `int`: text over 2 GiB is an error, never cut short.
fn text_len(value: &str) -> Result<c_int> {
    c_int::try_from(value.len()).map_err(|_| {
        StoreError::Data(format!(
            "a text of {} bytes is longer than SQLite takes",
            value.len()
        ))
    })
}

/// A prepared statement; finalized when dropped.
pub(super) struct Stmt<'r> {
    stmt: *mut ffi::sqlite3_stmt,
    raw: &'r Raw,
    _not_send: PhantomData<*mut ()>,
}

impl<'r> Stmt<'r> {
    pub(super) fn bind_i64(&mut self, index: c_int, value: i64) -> Result<()> {
        // SAFETY: a live statement; SQLite checks the index.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt, index, value) };
        self.check(rc, "binding a parameter")
    }

    pub(super) fn bind_f64(&mut self, index: c_int, value: f64) -> Result<()> {
        // SAFETY: as in `bind_i64`.
        let rc = unsafe { ffi::sqlite3_bind_double(self.stmt, index, value) };
        self.check(rc, "binding a parameter")
    }

    pub(super) fn bind_null(&mut self, index: c_int) -> Result<()> {
        // SAFETY: as in `bind_i64`.
        let rc = unsafe { ffi::sqlite3_bind_null(self.stmt, index) };
        self.check(rc, "binding a parameter")
    }

    pub(super) fn bind_opt_i64(&mut self, index: c_int, value: Option<i64>) -> Result<()> {
        match value {
            Some(v) => self.bind_i64(index, v),
            None => self.bind_null(index),
        }
    }

    pub(super) fn bind_opt_f64(&mut self, index: c_int, value: Option<f64>) -> Result<()> {
        match value {
            Some(v) => self.bind_f64(index, v),
            None => self.bind_null(index),
        }
    }

    pub(super) fn bind_opt_text(&mut self, index: c_int, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self.bind_text(index, v),
            None => self.bind_null(index),
        }
    }

    pub(super) fn bind_text(&mut self, index: c_int, value: &str) -> Result<()> {
        // SAFETY: SQLITE_TRANSIENT makes SQLite copy the bytes before the call returns.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.stmt,
                index,
                value.as_ptr().cast(),
                text_len(value)?,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc, "binding a parameter")
    }

    pub(super) fn bind_blob(&mut self, index: c_int, value: &[u8]) -> Result<()> {
        let len = c_int::try_from(value.len()).map_err(|_| {
            StoreError::Data(format!("a value of {} bytes is too long", value.len()))
        })?;
        // SAFETY: SQLITE_TRANSIENT makes SQLite copy the bytes before the call returns.
        let rc = unsafe {
            ffi::sqlite3_bind_blob(
                self.stmt,
                index,
                value.as_ptr().cast(),
                len,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc, "binding a parameter")
    }

    /// Binds text parameters that borrow from data living at least `'d` without copying
    /// them, through `bind`, then runs the statement once and unbinds every parameter
    /// before returning, so SQLite never holds a pointer past the borrow.
    pub(super) fn run_borrowing<'d>(
        &mut self,
        bind: impl FnOnce(&mut Borrowing<'_, 'r, 'd>) -> Result<()>,
    ) -> Result<()> {
        let bound = bind(&mut Borrowing {
            stmt: self,
            _data: PhantomData,
        });
        let ran = bound.and_then(|()| self.run());
        // SAFETY: a live statement; afterwards no parameter points at borrowed bytes.
        unsafe {
            ffi::sqlite3_clear_bindings(self.stmt);
        }
        ran
    }

    /// Advances to the next row: `true` while there is one.
    pub(super) fn step(&mut self) -> Result<bool> {
        // SAFETY: a live statement on a handle locked for this thread.
        match unsafe { ffi::sqlite3_step(self.stmt) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            rc => Err(self.raw.error(rc, "stepping a statement")),
        }
    }

    /// Makes the statement ready to run again with new parameters.
    pub(super) fn reset(&mut self) -> Result<()> {
        // SAFETY: a live statement.
        let rc = unsafe { ffi::sqlite3_reset(self.stmt) };
        self.check(rc, "resetting a statement")
    }

    /// Runs a statement that returns no rows, then resets it.
    pub(super) fn run(&mut self) -> Result<()> {
        let more = self.step();
        let reset = self.reset();
        more?;
        reset
    }

    pub(super) fn is_null(&self, column: c_int) -> bool {
        // SAFETY: called only while positioned on a row.
        unsafe { ffi::sqlite3_column_type(self.stmt, column) == ffi::SQLITE_NULL }
    }

    pub(super) fn i64(&self, column: c_int) -> i64 {
        // SAFETY: called only while positioned on a row; out-of-range columns read as 0.
        unsafe { ffi::sqlite3_column_int64(self.stmt, column) }
    }

    /// An integer column, `None` for NULL.
    pub(super) fn opt_i64(&self, column: c_int) -> Option<i64> {
        (!self.is_null(column)).then(|| self.i64(column))
    }

    /// A real column, `None` for NULL.
    pub(super) fn opt_f64(&self, column: c_int) -> Option<f64> {
        (!self.is_null(column)).then(|| self.f64(column))
    }

    /// A text column that may not be NULL.
    pub(super) fn string(&self, column: c_int) -> Result<String> {
        self.text(column)?
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Data(format!("column {column} is NULL")))
    }

    pub(super) fn f64(&self, column: c_int) -> f64 {
        // SAFETY: as in `i64`.
        unsafe { ffi::sqlite3_column_double(self.stmt, column) }
    }

    /// A text column (`None` for NULL); invalid UTF-8 is an error naming the column.
    pub(super) fn text(&self, column: c_int) -> Result<Option<&str>> {
        // SAFETY: the pointer and length describe bytes owned by the statement, valid until
        // the next step, reset or finalize, which all need `&mut self`.
        unsafe {
            let ptr = ffi::sqlite3_column_text(self.stmt, column);
            if ptr.is_null() {
                return Ok(None);
            }
            // Never negative; SQLite's lengths are at most its `int`.
            let len = usize::try_from(ffi::sqlite3_column_bytes(self.stmt, column)).unwrap_or(0);
            let bytes = std::slice::from_raw_parts(ptr, len);
            std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| StoreError::Data(format!("column {column} is not UTF-8 text")))
        }
    }

    /// A blob (or text) column's bytes, `None` for NULL.
    pub(super) fn blob(&self, column: c_int) -> Option<&[u8]> {
        if self.is_null(column) {
            return None;
        }
        // SAFETY: as in `text`; the bytes are asked for before their length, as SQLite
        // documents, and a zero-length blob may come back as a null pointer.
        unsafe {
            let ptr = ffi::sqlite3_column_blob(self.stmt, column);
            let len = usize::try_from(ffi::sqlite3_column_bytes(self.stmt, column)).unwrap_or(0);
            Some(if ptr.is_null() || len == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(ptr.cast::<u8>(), len)
            })
        }
    }

    fn check(&self, rc: c_int, doing: &str) -> Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.raw.error(rc, doing))
        }
    }
}

/// Parameters of one run of a statement, some borrowing data that lives at least `'d`
/// (see [`Stmt::run_borrowing`]).
pub(super) struct Borrowing<'s, 'r, 'd> {
    stmt: &'s mut Stmt<'r>,
    _data: PhantomData<&'d str>,
}

impl<'d> Borrowing<'_, '_, 'd> {
    /// Binds `value` in place: SQLite reads it during the run, which ends before `'d` does.
    pub(super) fn text(&mut self, index: c_int, value: &'d str) -> Result<()> {
        // SAFETY: SQLITE_STATIC lets SQLite read the bytes until the parameter is rebound
        // or cleared; `run_borrowing` clears every parameter before returning, and the
        // bytes live for `'d`, longer than that call.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.stmt.stmt,
                index,
                value.as_ptr().cast(),
                text_len(value)?,
                ffi::SQLITE_STATIC(),
            )
        };
        self.stmt.check(rc, "binding a parameter")
    }

    /// Binds a copy of `value` (text made just for this run).
    pub(super) fn owned_text(&mut self, index: c_int, value: &str) -> Result<()> {
        self.stmt.bind_text(index, value)
    }

    pub(super) fn i64(&mut self, index: c_int, value: i64) -> Result<()> {
        self.stmt.bind_i64(index, value)
    }

    pub(super) fn opt_f64(&mut self, index: c_int, value: Option<f64>) -> Result<()> {
        self.stmt.bind_opt_f64(index, value)
    }

    pub(super) fn null(&mut self, index: c_int) -> Result<()> {
        self.stmt.bind_null(index)
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, here.
        unsafe {
            ffi::sqlite3_finalize(self.stmt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one_connection_pool() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::from_millis(200));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        (dir, pool)
    }

    /// A panic inside a transaction: the connection goes back to the pool rolled back
    /// (before the guard, it went back inside the open transaction, holding the write
    /// lock, and its next user's BEGIN failed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_mid_transaction_rolls_back_and_restores_the_cache() {
        let (_dir, pool) = one_connection_pool().await;
        let out: Result<()> = with_scan(&pool, |raw| {
            raw.execute("BEGIN IMMEDIATE")?;
            raw.execute("INSERT INTO t VALUES (1)")?;
            #[allow(unreachable_code)]
            {
                panic!("a bug in the middle of a write");
                Ok(())
            }
        })
        .await;
        assert!(out.is_err(), "the panic is an error, not a crash");
        let (n, cache) = with_connection(&pool, |raw| {
            // A transaction still open would make this BEGIN fail.
            raw.execute("BEGIN IMMEDIATE")?;
            let mut s = raw.prepare("SELECT COUNT(*) FROM t")?;
            s.step()?;
            let n = s.i64(0);
            drop(s);
            raw.execute("COMMIT")?;
            let mut s = raw.prepare("PRAGMA cache_size")?;
            s.step()?;
            Ok((n, s.i64(0)))
        })
        .await
        .unwrap();
        assert_eq!(n, 0, "the insert was rolled back");
        assert_eq!(cache, -65536, "the scan's smaller cache was given back");
    }

    #[test]
    fn text_lengths_convert_without_truncation() {
        assert_eq!(text_len("abc").unwrap(), 3);
    }
}
