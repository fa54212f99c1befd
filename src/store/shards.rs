//! The shards of a scoring run (issue 22): ranges of customer ids any daemon may claim,
//! work and finish. A claim counts an attempt; every write of a shard's scores, its
//! renewal and its finish are fenced by that attempt, so a holder that lost its claim (it
//! stalled past `lease_until`, or was killed and the shard was taken back) can no longer
//! change anything, and a new holder starts by removing what an earlier attempt wrote.

use chrono::NaiveDate;

use super::{Db, Result, now_secs, on_pool};

/// The customers one shard scores: ids in `(after_id, upto_id]`, all those active on the
/// run's day, or only `ids` (a `changed` run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub after_id: i64,
    pub upto_id: i64,
    /// Customers in the range when the run was split.
    pub planned: i64,
    pub ids: Option<Vec<i64>>,
}

/// A shard this process holds, at attempt `attempt`: the fence of all it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardClaim {
    pub run_id: i64,
    pub shard: i32,
    pub attempt: i32,
    pub range: ShardRange,
}

/// A shard as `attune jobs`, the desk and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct ShardRow {
    pub run_id: i64,
    pub shard: i32,
    pub after_id: i64,
    pub upto_id: i64,
    pub planned: i64,
    /// queued, running, done or failed.
    pub status: String,
    pub holder: Option<String>,
    pub attempts: i32,
    pub lease_until: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub scored: Option<i64>,
    pub error: Option<String>,
}

/// A scoring run with its shards ([`Db::latest_split`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitRun {
    pub run: super::ScoringRun,
    /// Why the run failed, if it did.
    pub failed: Option<String>,
    pub shards: Vec<ShardRow>,
}

/// The statuses a shard can have, in the order they are shown.
pub const SHARD_STATUSES: [&str; 4] = ["queued", "running", "done", "failed"];

/// A claim's row: attempts, after_id, upto_id, planned, ids.
type ClaimedRow = (i32, i64, i64, i64, Option<Vec<u8>>);

const SHARD_COLUMNS: &str = "run_id, shard, after_id, upto_id, planned, status, holder, attempts, lease_until, started_at, finished_at, scored, error";

fn ids_to_bytes(ids: &[i64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

fn ids_from_bytes(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// Cuts sorted `ids` into ranges of about `per_shard` each (the last range runs to the end
/// of the id space; one left with less than half a shard joins the one before).
pub fn ranges_of_ids(ids: &[i64], per_shard: usize) -> Vec<ShardRange> {
    let per_shard = per_shard.max(1);
    let mut out: Vec<ShardRange> = Vec::new();
    let mut after = i64::MIN;
    for chunk in ids.chunks(per_shard) {
        let upto = *chunk.last().expect("a chunk is never empty");
        out.push(ShardRange {
            after_id: after,
            upto_id: upto,
            planned: chunk.len() as i64,
            ids: Some(chunk.to_vec()),
        });
        after = upto;
    }
    close_ranges(&mut out, per_shard as i64);
    out
}

/// The last range reaches the end of the id space, so customers who arrive after the split
/// are in a shard too; a last range under half a shard joins the one before it.
fn close_ranges(ranges: &mut Vec<ShardRange>, per_shard: i64) {
    if ranges.len() >= 2 && ranges.last().is_some_and(|r| r.planned * 2 < per_shard) {
        let last = ranges.pop().expect("two ranges");
        let prev = ranges.last_mut().expect("one range");
        prev.planned += last.planned;
        prev.upto_id = last.upto_id;
        if let (Some(a), Some(b)) = (&mut prev.ids, last.ids) {
            a.extend(b);
        }
    }
    match ranges.last_mut() {
        Some(last) => last.upto_id = i64::MAX,
        None => ranges.push(ShardRange {
            after_id: i64::MIN,
            upto_id: i64::MAX,
            planned: 0,
            ids: Some(vec![]),
        }),
    }
}

impl Db {
    /// The active customers on `day` cut into ranges of about `per_shard` each, by their
    /// ids: sized by the data, whatever the ids' gaps. One index walk of `per_shard` rows
    /// finds each boundary.
    pub async fn shard_ranges(&self, day: NaiveDate, per_shard: i64) -> Result<Vec<ShardRange>> {
        let per_shard = per_shard.max(1);
        let active = "signup_date <= $1 AND (churned_on IS NULL OR churned_on > $1)";
        let boundary = format!(
            "SELECT id FROM customers WHERE id > $2 AND {active} ORDER BY id LIMIT 1 OFFSET $3"
        );
        let rest = format!("SELECT COUNT(*) FROM customers WHERE id > $2 AND {active}");
        let mut out = Vec::new();
        let mut after = i64::MIN;
        // One shard (SQLite): the count is the one walk.
        let mut whole = per_shard == i64::MAX;
        loop {
            if whole {
                let (n,): (i64,) = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(rest.as_str()))
                    .bind(day).bind(after).fetch_one(p).await?);
                out.push(ShardRange {
                    after_id: after,
                    upto_id: i64::MAX,
                    planned: n,
                    ids: None,
                });
                break;
            }
            let upto: Option<(i64,)> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(boundary.as_str()))
                .bind(day).bind(after).bind(per_shard - 1).fetch_optional(p).await?);
            match upto {
                Some((upto,)) => {
                    out.push(ShardRange {
                        after_id: after,
                        upto_id: upto,
                        planned: per_shard,
                        ids: None,
                    });
                    after = upto;
                }
                None => whole = true,
            }
        }
        close_ranges(&mut out, per_shard);
        Ok(out)
    }

    /// Records run `run_id`'s shards, queued, in one transaction; a run already split
    /// keeps the shards it has. Returns how many it has.
    pub async fn split_run(&self, run_id: i64, ranges: &[ShardRange]) -> Result<i64> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let (have,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM run_shards WHERE run_id = $1")
                .bind(run_id).fetch_one(&mut *tx).await?;
            if have > 0 {
                return Ok(have);
            }
            for (i, r) in ranges.iter().enumerate() {
                sqlx::query("INSERT INTO run_shards (run_id, shard, after_id, upto_id, planned, ids) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(run_id).bind(i as i32).bind(r.after_id).bind(r.upto_id).bind(r.planned)
                    .bind(r.ids.as_deref().map(ids_to_bytes))
                    .execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE scoring_runs SET shards = $1 WHERE id = $2")
                .bind(ranges.len() as i32).bind(run_id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(ranges.len() as i64)
    }

    /// Claims shard `shard` of run `run_id` (any of its shards when `None`) for `holder`
    /// until `ttl` seconds from now: one that is queued, or running under a claim that ran
    /// out. A shard of a run that finished or failed is never claimed. What an earlier
    /// attempt wrote in the range is removed before the claim is returned.
    pub async fn claim_shard(
        &self,
        run_id: i64,
        shard: Option<i32>,
        holder: &str,
        ttl: i64,
    ) -> Result<Option<ShardClaim>> {
        for _ in 0..8 {
            let now = now_secs();
            let candidate: Option<(i32,)> = on_pool!(self, p => sqlx::query_as(
                "SELECT s.shard FROM run_shards s JOIN scoring_runs r ON r.id = s.run_id
                 WHERE s.run_id = $1 AND ($2 IS NULL OR s.shard = $2)
                   AND r.finished_at IS NULL AND r.failed_at IS NULL
                   AND (s.status = 'queued' OR (s.status = 'running' AND s.lease_until < $3))
                 ORDER BY s.shard LIMIT 1")
                .bind(run_id).bind(shard).bind(now).fetch_optional(p).await?);
            let Some((candidate,)) = candidate else {
                return Ok(None);
            };
            let _turn = self.write_turn().await;
            let claimed: Option<ClaimedRow> = on_pool!(self, p => {
                let mut tx = p.begin().await?;
                let row: Option<ClaimedRow> = sqlx::query_as(
                    "UPDATE run_shards SET status = 'running', holder = $1, attempts = attempts + 1,
                         lease_until = $2, started_at = $3, error = NULL
                     WHERE run_id = $4 AND shard = $5
                       AND (status = 'queued' OR (status = 'running' AND lease_until < $3))
                     RETURNING attempts, after_id, upto_id, planned, ids")
                    .bind(holder).bind(now + ttl).bind(now).bind(run_id).bind(candidate)
                    .fetch_optional(&mut *tx).await?;
                if let Some((attempt, after, upto, _, _)) = &row
                    && *attempt > 1
                {
                    // An earlier attempt may have written part of the range.
                    sqlx::query("DELETE FROM scores WHERE run_id = $1 AND customer_id > $2 AND customer_id <= $3")
                        .bind(run_id).bind(*after).bind(*upto).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                row
            });
            if let Some((attempt, after_id, upto_id, planned, ids)) = claimed {
                return Ok(Some(ShardClaim {
                    run_id,
                    shard: candidate,
                    attempt,
                    range: ShardRange {
                        after_id,
                        upto_id,
                        planned,
                        ids: ids.as_deref().map(ids_from_bytes),
                    },
                }));
            }
            // Another process claimed it first: look again.
        }
        Ok(None)
    }

    /// Extends a claim to `ttl` seconds from now; false when it is no longer this
    /// attempt's (taken back, or the run ended).
    pub async fn renew_shard(&self, claim: &ShardClaim, ttl: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => sqlx::query(
            "UPDATE run_shards SET lease_until = $1 WHERE run_id = $2 AND shard = $3 AND attempts = $4 AND status = 'running'")
            .bind(now_secs() + ttl).bind(claim.run_id).bind(claim.shard).bind(claim.attempt)
            .execute(p).await?.rows_affected() == 1))
    }

    /// Marks a claimed shard done with what it scored (`tally`, JSON); false when the claim
    /// was lost. Returns the run's shards not done yet.
    pub async fn finish_shard(
        &self,
        claim: &ShardClaim,
        scored: i64,
        tally: &str,
    ) -> Result<Option<i64>> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // The run's row first, locked until the commit (PostgreSQL): shards finishing
            // at once take turns, so the last of them counts none left and finishes the
            // run (each could otherwise count the other as still running).
            sqlx::query("UPDATE scoring_runs SET shards = shards WHERE id = $1")
                .bind(claim.run_id).execute(&mut *tx).await?;
            let n = sqlx::query(
                "UPDATE run_shards SET status = 'done', finished_at = $1, scored = $2, tally = $3, lease_until = NULL
                 WHERE run_id = $4 AND shard = $5 AND attempts = $6 AND status = 'running'")
                .bind(now_secs()).bind(scored).bind(tally).bind(claim.run_id).bind(claim.shard).bind(claim.attempt)
                .execute(&mut *tx).await?.rows_affected();
            if n != 1 {
                return Ok(None);
            }
            let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM run_shards WHERE run_id = $1 AND status <> 'done'")
                .bind(claim.run_id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Some(left)
        }))
    }

    /// Gives a claimed shard back after `error`: queued again for another attempt, or
    /// failed, with its run, once it has had `max_attempts`. Returns the shard's status.
    pub async fn release_shard(
        &self,
        claim: &ShardClaim,
        error: &str,
        max_attempts: i32,
    ) -> Result<Option<String>> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // The run's row first, as `finish_shard` takes them: the same order, no deadlock.
            sqlx::query("UPDATE scoring_runs SET shards = shards WHERE id = $1")
                .bind(claim.run_id).execute(&mut *tx).await?;
            let status: Option<(String,)> = sqlx::query_as(
                "UPDATE run_shards SET status = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END,
                     lease_until = NULL, error = $2
                 WHERE run_id = $3 AND shard = $4 AND attempts = $5 AND status = 'running'
                 RETURNING status")
                .bind(max_attempts).bind(error).bind(claim.run_id).bind(claim.shard).bind(claim.attempt)
                .fetch_optional(&mut *tx).await?;
            if let Some((s,)) = &status
                && s == "failed"
            {
                sqlx::query("UPDATE scoring_runs SET failed_at = $1, error = $2 WHERE id = $3 AND finished_at IS NULL AND failed_at IS NULL")
                    .bind(now_secs())
                    .bind(format!(
                        "shard {} failed after {} attempt{}: {error}",
                        claim.shard,
                        claim.attempt,
                        if claim.attempt == 1 { "" } else { "s" }
                    ))
                    .bind(claim.run_id)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            status.map(|(s,)| s)
        }))
    }

    /// A run's shards, in order.
    pub async fn run_shards(&self, run_id: i64) -> Result<Vec<ShardRow>> {
        let sql =
            format!("SELECT {SHARD_COLUMNS} FROM run_shards WHERE run_id = $1 ORDER BY shard");
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(run_id).fetch_all(p).await?),
        )
    }

    /// The tallies of a run's finished shards (JSON, as [`Db::finish_shard`] stored them).
    pub async fn shard_tallies(&self, run_id: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT tally FROM run_shards WHERE run_id = $1 AND status = 'done' AND tally IS NOT NULL ORDER BY shard")
            .bind(run_id).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// The customers a `changed` run was split with (every shard's ids), in id order;
    /// `None` for a run that scores every active customer.
    pub async fn shard_ids(&self, run_id: i64) -> Result<Option<Vec<i64>>> {
        let rows: Vec<(Option<Vec<u8>>,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT ids FROM run_shards WHERE run_id = $1 ORDER BY shard")
            .bind(run_id).fetch_all(p).await?);
        if rows.is_empty() || rows.iter().any(|(b,)| b.is_none()) {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .flat_map(|(b,)| ids_from_bytes(b.as_deref().unwrap_or_default()))
                .collect(),
        ))
    }

    /// Shards of runs still open that want a worker, with their attempts: running ones
    /// whose claim ran out, and the queued ones of a run nobody has worked for `ttl`
    /// seconds (no live claim, no shard finished since, split before that): their offers
    /// went to daemons that died before claiming them. A run being worked keeps its queued
    /// shards for the daemons already on it.
    pub async fn shards_wanting_workers(&self, ttl: i64) -> Result<Vec<(i64, i32, i32)>> {
        let now = now_secs();
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT s.run_id, s.shard, s.attempts FROM run_shards s JOIN scoring_runs r ON r.id = s.run_id
             WHERE r.finished_at IS NULL AND r.failed_at IS NULL AND (
                 (s.status = 'running' AND s.lease_until < $2)
                 OR (s.status = 'queued' AND r.started_at < $1 AND NOT EXISTS (
                     SELECT 1 FROM run_shards o WHERE o.run_id = s.run_id
                       AND ((o.status = 'running' AND o.lease_until >= $2) OR o.finished_at >= $1))))
             ORDER BY s.run_id, s.shard LIMIT 100")
            .bind(now - ttl).bind(now).fetch_all(p).await?))
    }

    /// The newest open run some daemon is working on: a shard under a live claim, or one
    /// finished in the last 5 s (between a shard and the next claim).
    pub async fn run_being_worked(&self) -> Result<Option<i64>> {
        let now = now_secs();
        let row: Option<(i64,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT r.id FROM scoring_runs r
             WHERE r.finished_at IS NULL AND r.failed_at IS NULL AND r.shards IS NOT NULL
               AND EXISTS (SELECT 1 FROM run_shards s WHERE s.run_id = r.id
                   AND ((s.status = 'running' AND s.lease_until >= $1) OR s.finished_at >= $2))
             ORDER BY r.id DESC LIMIT 1")
            .bind(now).bind(now - 5).fetch_optional(p).await?);
        Ok(row.map(|(id,)| id))
    }

    /// The newest scoring run split into shards, why it failed if it did, and its shards:
    /// what `attune jobs` and the desk's jobs page show.
    pub async fn latest_split(&self) -> Result<Option<SplitRun>> {
        let Some(run) = self.latest_split_run().await? else {
            return Ok(None);
        };
        let (_, failed) = self.run_state(run.id).await?;
        let shards = self.run_shards(run.id).await?;
        Ok(Some(SplitRun {
            run,
            failed,
            shards,
        }))
    }

    /// The newest scoring run split into shards.
    pub async fn latest_split_run(&self) -> Result<Option<super::ScoringRun>> {
        let sql = format!(
            "SELECT {} FROM scoring_runs WHERE shards IS NOT NULL ORDER BY id DESC LIMIT 1",
            super::scores::RUN_COLUMNS
        );
        Ok(on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await?))
    }

    /// Shard counts of the newest split run by status, for `/metrics`: (run id, status,
    /// count).
    pub async fn latest_shard_counts(&self) -> Result<Vec<(i64, String, i64)>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT run_id, status, COUNT(*) FROM run_shards
             WHERE run_id = (SELECT MAX(id) FROM scoring_runs WHERE shards IS NOT NULL)
             GROUP BY run_id, status ORDER BY status")
            .fetch_all(p).await?))
    }

    /// The newest run a tick (`trigger`) started, unless it failed: a retried or
    /// taken-back scoring job carries on with it.
    pub async fn run_of_trigger(&self, trigger: &str) -> Result<Option<super::ScoringRun>> {
        let sql = format!(
            "SELECT {} FROM scoring_runs WHERE trigger = $1 AND failed_at IS NULL ORDER BY id DESC LIMIT 1",
            super::scores::RUN_COLUMNS
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(trigger).fetch_optional(p).await?),
        )
    }

    /// Whether run `run_id` has finished, and why it failed if it did.
    pub async fn run_state(&self, run_id: i64) -> Result<(bool, Option<String>)> {
        let row: Option<(Option<i64>, Option<i64>, Option<String>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT finished_at, failed_at, error FROM scoring_runs WHERE id = $1")
            .bind(run_id).fetch_optional(p).await?);
        Ok(match row {
            None => (false, Some(format!("scoring run {run_id} is gone"))),
            Some((finished, failed, error)) => (
                finished.is_some(),
                failed.map(|_| error.unwrap_or_else(|| "failed".into())),
            ),
        })
    }

    /// Closes run `run_id` unless it is closed already or failed: true for the one call
    /// that closed it.
    pub async fn finish_scoring_run_once(&self, run_id: i64, customers: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => sqlx::query(
            "UPDATE scoring_runs SET finished_at = $1, customers = $2 WHERE id = $3 AND finished_at IS NULL AND failed_at IS NULL")
            .bind(now_secs()).bind(customers).bind(run_id)
            .execute(p).await?.rows_affected() == 1))
    }

    /// Marks the runs before `run_id` still open as failed: a newer run replaces them, and
    /// their shards are no longer claimed.
    pub async fn supersede_runs_before(&self, run_id: i64) -> Result<u64> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => sqlx::query(
            "UPDATE scoring_runs SET failed_at = $1, error = $2 WHERE id < $3 AND finished_at IS NULL AND failed_at IS NULL")
            .bind(now_secs()).bind(format!("superseded by scoring run {run_id} before it finished"))
            .bind(run_id).execute(p).await?.rows_affected()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_into_ranges_that_cover_the_whole_id_space() {
        let ids: Vec<i64> = (1..=25).map(|i| i * 3).collect();
        let r = ranges_of_ids(&ids, 10);
        // 10, 10 and 5: the last is half a shard and stays.
        assert_eq!(
            r.iter().map(|r| r.planned).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert_eq!(r[0].after_id, i64::MIN);
        assert_eq!(r[0].upto_id, 30);
        assert_eq!(r[1].after_id, 30);
        assert_eq!(r.last().unwrap().upto_id, i64::MAX);
        let all: Vec<i64> = r.iter().flat_map(|r| r.ids.clone().unwrap()).collect();
        assert_eq!(all, ids);
        // 10, 10 and 4: the last joins the one before.
        let r = ranges_of_ids(&ids[..24], 10);
        assert_eq!(
            r.iter().map(|r| r.planned).collect::<Vec<_>>(),
            vec![10, 14]
        );
        assert_eq!(r[1].ids.as_ref().unwrap().len(), 14);
        // Nothing changed: one empty shard, so the run still has one to finish.
        let r = ranges_of_ids(&[], 10);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].after_id, r[0].upto_id), (i64::MIN, i64::MAX));
    }

    #[test]
    fn ids_round_trip_through_bytes() {
        let ids = vec![i64::MIN, -1, 0, 7, i64::MAX];
        assert_eq!(ids_from_bytes(&ids_to_bytes(&ids)), ids);
    }
}
