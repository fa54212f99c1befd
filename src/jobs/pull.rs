//! The pull job: pulls every configured source that is pulled (drop directories and SQL
//! databases; HTTP sources push) until each has nothing new. A source that fails is
//! reported and the others still run; the job fails if any did, so it is retried.

use serde::{Deserialize, Serialize};

use super::JobContext;
use super::sources::{self, PullOptions, SourceReport};

pub const QUEUE: &str = "attune.pull";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullJob {
    pub tick: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PullReport {
    pub sources: Vec<SourceReport>,
    /// Sources that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Sources another pull was pulling already, with who and since when.
    pub skipped: Vec<(String, String)>,
}

impl PullReport {
    /// Every file taken, across sources.
    pub fn files(&self) -> impl Iterator<Item = &sources::files::FileReport> {
        self.sources.iter().flat_map(|s| s.files.iter())
    }
}

pub async fn run(ctx: &JobContext, _job: &PullJob) -> anyhow::Result<PullReport> {
    run_with(ctx, PullOptions::default()).await
}

pub async fn run_with(ctx: &JobContext, opts: PullOptions) -> anyhow::Result<PullReport> {
    let mut report = PullReport::default();
    for source in sources::configured(ctx) {
        if source.kind == crate::config::SourceKind::Http {
            continue;
        }
        match sources::pull_source(ctx, &source, opts).await {
            Ok(r) => {
                tracing::info!(source = %r.source, stored = r.stored, duplicate = r.duplicate, quarantined = r.quarantined, seconds = r.seconds, "pulled");
                report.sources.push(r);
            }
            Err(e) if e.downcast_ref::<super::lease::Busy>().is_some() => {
                tracing::info!(source = %source.name, reason = %e, "source skipped");
                report.skipped.push((source.name.clone(), e.to_string()));
            }
            Err(e) => {
                tracing::error!(source = %source.name, error = %format!("{e:#}"), "pull failed");
                report.failed.push((source.name.clone(), format!("{e:#}")));
            }
        }
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} of {} sources failed: {}",
            report.failed.len(),
            report.failed.len() + report.sources.len(),
            report
                .failed
                .iter()
                .map(|(s, e)| format!("{s}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(report)
}
