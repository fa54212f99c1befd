//! Churn scores with history: every scoring run is kept, with each customer's top drivers
//! as codes and values ([`crate::model::explain`]) read back through the run's key, until
//! retention ([`Db::prune_scores`]) leaves only the run's summary.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::{Db, Result, StoreError, now_secs, on_pool};
use crate::model::Driver;
use crate::model::explain::{self, DriverKey, KeyReader};

#[derive(Debug, Clone, serde::Serialize)]
pub struct NewScore {
    pub customer_id: i64,
    pub probability: f64,
    /// The top drivers as codes and values ([`explain::encode`]), made where the score is
    /// computed.
    #[serde(skip)]
    pub drivers: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    pub customer_id: i64,
    pub external_id: String,
    pub monthly_charge: f64,
    pub probability: f64,
    pub drivers: Vec<Driver>,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ScoringRun {
    pub id: i64,
    pub model_version: String,
    pub as_of: NaiveDate,
    pub trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub customers: i64,
    /// `full` (everyone) or `changed` (customers whose activity changed since their score).
    pub scope: String,
    /// When retention removed the run's scores; its counts and drift stay.
    pub pruned_at: Option<i64>,
}

/// The columns of [`ScoringRun`].
pub(crate) const RUN_COLUMNS: &str =
    "id, model_version, as_of, trigger, started_at, finished_at, customers, scope, pruned_at";

/// A score's drivers as stored: to be read with the keys of run `run_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDrivers {
    pub run_id: i64,
    pub bytes: Vec<u8>,
}

/// The keys of some scoring runs, to read their scores' drivers ([`Db::driver_keys`]).
#[derive(Debug, Default)]
pub struct DriverKeys(HashMap<i64, Option<KeyReader>>);

impl DriverKeys {
    /// The drivers stored as `bytes` with a score of run `run_id`.
    pub fn drivers(&self, run_id: i64, bytes: &[u8]) -> Result<Vec<Driver>> {
        let key = self.0.get(&run_id).and_then(Option::as_ref);
        explain::decode(key, bytes)
            .map_err(|e| StoreError::Data(format!("a score of run {run_id}: {e}")))
    }

    fn has(&self, run_id: i64) -> bool {
        self.0.contains_key(&run_id)
    }
}

/// A shard's claim, checked and extended by the transaction that writes its scores.
#[derive(Debug, Clone, Copy)]
struct Fence {
    shard: i32,
    attempt: i32,
    until: i64,
}

/// The fence of a shard's write: extends the claim if it is still this attempt's.
const FENCE: &str = "UPDATE run_shards SET lease_until = $1 WHERE run_id = $2 AND shard = $3 AND attempts = $4 AND status = 'running'";

/// The columns a score is written with, in the order both backends bind them.
const SCORE_COLUMNS: &str = "run_id, customer_id, probability, drivers";

impl Db {
    /// Opens a run; `scope` is `full` or `changed`; `drivers_key` is the JSON of the
    /// [`DriverKey`] its scores' drivers are read with (none when every score holds its
    /// drivers as JSON, as fixtures may write them). Returns its id and start time.
    /// `holder` holds the scoring lease while the run goes on: a run left unfinished by a
    /// holder that lost it was interrupted ([`Db::sweep_jobs`]).
    pub async fn start_scoring_run(
        &self,
        model_version: &str,
        as_of: NaiveDate,
        trigger: &str,
        scope: &str,
        holder: &str,
        drivers_key: Option<&str>,
    ) -> Result<(i64, i64)> {
        let _turn = self.write_turn().await;
        let sql = "INSERT INTO scoring_runs (model_version, as_of, trigger, started_at, scope, holder, drivers_key) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, started_at";
        Ok(on_pool!(self, p => sqlx::query_as(sql)
            .bind(model_version).bind(as_of).bind(trigger).bind(now_secs()).bind(scope).bind(holder).bind(drivers_key)
            .fetch_one(p).await?))
    }

    /// Writes a page of a run's scores in one transaction. A run counts only once
    /// [`Db::finish_scoring_run`] closes it: readers take finished runs.
    pub async fn insert_scores(&self, run_id: i64, scores: Vec<NewScore>) -> Result<()> {
        self.write_scores(run_id, None, scores).await.map(|_| ())
    }

    /// [`Db::insert_scores`] for shard `claim`, fenced by its attempt: the same transaction
    /// extends the claim to `ttl` seconds from now, and writes nothing (false) when the
    /// claim is no longer this attempt's.
    pub async fn insert_shard_scores(
        &self,
        claim: &super::ShardClaim,
        ttl: i64,
        scores: Vec<NewScore>,
    ) -> Result<bool> {
        let fence = Fence {
            shard: claim.shard,
            attempt: claim.attempt,
            until: now_secs() + ttl,
        };
        self.write_scores(claim.run_id, Some(fence), scores).await
    }

    async fn write_scores(
        &self,
        run_id: i64,
        fence: Option<Fence>,
        scores: Vec<NewScore>,
    ) -> Result<bool> {
        let _turn = self.bulk_turn().await;
        if let Db::Sqlite(p, ..) = self {
            // One prepared statement stepped per row through SQLite's own API (`raw`).
            return super::raw::with_connection(p, move |raw| {
                raw.execute("BEGIN IMMEDIATE")?;
                if let Some(f) = fence {
                    let mut stmt = raw.prepare(FENCE)?;
                    stmt.bind_i64(1, f.until)?;
                    stmt.bind_i64(2, run_id)?;
                    stmt.bind_i64(3, f.shard.into())?;
                    stmt.bind_i64(4, f.attempt.into())?;
                    stmt.run()?;
                    drop(stmt);
                    if raw.changes() != 1 {
                        raw.execute("ROLLBACK")?;
                        return Ok(false);
                    }
                }
                let mut stmt = raw.prepare(&format!(
                    "INSERT INTO scores ({SCORE_COLUMNS}) VALUES (?1, ?2, ?3, ?4)"
                ))?;
                stmt.bind_i64(1, run_id)?;
                for s in &scores {
                    stmt.bind_i64(2, s.customer_id)?;
                    stmt.bind_f64(3, s.probability)?;
                    stmt.bind_blob(4, &s.drivers)?;
                    stmt.run()?;
                }
                drop(stmt);
                raw.execute("COMMIT")?;
                Ok(true)
            })
            .await;
        }
        if let Db::Postgres(p) = self {
            // Binary `COPY`, as ingest writes new days: 14.8 s for a million scores as
            // one `INSERT ... UNNEST` per page of 25,000.
            let mut tx = p.begin().await?;
            if let Some(f) = fence {
                // Locks the shard's row until the commit: a claim taking the shard back
                // waits for this page and then sees the claim renewed.
                let held = sqlx::query(FENCE)
                    .bind(f.until)
                    .bind(run_id)
                    .bind(f.shard)
                    .bind(f.attempt)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if held != 1 {
                    return Ok(false);
                }
            }
            super::events::postgres::copy_in(
                &mut tx,
                &format!("COPY scores ({SCORE_COLUMNS}) FROM STDIN (FORMAT binary)"),
                &scores,
                |row, s| {
                    row.row(4);
                    row.i64(run_id);
                    row.i64(s.customer_id);
                    row.f64(Some(s.probability));
                    row.bytes(&s.drivers);
                },
            )
            .await?;
            tx.commit().await?;
        }
        Ok(true)
    }

    /// Closes a run: from now on it is the latest run readers see.
    pub async fn finish_scoring_run(&self, run_id: i64, customers: usize) -> Result<()> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query("UPDATE scoring_runs SET finished_at = $1, customers = $2 WHERE id = $3")
                .bind(now_secs())
                .bind(customers as i64)
                .bind(run_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    pub async fn scoring_run(&self, run_id: i64) -> Result<Option<ScoringRun>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM scoring_runs WHERE id = $1");
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(run_id).fetch_optional(p).await?),
        )
    }

    /// The newest finished run.
    pub async fn latest_scoring_run(&self) -> Result<Option<ScoringRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM scoring_runs WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_optional(p).await?),
        )
    }

    /// The newest finished run that scored everyone (`full`).
    pub async fn latest_full_scoring_run(&self) -> Result<Option<ScoringRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM scoring_runs
             WHERE finished_at IS NOT NULL AND scope = 'full' ORDER BY id DESC LIMIT 1"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_optional(p).await?),
        )
    }

    /// The drivers keys of runs `runs`, to read their scores with
    /// ([`DriverKeys::drivers`]). Runs written before keys have none (their scores carry
    /// their drivers in words).
    pub async fn driver_keys(&self, runs: impl IntoIterator<Item = i64>) -> Result<DriverKeys> {
        let mut keys = DriverKeys::default();
        self.add_driver_keys(&mut keys, runs).await?;
        Ok(keys)
    }

    /// Adds the keys of those of `runs` not in `keys` yet.
    pub async fn add_driver_keys(
        &self,
        keys: &mut DriverKeys,
        runs: impl IntoIterator<Item = i64>,
    ) -> Result<()> {
        let mut missing: Vec<i64> = runs.into_iter().filter(|r| !keys.has(*r)).collect();
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(500) {
            let rows: Vec<(i64, Option<String>)> = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new("SELECT id, drivers_key FROM scoring_runs WHERE id IN ");
                super::push_ids(&mut q, chunk);
                q.build_query_as().fetch_all(p).await?
            });
            for (id, text) in rows {
                let reader = match text {
                    None => None,
                    Some(text) => Some(
                        serde_json::from_str::<DriverKey>(&text)
                            .map_err(|e| e.to_string())
                            .and_then(|k| k.reader().map_err(|e| e.to_string()))
                            .map_err(|e| {
                                StoreError::Data(format!("scoring run {id}'s drivers key: {e}"))
                            })?,
                    ),
                };
                keys.0.insert(id, reader);
            }
        }
        Ok(())
    }

    /// Every customer's current score: the newest from the latest finished full run or any
    /// finished run after it, riskiest first.
    pub async fn current_scores(&self) -> Result<Vec<ScoreRow>> {
        let sql = "SELECT s.customer_id, c.external_id, c.monthly_charge, s.probability, s.drivers, s.run_id
                   FROM scores s JOIN customers c ON c.id = s.customer_id
                   WHERE s.run_id >= (SELECT COALESCE(MAX(id), 0) FROM scoring_runs WHERE finished_at IS NOT NULL AND scope = 'full')
                     AND s.run_id IN (SELECT id FROM scoring_runs WHERE finished_at IS NOT NULL)
                   ORDER BY s.customer_id, s.run_id DESC";
        let rows: Vec<(i64, String, f64, f64, Vec<u8>, i64)> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        let keys = self.driver_keys(rows.iter().map(|r| r.5)).await?;
        let mut out: Vec<ScoreRow> = Vec::with_capacity(rows.len());
        for (customer_id, external_id, monthly_charge, probability, drivers, run_id) in rows {
            if out.last().is_some_and(|l| l.customer_id == customer_id) {
                continue;
            }
            out.push(ScoreRow {
                customer_id,
                external_id,
                monthly_charge,
                probability,
                drivers: keys.drivers(run_id, &drivers)?,
            });
        }
        out.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then(a.customer_id.cmp(&b.customer_id))
        });
        Ok(out)
    }

    /// A run's scores, riskiest first.
    pub async fn scores_for_run(&self, run_id: i64) -> Result<Vec<ScoreRow>> {
        let sql = "SELECT s.customer_id, c.external_id, c.monthly_charge, s.probability, s.drivers
                   FROM scores s JOIN customers c ON c.id = s.customer_id
                   WHERE s.run_id = $1 ORDER BY s.probability DESC, s.customer_id";
        let rows: Vec<(i64, String, f64, f64, Vec<u8>)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(run_id).fetch_all(p).await?);
        let keys = self.driver_keys([run_id]).await?;
        rows.into_iter()
            .map(
                |(customer_id, external_id, monthly_charge, probability, drivers)| {
                    Ok(ScoreRow {
                        customer_id,
                        external_id,
                        monthly_charge,
                        probability,
                        drivers: keys.drivers(run_id, &drivers)?,
                    })
                },
            )
            .collect()
    }

    /// Retention: removes the scores of finished runs older than the `keep_full_runs`
    /// newest finished full runs (at least one is always kept, with every run after it,
    /// which current scores are read from), `batch` rows per transaction so other writers
    /// get their turns. The runs themselves, their counts and their drift stay, marked
    /// pruned. Returns the runs pruned and the scores removed.
    pub async fn prune_scores(&self, keep_full_runs: u32, batch: i64) -> Result<(u64, u64)> {
        let keep = i64::from(keep_full_runs.max(1));
        let sql = "SELECT id FROM scoring_runs WHERE finished_at IS NOT NULL AND scope = 'full'
                   ORDER BY id DESC LIMIT 1 OFFSET $1";
        let oldest_kept: Option<(i64,)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(keep - 1).fetch_optional(p).await?);
        let Some((oldest_kept,)) = oldest_kept else {
            return Ok((0, 0));
        };
        // One scoring run at a time (a lease): a run older than a finished one has ended,
        // finished, failed or left behind by a process that died.
        let sql = "SELECT id FROM scoring_runs WHERE id < $1 AND pruned_at IS NULL ORDER BY id";
        let runs: Vec<(i64,)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(oldest_kept).fetch_all(p).await?);
        let (mut pruned, mut removed) = (0, 0);
        for (run,) in runs {
            loop {
                let _turn = self.write_turn().await;
                // A range of the key, one batch at a time: the next batch starts where the
                // last one ended, so nothing is scanned twice.
                let sql = "DELETE FROM scores WHERE run_id = $1 AND customer_id <= COALESCE(
                             (SELECT customer_id FROM scores WHERE run_id = $1 ORDER BY customer_id LIMIT 1 OFFSET $2),
                             (SELECT MAX(customer_id) FROM scores WHERE run_id = $1))";
                let n = on_pool!(self, p => sqlx::query(sql).bind(run).bind(batch.max(1) - 1).execute(p).await?.rows_affected());
                removed += n;
                if n == 0 {
                    break;
                }
            }
            let _turn = self.write_turn().await;
            on_pool!(self, p => {
                sqlx::query("UPDATE scoring_runs SET pruned_at = $1 WHERE id = $2")
                    .bind(now_secs())
                    .bind(run)
                    .execute(p)
                    .await?;
            });
            pruned += 1;
        }
        Ok((pruned, removed))
    }
}
