//! `attune-bench ingest` and `attune-bench features`: the activity benchmarks of
//! BENCHMARKS.md. Ingest is measured end to end from files (parse, map, store, rollups)
//! beside the raw insert ceiling of the same database in the same run (the same rows
//! inserted with batched multi-row INSERT on SQLite or COPY on PostgreSQL, without
//! rollups), so the ratio between the two is what the pipeline costs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde_json::json;

use attune::config::Config;
use attune::domain::ActivityEvent;
use attune::features::{Activity, compute, day_number};
use attune::ingest::{self, Format};
use attune::jobs::{self, JobContext};
use attune::store::{DatabaseUrl, Db};

/// A database made for one measurement and removed after it.
struct Scratch {
    db: Db,
    drop: Option<(String, String)>,
    file: Option<PathBuf>,
}

async fn scratch(backend: &str, pg_url: &str, work: &Path, tag: &str) -> anyhow::Result<Scratch> {
    match backend {
        "sqlite" => {
            std::fs::create_dir_all(work)?;
            let file = work.join(format!("attune-bench-{tag}-{}.db", std::process::id()));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            let db = Db::connect(&DatabaseUrl::Sqlite(file.clone())).await?;
            db.migrate().await?;
            Ok(Scratch {
                db,
                drop: None,
                file: Some(file),
            })
        }
        "postgres" => {
            let name = format!("attune_bench_{tag}_{}", std::process::id());
            let admin = sqlx::PgPool::connect(pg_url)
                .await
                .with_context(|| format!("connecting to {pg_url}"))?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&admin)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await?;
            admin.close().await;
            let (base, _) = pg_url
                .rsplit_once('/')
                .context("a PostgreSQL URL ends in /DBNAME")?;
            let db = Db::connect(&DatabaseUrl::Postgres(format!("{base}/{name}"))).await?;
            db.migrate().await?;
            Ok(Scratch {
                db,
                drop: Some((pg_url.to_owned(), name)),
                file: None,
            })
        }
        other => anyhow::bail!("--backend {other:?}: use sqlite or postgres"),
    }
}

impl Scratch {
    async fn remove(self) -> anyhow::Result<()> {
        self.db.close().await;
        if let Some((url, name)) = self.drop {
            let admin = sqlx::PgPool::connect(&url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await?;
        }
        if let Some(f) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
        Ok(())
    }
}

fn files_in(dir: &Path, prefix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Ingests `dir` (written by `attune simulate`) through the pipeline, then inserts the same
/// rows raw into a second fresh database.
pub async fn ingest(
    dir: &Path,
    backend: &str,
    pg_url: &str,
    work: &Path,
) -> anyhow::Result<serde_json::Value> {
    let customers = files_in(dir, "customers")?;
    let events = files_in(dir, "events")?;
    anyhow::ensure!(
        !customers.is_empty() && !events.is_empty(),
        "{} holds no customers* and events* files; write them with `attune simulate --out {}`",
        dir.display(),
        dir.display()
    );
    let today = jobs::today();

    // The pipeline: files -> parse -> map -> events + rollups + changes, per batch.
    let s = scratch(backend, pg_url, work, "pipeline").await?;
    for c in &customers {
        jobs::import::import_customers_file(&s.db, c, ingest::CustomerPreset::Standard, today)
            .await?;
    }
    let ctx = JobContext::new(s.db.clone(), Config::default());
    let started = Instant::now();
    let (mut stored, mut quarantined) = (0u64, 0u64);
    let ids = s.db.customer_ids().await?;
    for f in &events {
        let r = jobs::import::import_events_file_with(&ctx, &ids, f, Some("bench")).await?;
        stored += r.imported;
        quarantined += r.quarantined + r.rejected;
    }
    let pipeline_secs = started.elapsed().as_secs_f64();
    // What the pipeline left in SQLite's WAL, copied into the database file: counted too.
    let checkpoint_started = Instant::now();
    s.db.checkpoint().await?;
    let checkpoint_secs = checkpoint_started.elapsed().as_secs_f64();
    let rollups = count(&s.db, "activity_daily").await?;
    s.remove().await?;

    // The ceiling: the same rows, parsed beforehand, inserted raw.
    let s = scratch(backend, pg_url, work, "ceiling").await?;
    for c in &customers {
        jobs::import::import_customers_file(&s.db, c, ingest::CustomerPreset::Standard, today)
            .await?;
    }
    let ids = s.db.customer_ids().await?;
    let mut rows: Vec<(i64, ActivityEvent)> = Vec::new();
    for f in &events {
        let file = std::fs::File::open(f)?;
        let parsed = ingest::parse_events(
            &f.display().to_string(),
            std::io::BufReader::new(file),
            Format::from_path(f)?,
            "bench",
        )?;
        rows.extend(
            parsed
                .rows
                .into_iter()
                .filter_map(|(_, e)| ids.get(e.customer.as_str()).map(|id| (id, e))),
        );
    }
    let started = Instant::now();
    s.db.insert_events_raw(&rows).await?;
    let ceiling_secs = started.elapsed().as_secs_f64();
    let raw_rows = count(&s.db, "events").await?;
    s.remove().await?;

    let pipeline_rate = stored as f64 / pipeline_secs;
    let ceiling_rate = raw_rows as f64 / ceiling_secs;
    Ok(json!({
        "backend": backend,
        "files": events.len(),
        "pipeline": {
            "events_stored": stored,
            "quarantined": quarantined,
            "rollup_rows": rollups,
            "seconds": pipeline_secs,
            "events_per_second": pipeline_rate,
            "final_checkpoint_seconds": checkpoint_secs,
            "events_per_second_with_final_checkpoint": stored as f64 / (pipeline_secs + checkpoint_secs),
        },
        "raw_insert_ceiling": {
            "method": if backend == "sqlite" { "multi-row INSERT, 64 rows per statement, 1,000,000 per transaction, SQLite's automatic checkpoints" } else { "COPY FROM STDIN" },
            "events": raw_rows,
            "seconds": ceiling_secs,
            "events_per_second": ceiling_rate,
        },
        "pipeline_over_ceiling": pipeline_rate / ceiling_rate,
    }))
}

async fn count(db: &Db, table: &str) -> anyhow::Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    Ok(match db {
        Db::Sqlite(p, ..) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(p)
                .await?
        }
        Db::Postgres(p) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(p)
                .await?
        }
    })
}

/// Computes every active customer's features as of `as_of` from the rollups, a page at a
/// time, and reports how long it took.
pub async fn features(
    ctx: &JobContext,
    as_of: NaiveDate,
    read_only: bool,
) -> anyhow::Result<serde_json::Value> {
    let spec = ctx.feature_spec().await?;
    let started = Instant::now();
    let mut pages = jobs::score::read_pages(ctx.db.clone(), as_of, None, spec.lookback());
    let (mut customers, mut values, mut known) = (0usize, 0usize, 0usize);
    let day = day_number(as_of);
    while let Some(page) = pages.recv().await {
        let (page, activity) = page?;
        if read_only {
            customers += page.len();
            continue;
        }
        let spec = spec.clone();
        let (n, v, k) = tokio::task::spawn_blocking(move || {
            let none = Activity::default();
            let rows = jobs::par::par_map(&page, |(id, c)| {
                compute(&spec, c, activity.get(id).unwrap_or(&none), as_of)
            });
            let v: usize = rows.iter().map(|r| r.len()).sum();
            let k = page
                .iter()
                .filter(|(id, _)| activity.get(id).is_some_and(|a| a.any_before(day)))
                .count();
            (rows.len(), v, k)
        })
        .await?;
        customers += n;
        values += v;
        known += k;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "as_of": as_of,
        "customers": customers,
        "with_activity": known,
        "feature_values": values,
        "seconds": seconds,
        "customers_per_second": customers as f64 / seconds,
    }))
}
