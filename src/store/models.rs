//! The model registry: every trained model by version, and which one is the champion.

use sqlx::types::Json;

use super::{Db, Result, now_secs, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredModel {
    pub version: String,
    pub created_at: i64,
    pub source: String,
    pub artifact: Json<serde_json::Value>,
    pub is_champion: bool,
}

impl Db {
    /// Registers a model (again, if the version exists: same version, same artifact) and,
    /// if asked, makes it the only champion, all in one transaction.
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
                sqlx::query("UPDATE models SET is_champion = (version = $1), promoted_at = CASE WHEN version = $1 THEN $2 ELSE promoted_at END")
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn champion_model(&self) -> Result<Option<StoredModel>> {
        let sql = "SELECT version, created_at, source, artifact, is_champion FROM models WHERE is_champion ORDER BY promoted_at DESC LIMIT 1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_optional(p).await?))
    }

    pub async fn models(&self) -> Result<Vec<StoredModel>> {
        let sql = "SELECT version, created_at, source, artifact, is_champion FROM models ORDER BY created_at DESC, version";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }
}
