//! Churn scores with history: every scoring run is kept, with each customer's top drivers.

use chrono::NaiveDate;
use sqlx::types::Json;

use super::{BATCH_ROWS, Db, Result, now_secs, on_pool};

#[derive(Debug, Clone, serde::Serialize)]
pub struct NewScore {
    pub customer_id: i64,
    pub probability: f64,
    /// The top drivers as JSON text (an array of [`crate::model::Driver`]), serialized
    /// once where the score is computed.
    pub drivers: String,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ScoreRow {
    pub customer_id: i64,
    pub external_id: String,
    pub monthly_charge: f64,
    pub probability: f64,
    pub drivers: Json<serde_json::Value>,
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
}

impl Db {
    /// Opens a run; `scope` is `full` or `changed`. Returns its id and start time.
    /// `holder` holds the scoring lease while the run goes on: a run left unfinished by a
    /// holder that lost it was interrupted ([`Db::sweep_jobs`]).
    pub async fn start_scoring_run(
        &self,
        model_version: &str,
        as_of: NaiveDate,
        trigger: &str,
        scope: &str,
        holder: &str,
    ) -> Result<(i64, i64)> {
        let _turn = self.write_turn().await;
        let sql = "INSERT INTO scoring_runs (model_version, as_of, trigger, started_at, scope, holder) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, started_at";
        Ok(on_pool!(self, p => sqlx::query_as(sql)
            .bind(model_version).bind(as_of).bind(trigger).bind(now_secs()).bind(scope).bind(holder)
            .fetch_one(p).await?))
    }

    /// Writes a page of a run's scores in one transaction. A run counts only once
    /// [`Db::finish_scoring_run`] closes it: readers take finished runs.
    pub async fn insert_scores(
        &self,
        run_id: i64,
        model_version: &str,
        scores: Vec<NewScore>,
    ) -> Result<()> {
        let _turn = self.bulk_turn().await;
        let now = now_secs();
        if let Db::Sqlite(p, ..) = self {
            // One prepared statement stepped per row through SQLite's own API (`raw`).
            let model_version = model_version.to_owned();
            return super::raw::with_connection(p, move |raw| {
                raw.execute("BEGIN IMMEDIATE")?;
                let mut stmt = raw.prepare(
                    "INSERT INTO scores (run_id, customer_id, model_version, scored_at, probability, drivers) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                stmt.bind_i64(1, run_id)?;
                stmt.bind_text(3, &model_version)?;
                stmt.bind_i64(4, now)?;
                for s in &scores {
                    stmt.bind_i64(2, s.customer_id)?;
                    stmt.bind_f64(5, s.probability)?;
                    stmt.bind_text(6, &s.drivers)?;
                    stmt.run()?;
                }
                drop(stmt);
                raw.execute("COMMIT")
            })
            .await;
        }
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in scores.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO scores (run_id, customer_id, model_version, scored_at, probability, drivers) ",
                );
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(run_id)
                        .push_bind(s.customer_id)
                        .push_bind(model_version)
                        .push_bind(now)
                        .push_bind(s.probability)
                        .push_bind(s.drivers.as_str())
                        .push_unseparated("::jsonb");
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
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
        let sql = "SELECT id, model_version, as_of, trigger, started_at, finished_at, customers, scope FROM scoring_runs WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(run_id).fetch_optional(p).await?))
    }

    /// The newest finished run.
    pub async fn latest_scoring_run(&self) -> Result<Option<ScoringRun>> {
        let sql = "SELECT id, model_version, as_of, trigger, started_at, finished_at, customers, scope FROM scoring_runs
                   WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_optional(p).await?))
    }

    /// The newest finished run that scored everyone (`full`).
    pub async fn latest_full_scoring_run(&self) -> Result<Option<ScoringRun>> {
        let sql = "SELECT id, model_version, as_of, trigger, started_at, finished_at, customers, scope FROM scoring_runs
                   WHERE finished_at IS NOT NULL AND scope = 'full' ORDER BY id DESC LIMIT 1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_optional(p).await?))
    }

    /// Every customer's current score: the newest from the latest finished full run or any
    /// finished run after it, riskiest first.
    pub async fn current_scores(&self) -> Result<Vec<ScoreRow>> {
        let sql = "SELECT s.customer_id, c.external_id, c.monthly_charge, s.probability, s.drivers, s.run_id
                   FROM scores s JOIN customers c ON c.id = s.customer_id
                   WHERE s.run_id >= (SELECT COALESCE(MAX(id), 0) FROM scoring_runs WHERE finished_at IS NOT NULL AND scope = 'full')
                     AND s.run_id IN (SELECT id FROM scoring_runs WHERE finished_at IS NOT NULL)
                   ORDER BY s.customer_id, s.run_id DESC";
        let rows: Vec<(i64, String, f64, f64, Json<serde_json::Value>, i64)> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        let mut out: Vec<ScoreRow> = Vec::with_capacity(rows.len());
        for (customer_id, external_id, monthly_charge, probability, drivers, _) in rows {
            if out.last().is_some_and(|l| l.customer_id == customer_id) {
                continue;
            }
            out.push(ScoreRow {
                customer_id,
                external_id,
                monthly_charge,
                probability,
                drivers,
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
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(run_id).fetch_all(p).await?))
    }
}
