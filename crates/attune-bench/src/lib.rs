//! `attune-bench`: the measurements BENCHMARKS.md quotes, the seeders they need and an
//! HTTP load generator. A separate package from the `attune` daemon, so that nothing here
//! (nor a dependency only this uses, such as the HTTP client) ships in the product.
//!
//! The library holds each measurement; `main.rs` is the command line.

pub mod fit;
pub mod ingest;
pub mod load;
pub mod planning;
pub mod playbook;
pub mod uplift;

use anyhow::Context as _;
use attune::config::Config;
use attune::store::{DatabaseUrl, Db};

/// The configured database, migrated.
pub async fn open(config: &Config) -> anyhow::Result<Db> {
    let url = DatabaseUrl::parse(&config.database_url)?;
    let db = Db::connect(&url).await?;
    db.migrate()
        .await
        .with_context(|| format!("migrating {}", url.redacted()))?;
    Ok(db)
}
