//! The pull job: takes new customer and activity files from the configured inbox. Each
//! file is taken once: after import it moves to `done/`, and its rejected rows are written
//! beside it in `FILE.rejected.txt`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::JobContext;
use super::import::{ImportReport, import_customers_file, import_events_file};
use crate::ingest::CustomerPreset;

pub const QUEUE: &str = "attune.pull";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullJob {
    pub tick: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PullReport {
    pub files: Vec<ImportReport>,
}

fn is_data_file(p: &Path, prefix: &str) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.starts_with(prefix)
        && [".csv", ".ndjson", ".jsonl", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

pub async fn run(ctx: &JobContext, _job: &PullJob) -> anyhow::Result<PullReport> {
    let mut report = PullReport::default();
    let Some(inbox) = ctx.config.pull.inbox.clone() else {
        return Ok(report);
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&inbox)
        .with_context(|| format!("reading inbox {}", inbox.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let done = inbox.join("done");
    let today = super::today();
    // Customers first, so events in the same pull find them.
    for prefix in ["customers", "events"] {
        for path in files.iter().filter(|p| is_data_file(p, prefix)) {
            let r = if prefix == "customers" {
                import_customers_file(&ctx.db, path, CustomerPreset::Standard, today).await?
            } else {
                import_events_file(&ctx.db, path).await?
            };
            std::fs::create_dir_all(&done)
                .with_context(|| format!("creating {}", done.display()))?;
            let name = path.file_name().expect("a file has a name");
            if !r.errors.is_empty() {
                let rejected = done.join(format!("{}.rejected.txt", name.to_string_lossy()));
                std::fs::write(&rejected, r.errors.join("\n") + "\n")
                    .with_context(|| format!("writing {}", rejected.display()))?;
            }
            std::fs::rename(path, done.join(name))
                .with_context(|| format!("moving {} to {}", path.display(), done.display()))?;
            tracing::info!(file = %r.file, imported = r.imported, duplicate = r.duplicate, rejected = r.rejected, "pulled");
            report.files.push(r);
        }
    }
    Ok(report)
}
