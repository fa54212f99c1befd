//! The files source: a drop directory of CSV or NDJSON files. A file is taken once:
//! its rows are committed in batches, each recording the last line committed (so a crash
//! mid-file resumes at the next row), then it moves to `done/`, or, with the rows that
//! were not stored listed beside it in `FILE.rejected.txt`, to `rejected/`. Files named
//! `customers*` hold customer records; every other file holds events. Writers should
//! drop a file under a temporary name (`.name`, `*.tmp`, `*.part`) and rename it when
//! complete: such names are left alone.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context as _;
use serde::Serialize;

use super::{PullOptions, SourceReport, read_batches};
use crate::config::SourceConfig;
use crate::ingest::CustomerPreset;
use crate::jobs::JobContext;
use crate::jobs::import::import_customers_file;
use crate::store::{CustomerIds, Progress};

/// What happened to one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub file: String,
    /// `done` or `rejected`.
    pub outcome: String,
    pub stored: u64,
    pub duplicate: u64,
    /// Rows not stored (quarantined with their reason, or refused customer rows).
    pub rejected: u64,
    /// Where the file went.
    pub moved_to: String,
}

fn is_taken(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part"))
}

/// The file's identity beside its name: a file dropped again under the same name later is
/// a new file.
fn fingerprint(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}:{modified}", meta.len()))
}

fn move_to(path: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().expect("a file has a name");
    let mut target = dir.join(name);
    // Never overwrite an earlier file of the same name.
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    std::fs::rename(path, &target)
        .with_context(|| format!("moving {} to {}", path.display(), target.display()))?;
    Ok(target)
}

pub async fn pull(
    ctx: &JobContext,
    source: &SourceConfig,
    opts: PullOptions,
) -> anyhow::Result<SourceReport> {
    let dir = source
        .dir
        .clone()
        .expect("validated: files sources have a dir");
    let mut report = SourceReport::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading drop directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_taken))
        .collect();
    files.sort();
    // Customers first, so events in the same pull find them.
    files.sort_by_key(|p| !is_customer_file(p));
    let ids = ctx.db.customer_ids().await?;
    for path in files {
        let r = if is_customer_file(&path) {
            take_customers(ctx, &dir, &path).await?
        } else {
            take_events(ctx, source, &ids, &dir, &path, opts, &mut report).await?
        };
        tracing::info!(source = %source.name, file = %r.file, outcome = %r.outcome, stored = r.stored, duplicate = r.duplicate, rejected = r.rejected, "file taken");
        report.files.push(r);
    }
    Ok(report)
}

fn is_customer_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("customers"))
}

async fn take_customers(ctx: &JobContext, dir: &Path, path: &Path) -> anyhow::Result<FileReport> {
    let name = path
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .to_string();
    let r = import_customers_file(
        &ctx.db,
        path,
        CustomerPreset::Standard,
        crate::jobs::today(),
    )
    .await;
    let (errors, imported) = match r {
        Ok(r) => (r.errors, r.imported + r.updated),
        // The whole file is unusable (a missing column, an unknown extension): it is
        // rejected with the reason, never dropped.
        Err(e) => (vec![format!("{e:#}")], 0),
    };
    finish(dir, path, &name, imported, 0, errors)
}

fn finish(
    dir: &Path,
    path: &Path,
    name: &str,
    stored: u64,
    duplicate: u64,
    errors: Vec<String>,
) -> anyhow::Result<FileReport> {
    let (outcome, target_dir) = if errors.is_empty() {
        ("done", dir.join("done"))
    } else {
        ("rejected", dir.join("rejected"))
    };
    if !errors.is_empty() {
        std::fs::create_dir_all(&target_dir)
            .with_context(|| format!("creating {}", target_dir.display()))?;
        let listing = target_dir.join(format!("{name}.rejected.txt"));
        std::fs::write(&listing, errors.join("\n") + "\n")
            .with_context(|| format!("writing {}", listing.display()))?;
    }
    let moved = move_to(path, &target_dir)?;
    Ok(FileReport {
        file: name.to_owned(),
        outcome: outcome.into(),
        stored,
        duplicate,
        rejected: errors.len() as u64,
        moved_to: moved.display().to_string(),
    })
}

async fn take_events(
    ctx: &JobContext,
    source: &SourceConfig,
    ids: &CustomerIds,
    dir: &Path,
    path: &Path,
    opts: PullOptions,
    report: &mut SourceReport,
) -> anyhow::Result<FileReport> {
    let db = &ctx.db;
    let name = path
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .to_string();
    let fp = fingerprint(path)?;
    let mapping = super::source_mapping(ctx, source).await?;
    let prior = db.source_file(&source.name, &name, &fp).await?;
    let resume_after = prior.as_ref().map_or(0, |f| f.lines_done.max(0) as u64);
    let finished = prior
        .as_ref()
        .is_some_and(|f| f.status == "done" || f.status == "rejected");
    let mut file_error = None;
    if !finished {
        let (file, fingerprint) = (name.clone(), fp.clone());
        let mut reading = read_batches(
            name.clone(),
            path.to_owned(),
            source.name.clone(),
            mapping,
            source.batch,
            resume_after,
            move |last_line| Progress::File {
                file: file.clone(),
                fingerprint: fingerprint.clone(),
                lines_done: last_line,
                finished: None,
            },
        );
        let mut transactions = 0;
        while let Some(c) = db
            .ingest_stream(
                ids,
                &mut reading.batches,
                source.commit_rows,
                opts.fail_point(transactions),
            )
            .await?
        {
            transactions += 1;
            report.add(&c);
        }
        // Unreadable from some point on: what was committed stays, and the file is
        // rejected with the reason.
        file_error = reading.take_error().map(|e| e.to_string());
    }
    // The outcome: rejected if any row of this file was not stored.
    let started = db
        .source_file(&source.name, &name, &fp)
        .await?
        .map_or(0, |f| f.started_at);
    let mut errors: Vec<String> = db
        .quarantined_at(&source.name, &format!("{name}:"), started)
        .await?
        .into_iter()
        .map(|(loc, code, reason)| format!("{loc}: {reason} [{code}]"))
        .collect();
    if let Some(e) = file_error {
        errors.push(e);
    }
    let status = if errors.is_empty() {
        "done"
    } else {
        "rejected"
    };
    let batch = crate::store::IngestBatch {
        source: source.name.clone(),
        progress: Progress::File {
            file: name.clone(),
            fingerprint: fp.clone(),
            lines_done: db
                .source_file(&source.name, &name, &fp)
                .await?
                .map_or(0, |f| f.lines_done.max(0) as u64),
            finished: Some(status),
        },
        ..Default::default()
    };
    db.ingest(ids, &batch, crate::store::FailPoint::Never)
        .await?;
    let totals = db.source_file(&source.name, &name, &fp).await?;
    let (stored, duplicate) = totals.as_ref().map_or((0, 0), |f| {
        (f.stored.max(0) as u64, f.duplicate.max(0) as u64)
    });
    finish(dir, path, &name, stored, duplicate, errors)
}
