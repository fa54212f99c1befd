//! The model registry: every trained model by version, which one is the champion, and the
//! history of who made which version champion and why.
//!
//! Every change of champion (a person's promotion, a rollback, the retrain job's decision,
//! `save_model(.., champion = true)`) writes a `model_promotions` row and an audit entry in
//! the same transaction as the change, so the history always ends at the current champion
//! and a rollback can follow it.

use sqlx::types::Json;

use super::{Db, Result, StoreError, now_secs, on_pool};

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StoredModel {
    pub version: String,
    pub created_at: i64,
    pub source: String,
    pub artifact: Json<serde_json::Value>,
    pub is_champion: bool,
    /// When it last became champion.
    pub promoted_at: Option<i64>,
    /// The days the training data covered, e.g. `2025-12-31..2026-10-31`.
    pub data_window: Option<String>,
    /// A hash of the feature definitions the model was trained with.
    pub feature_spec_hash: Option<String>,
}

/// One change of champion.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct PromotionRow {
    pub id: i64,
    /// The version that became champion.
    pub version: String,
    /// The champion it replaced, if there was one.
    pub previous_version: Option<String>,
    pub at: i64,
    pub actor: String,
    pub reason: String,
    pub detail: Json<serde_json::Value>,
}

/// The columns of [`StoredModel`], as a literal for `concat!`.
macro_rules! select_model {
    () => {
        "SELECT version, created_at, source, artifact, is_champion, promoted_at, data_window, feature_spec_hash FROM models"
    };
}

/// Taken first in every transaction that changes the champion: on PostgreSQL it locks the
/// registry's rows until commit, on SQLite it takes the write lock, so two promotions
/// never both read the same "previous champion".
const LOCK_REGISTRY: &str = "UPDATE models SET is_champion = is_champion";

const CHAMPION: &str =
    "SELECT version FROM models WHERE is_champion ORDER BY promoted_at DESC NULLS LAST LIMIT 1";

/// Makes `$version` (which must exist) the only champion inside the open transaction
/// `$tx`, with its promotion row and audit entry, and evaluates to the previous champion.
/// Promoting the current champion changes and records nothing.
macro_rules! promote_in_tx {
    ($tx:expr, $version:expr, $actor:expr, $action:expr, $reason:expr, $detail:expr, $now:expr) => {{
        let (version, actor, reason, detail): (&str, &str, &str, &serde_json::Value) =
            ($version, $actor, $reason, $detail);
        let previous: Option<(String,)> =
            sqlx::query_as(CHAMPION).fetch_optional(&mut *$tx).await?;
        let previous = previous.map(|(v,)| v);
        if previous.as_deref() != Some(version) {
            sqlx::query(
                "UPDATE models SET is_champion = (version = $1),
                 promoted_at = CASE WHEN version = $1 THEN $2 ELSE promoted_at END",
            )
            .bind(version)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            sqlx::query(
                "INSERT INTO model_promotions (version, previous_version, at, actor, reason, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(version)
            .bind(previous.as_deref())
            .bind($now)
            .bind(actor)
            .bind(reason)
            .bind(Json(detail))
            .execute(&mut *$tx)
            .await?;
            let audit = serde_json::json!({
                "from": previous, "to": version, "reason": reason, "detail": detail,
            });
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind($now)
            .bind(actor)
            .bind($action)
            .bind(format!("model:{version}"))
            .bind(Json(&audit))
            .execute(&mut *$tx)
            .await?;
        }
        previous
    }};
}

impl Db {
    /// Registers a model (again, if the version exists: same version, same artifact) and,
    /// if asked, makes it the only champion, all in one transaction. A change of champion
    /// is recorded as a promotion by actor `train`.
    pub async fn save_model(
        &self,
        version: &str,
        source: &str,
        artifact: &serde_json::Value,
        champion: bool,
    ) -> Result<()> {
        let now = now_secs();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            if champion {
                sqlx::query(LOCK_REGISTRY).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO models (version, created_at, source, artifact, is_champion) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (version) DO UPDATE SET artifact = excluded.artifact, source = excluded.source",
            )
            .bind(version)
            .bind(now)
            .bind(source)
            .bind(Json(artifact))
            .bind(false)
            .execute(&mut *tx)
            .await?;
            if champion {
                promote_in_tx!(
                    tx,
                    version,
                    "train",
                    "model.promoted",
                    "registered as champion when trained",
                    &serde_json::json!({ "source": source }),
                    now
                );
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Registers a model version without making it champion. Registering a version again
    /// with the same artifact is a no-op (it may fill in a data window or feature spec hash
    /// not given before); a different artifact, data window or hash under an existing
    /// version is refused: a version never changes.
    pub async fn save_model_version(
        &self,
        version: &str,
        source: &str,
        artifact: &serde_json::Value,
        data_window: Option<&str>,
        feature_spec_hash: Option<&str>,
    ) -> Result<()> {
        let now = now_secs();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO models (version, created_at, source, artifact, is_champion, data_window, feature_spec_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (version) DO NOTHING",
            )
            .bind(version)
            .bind(now)
            .bind(source)
            .bind(Json(artifact))
            .bind(false)
            .bind(data_window)
            .bind(feature_spec_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let (stored, stored_window, stored_hash): (Json<serde_json::Value>, Option<String>, Option<String>) =
                    sqlx::query_as("SELECT artifact, data_window, feature_spec_hash FROM models WHERE version = $1")
                        .bind(version)
                        .fetch_one(&mut *tx)
                        .await?;
                if stored.0 != *artifact {
                    return Err(StoreError::Data(format!(
                        "model version {version:?} is already registered with a different artifact; \
                         a version never changes, so register the new model under a new version"
                    )));
                }
                for (what, given, stored) in [
                    ("data window", data_window, stored_window.as_deref()),
                    ("feature spec hash", feature_spec_hash, stored_hash.as_deref()),
                ] {
                    if let (Some(g), Some(s)) = (given, stored)
                        && g != s {
                            return Err(StoreError::Data(format!(
                                "model version {version:?} is already registered with {what} {s:?}, not {g:?}"
                            )));
                        }
                }
                sqlx::query(
                    "UPDATE models SET data_window = COALESCE(data_window, $2),
                     feature_spec_hash = COALESCE(feature_spec_hash, $3) WHERE version = $1",
                )
                .bind(version)
                .bind(data_window)
                .bind(feature_spec_hash)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn model(&self, version: &str) -> Result<Option<StoredModel>> {
        let sql = concat!(select_model!(), " WHERE version = $1");
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(version).fetch_optional(p).await?))
    }

    pub async fn champion_model(&self) -> Result<Option<StoredModel>> {
        let sql = concat!(
            select_model!(),
            " WHERE is_champion ORDER BY promoted_at DESC NULLS LAST LIMIT 1"
        );
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_optional(p).await?))
    }

    pub async fn models(&self) -> Result<Vec<StoredModel>> {
        let sql = concat!(select_model!(), " ORDER BY created_at DESC, version");
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Makes a registered version the only champion, with a promotion row and an audit
    /// entry (`model.promoted`, subject `model:VERSION`), in one transaction. Returns the
    /// champion it replaced. Promoting the current champion changes and records nothing
    /// and returns that version.
    pub async fn promote_model(
        &self,
        version: &str,
        actor: &str,
        reason: &str,
        detail: &serde_json::Value,
    ) -> Result<Option<String>> {
        let now = now_secs();
        let previous = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(LOCK_REGISTRY).execute(&mut *tx).await?;
            let exists: Option<(String,)> = sqlx::query_as("SELECT version FROM models WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::Data(format!(
                    "no model version {version:?} is registered; register it before promoting it"
                )));
            }
            let previous = promote_in_tx!(tx, version, actor, "model.promoted", reason, detail, now);
            tx.commit().await?;
            previous
        });
        Ok(previous)
    }

    /// Restores the champion the current one replaced (the `previous_version` of the latest
    /// promotion), recorded as a new promotion with an audit entry (`model.rolled_back`);
    /// so rolling back twice returns to where it started. Returns (restored, replaced).
    pub async fn rollback_model(&self, actor: &str, reason: &str) -> Result<(String, String)> {
        let now = now_secs();
        let pair = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(LOCK_REGISTRY).execute(&mut *tx).await?;
            let current: Option<(String,)> = sqlx::query_as(CHAMPION).fetch_optional(&mut *tx).await?;
            let Some((current,)) = current else {
                return Err(StoreError::Data("there is no champion model to roll back".into()));
            };
            let latest: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT version, previous_version FROM model_promotions ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let restore = match latest {
                Some((v, Some(previous))) if v == current => previous,
                Some((v, _)) if v != current => {
                    return Err(StoreError::Data(format!(
                        "the promotion history ends at model {v:?} but the champion is {current:?}; \
                         promote the version you want instead of rolling back"
                    )));
                }
                _ => {
                    return Err(StoreError::Data(format!(
                        "model {current:?} has no earlier champion to roll back to"
                    )));
                }
            };
            let detail = serde_json::json!({ "rollback": true });
            promote_in_tx!(tx, &restore, actor, "model.rolled_back", reason, &detail, now);
            tx.commit().await?;
            (restore, current)
        });
        Ok(pair)
    }

    /// Changes of champion, newest first.
    pub async fn promotions(&self, limit: i64) -> Result<Vec<PromotionRow>> {
        let sql =
            "SELECT id, version, previous_version, at, actor, reason, detail FROM model_promotions
                   ORDER BY id DESC LIMIT $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(limit).fetch_all(p).await?))
    }
}
