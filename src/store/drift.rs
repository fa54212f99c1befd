//! Drift of each scoring run: every feature's population stability index against the
//! champion's training data, and the shares of the run's scores in ten bins.

use std::collections::HashSet;

use sqlx::types::Json;

use super::{BATCH_ROWS, Db, Result, StoreError, on_pool};
use crate::model::drift::DriftRow;

#[derive(sqlx::FromRow)]
struct DriftRecord {
    feature: String,
    psi: f64,
    expected: Json<Vec<f64>>,
    actual: Json<Vec<f64>>,
}

fn all_finite(xs: &[f64]) -> bool {
    xs.iter().all(|x| x.is_finite())
}

impl Db {
    /// Writes a run's drift (one row per feature) and score distribution in one
    /// transaction, replacing any written for the run before.
    pub async fn save_drift(
        &self,
        run_id: i64,
        rows: &[DriftRow],
        score_shares: &[f64],
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut seen = HashSet::new();
        for r in rows {
            if !seen.insert(r.feature.as_str()) {
                return Err(StoreError::Data(format!(
                    "drift of run {run_id} names feature {:?} twice",
                    r.feature
                )));
            }
            if !(r.psi.is_finite() && all_finite(&r.expected) && all_finite(&r.actual)) {
                return Err(StoreError::Data(format!(
                    "drift of feature {:?} in run {run_id} is not a finite number",
                    r.feature
                )));
            }
        }
        if !all_finite(score_shares) {
            return Err(StoreError::Data(format!(
                "the score distribution of run {run_id} holds a value that is not a finite number"
            )));
        }
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM feature_drift WHERE run_id = $1")
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            for chunk in rows.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO feature_drift (run_id, feature, psi, expected, actual) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(run_id)
                        .push_bind(r.feature.as_str())
                        .push_bind(r.psi)
                        .push_bind(Json(&r.expected))
                        .push_bind(Json(&r.actual));
                });
                q.build().execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO score_distributions (run_id, shares) VALUES ($1, $2)
                 ON CONFLICT (run_id) DO UPDATE SET shares = excluded.shares",
            )
            .bind(run_id)
            .bind(Json(score_shares))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A run's drift, largest PSI first; empty if none was written.
    pub async fn drift_for_run(&self, run_id: i64) -> Result<Vec<DriftRow>> {
        let sql = "SELECT feature, psi, expected, actual FROM feature_drift WHERE run_id = $1
                   ORDER BY psi DESC, feature";
        let rows: Vec<DriftRecord> =
            on_pool!(self, p => sqlx::query_as(sql).bind(run_id).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|r| DriftRow {
                feature: r.feature,
                psi: r.psi,
                actual: r.actual.0,
                expected: r.expected.0,
            })
            .collect())
    }

    /// The shares of a run's scores in ten equal-width bins, if they were written.
    pub async fn score_distribution(&self, run_id: i64) -> Result<Option<Vec<f64>>> {
        let sql = "SELECT shares FROM score_distributions WHERE run_id = $1";
        let row: Option<(Json<Vec<f64>>,)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(run_id).fetch_optional(p).await?);
        Ok(row.map(|(s,)| s.0))
    }
}
