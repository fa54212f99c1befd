//! SQLite's daily rollups by column: the layout the scans of scoring and training read.
//!
//! A block holds one day's rollups of 4,096 consecutive customer ids ([`SHIFT`]), packed in
//! one blob: for each row in key order (customer, kind), the customer id's distance from the
//! one before, then kind, count and total in thousandths, each a zigzag varint. A million
//! customers' 90 days are about 22,000 blocks, read with one lookup each, where rows were
//! 11 million steps of SQLite's virtual machine.
//!
//! `activity_daily` stays the record. A day listed in `activity_block_days` has complete
//! blocks: ingest rebuilds the blocks it touched from the rows, in the same transaction as
//! the rows ([`after_rollups`]), so a crash leaves both or neither. A day not listed
//! (rollups stored before blocks existed) is read from the rows until
//! [`seal_day`] builds its blocks from them; readers never depend on a day being sealed.

use super::{Result, StoreError};
use crate::store::raw::{Raw, Stmt};

/// Customer ids per block: `id >> SHIFT` is the block.
pub(crate) const SHIFT: u32 = 12;

/// The first format; the blob's first byte.
const FORMAT_1: u8 = 1;

/// One rollup row: customer, kind, count, total in thousandths.
pub(crate) type Row = (i64, i64, i64, i64);

pub(crate) fn block_of(customer: i64) -> i64 {
    customer >> SHIFT
}

fn put(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn get(data: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at)?;
        *at += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// The blob of `rows`, all of `block`, in key order.
pub(crate) fn encode(block: i64, rows: &[Row], out: &mut Vec<u8>) {
    out.clear();
    out.push(FORMAT_1);
    let mut previous = block << SHIFT;
    for &(customer, kind, n, total) in rows {
        put(out, customer.wrapping_sub(previous));
        put(out, kind);
        put(out, n);
        put(out, total);
        previous = customer;
    }
}

/// Calls `each` with every row of a block's blob, in key order.
pub(crate) fn decode(
    day: i64,
    block: i64,
    data: &[u8],
    mut each: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    let corrupt = || {
        StoreError::Data(format!(
            "activity_blocks day {day} block {block}: the blob is cut short or not in format {FORMAT_1}; \
             delete the day from activity_block_days to read its rows instead"
        ))
    };
    if data.first() != Some(&FORMAT_1) {
        return Err(corrupt());
    }
    let mut at = 1;
    let mut customer = block << SHIFT;
    while at < data.len() {
        let mut next = || get(data, &mut at).ok_or_else(corrupt);
        customer = customer.wrapping_add(next()?);
        let (kind, n, total) = (next()?, next()?, next()?);
        each((customer, kind, n, total))?;
    }
    Ok(())
}

const BLOCK_ROWS: &str = "SELECT customer_id, kind, n, total_milli FROM activity_daily
    WHERE day = ?1 AND customer_id BETWEEN ?2 AND ?3";
const PUT_BLOCK: &str =
    "INSERT OR REPLACE INTO activity_blocks (day, block, data) VALUES (?1, ?2, ?3)";
const DROP_BLOCK: &str = "DELETE FROM activity_blocks WHERE day = ?1 AND block = ?2";
const IS_SEALED: &str = "SELECT 1 FROM activity_block_days WHERE day = ?1";
const SEAL: &str = "INSERT OR IGNORE INTO activity_block_days (day) VALUES (?1)";

/// Rebuilds the blocks `blocks` (sorted, distinct) of `day` from its rows, inside the
/// caller's write transaction.
pub(crate) fn rebuild(raw: &Raw, day: i64, blocks: &[i64]) -> Result<()> {
    let mut rows_of = raw.prepare(BLOCK_ROWS)?;
    let mut put_block = raw.prepare(PUT_BLOCK)?;
    let mut drop_block = raw.prepare(DROP_BLOCK)?;
    let (mut rows, mut blob) = (Vec::new(), Vec::new());
    for &block in blocks {
        rows.clear();
        rows_of.bind_i64(1, day)?;
        rows_of.bind_i64(2, block << SHIFT)?;
        // The block's last id, written so the last block of the id space cannot overflow.
        rows_of.bind_i64(3, (block << SHIFT) | ((1 << SHIFT) - 1))?;
        while rows_of.step()? {
            rows.push((
                rows_of.i64(0),
                rows_of.i64(1),
                rows_of.i64(2),
                rows_of.i64(3),
            ));
        }
        rows_of.reset()?;
        if rows.is_empty() {
            drop_block.bind_i64(1, day)?;
            drop_block.bind_i64(2, block)?;
            drop_block.run()?;
            continue;
        }
        encode(block, &rows, &mut blob);
        put_block.bind_i64(1, day)?;
        put_block.bind_i64(2, block)?;
        put_block.bind_blob(3, &blob)?;
        put_block.run()?;
    }
    Ok(())
}

/// Whether `day`'s blocks are complete.
pub(crate) fn is_sealed(raw: &Raw, day: i64) -> Result<bool> {
    let mut stmt = raw.prepare(IS_SEALED)?;
    stmt.bind_i64(1, day)?;
    stmt.step()
}

/// Keeps the blocks of the rollups an ingest transaction just wrote (`sums`: [day,
/// customer, kind, n, total] in key order, of one day): a day that is new (`had_rollups`
/// false) gets its blocks and is sealed; a sealed day has the blocks it touched rebuilt; a
/// day stored before blocks existed is left to [`seal_day`].
pub(crate) fn after_rollups(raw: &Raw, sums: &[[i64; 5]], had_rollups: bool) -> Result<()> {
    let Some(first) = sums.first() else {
        return Ok(());
    };
    let day = first[0];
    if had_rollups && !is_sealed(raw, day)? {
        return Ok(());
    }
    let mut touched: Vec<i64> = sums.iter().map(|r| block_of(r[1])).collect();
    touched.dedup();
    rebuild(raw, day, &touched)?;
    if !had_rollups {
        let mut seal = raw.prepare(SEAL)?;
        seal.bind_i64(1, day)?;
        seal.run()?;
    }
    Ok(())
}

/// Builds every block of `day` from its rows and seals the day, in one write transaction.
pub(crate) fn seal_day(raw: &Raw, day: i64) -> Result<()> {
    raw.execute("BEGIN IMMEDIATE")?;
    let blocks = {
        let mut stmt = raw.prepare(&format!(
            "SELECT DISTINCT customer_id >> {SHIFT} FROM activity_daily WHERE day = ?1 ORDER BY 1"
        ))?;
        stmt.bind_i64(1, day)?;
        let mut blocks = Vec::new();
        while stmt.step()? {
            blocks.push(stmt.i64(0));
        }
        blocks
    };
    rebuild(raw, day, &blocks)?;
    let mut seal = raw.prepare(SEAL)?;
    seal.bind_i64(1, day)?;
    seal.run()?;
    drop(seal);
    raw.execute("COMMIT")
}

/// The sealed days in `from..to`, in order.
pub(crate) fn sealed_days(raw: &Raw, from: i64, to: i64) -> Result<Vec<i64>> {
    let mut stmt = raw
        .prepare("SELECT day FROM activity_block_days WHERE day >= ?1 AND day < ?2 ORDER BY day")?;
    stmt.bind_i64(1, from)?;
    stmt.bind_i64(2, to)?;
    let mut days = Vec::new();
    while stmt.step()? {
        days.push(stmt.i64(0));
    }
    Ok(days)
}

/// The days in `from..=to` that have rollups but no blocks.
pub(crate) fn unsealed_days(raw: &Raw, from: i64, to: i64) -> Result<Vec<i64>> {
    let sealed = sealed_days(raw, from, to.saturating_add(1))?;
    let mut has = raw.prepare("SELECT 1 FROM activity_daily WHERE day = ?1 LIMIT 1")?;
    let mut out = Vec::new();
    for day in from..=to {
        if sealed.binary_search(&day).is_ok() {
            continue;
        }
        has.bind_i64(1, day)?;
        if has.step()? {
            out.push(day);
        }
        has.reset()?;
    }
    Ok(out)
}

/// The blocks of a day and range of customers, for [`read`].
pub(crate) const READ: &str =
    "SELECT block, data FROM activity_blocks WHERE day = ?1 AND block BETWEEN ?2 AND ?3";

/// Calls `each` with the rows of customers `a..=b` on `day`, from the day's blocks
/// (`stmt`: [`READ`] prepared).
pub(crate) fn read(
    stmt: &mut Stmt<'_>,
    day: i64,
    (a, b): (i64, i64),
    mut each: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    stmt.bind_i64(1, day)?;
    stmt.bind_i64(2, block_of(a))?;
    stmt.bind_i64(3, block_of(b))?;
    while stmt.step()? {
        let block = stmt.i64(0);
        decode(day, block, stmt.blob(1).unwrap_or_default(), |row| {
            if row.0 >= a && row.0 <= b {
                each(row)?;
            }
            Ok(())
        })?;
    }
    stmt.reset()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_block_reads_back_its_rows(
            block in -3i64..3,
            offsets in proptest::collection::btree_set((0i64..4096, 0i64..40), 0..200),
            values in proptest::collection::vec((any::<i64>(), any::<i64>()), 200),
        ) {
            let rows: Vec<Row> = offsets
                .into_iter()
                .zip(values)
                .map(|((o, kind), (n, t))| ((block << SHIFT) + o, kind, n, t))
                .collect();
            let mut blob = Vec::new();
            encode(block, &rows, &mut blob);
            let mut back = Vec::new();
            decode(1, block, &blob, |r| { back.push(r); Ok(()) }).unwrap();
            prop_assert_eq!(back, rows);
            // A blob cut short is an error, never a wrong row.
            if blob.len() > 1 {
                let cut = &blob[..blob.len() - 1];
                let read = decode(1, block, cut, |_| Ok(()));
                prop_assert!(read.is_err());
            }
        }
    }
}
