//! Importing customer and activity files: parse (pure, in `ingest`), then store. Shared by
//! `attune import`, the pull job and the demo. Good rows are kept; every bad row is
//! reported with its file, line and column; nothing is dropped silently.

use std::path::Path;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;

use super::{JobContext, sources};
use crate::domain::Customer;
use crate::ingest::{self, CustomerPreset, Format, RowError};
use crate::store::{Db, FailPoint, Progress};

/// Rows per transaction when importing a file: large transactions write the customer index
/// and the rollups once each, in key order.
pub const COMMIT_ROWS: usize = 1_000_000;

/// Rows read and parsed at a time: small enough that the writer starts soon after the
/// file is opened, large enough that a batch's hand-off costs nothing.
const READ_ROWS: usize = 50_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub file: String,
    /// Rows new to attune.
    pub imported: u64,
    /// Customers already known, refreshed from this file.
    pub updated: u64,
    /// Events already stored (same source and source event id).
    pub duplicate: u64,
    /// Events for customers attune does not know yet: kept in quarantine, stored by
    /// `attune quarantine retry` once the customer is imported.
    pub quarantined: u64,
    /// Rows refused (malformed, unknown kind, bad timestamp or value): quarantined with
    /// the reason for events, listed for customers.
    pub rejected: u64,
    /// One line per rejected row: `file:line: column C: problem`.
    pub errors: Vec<String>,
    /// One line per event put in (or already in) quarantine.
    pub quarantine: Vec<String>,
}

impl ImportReport {
    fn reject(&mut self, errors: impl IntoIterator<Item = RowError>) {
        for e in errors {
            self.rejected += 1;
            self.errors.push(e.to_string());
        }
    }
}

pub async fn import_customers_file(
    db: &Db,
    path: &Path,
    preset: CustomerPreset,
    today: NaiveDate,
) -> anyhow::Result<ImportReport> {
    let name = path.display().to_string();
    let (file, format) = ingest::open(path)?;
    let parsed = ingest::parse_customers(&name, file, format, preset, today)?;
    let customers: Vec<Customer> = parsed.rows.into_iter().map(|(_, c)| c).collect();
    let counts = db
        .upsert_customers(&customers)
        .await
        .with_context(|| format!("storing customers from {name}"))?;
    db.refresh_statistics(&["customers"], counts.inserted)
        .await
        .context("refreshing the database's statistics")?;
    let mut report = ImportReport {
        file: name,
        imported: counts.inserted,
        updated: counts.updated,
        ..Default::default()
    };
    report.reject(parsed.rejected);
    Ok(report)
}

/// Imports an events file through the same pipeline as a drop directory (streamed in
/// batches; refused rows and unknown customers quarantined with their reason), as source
/// `source`: a configured source's name to use its column and kind mapping, else a name
/// of its own (attune's standard columns).
pub async fn import_events_file(
    ctx: &JobContext,
    path: &Path,
    source: Option<&str>,
) -> anyhow::Result<ImportReport> {
    let ids = ctx.db.customer_ids().await?;
    import_events_file_with(ctx, &ids, path, source).await
}

/// [`import_events_file`] with the customer id map already loaded (for many files).
pub async fn import_events_file_with(
    ctx: &JobContext,
    ids: &crate::store::CustomerIds,
    path: &Path,
    source: Option<&str>,
) -> anyhow::Result<ImportReport> {
    let name = path.display().to_string();
    Format::from_path(path)?;
    let source = source
        .map(str::to_owned)
        .unwrap_or_else(|| ingest::file_stem(path).unwrap_or("file").to_owned());
    let mapping = sources::mapping_for(ctx, &source).await?;
    let mut report = ImportReport {
        file: name.clone(),
        ..Default::default()
    };
    let mut file = sources::read_batches(
        name.clone(),
        path.to_owned(),
        source,
        mapping,
        READ_ROWS,
        0,
        |_| Progress::None,
    );
    ctx.progress
        .stage(&format!("importing {name}"), "events read");
    while let Some(c) = ctx
        .db
        .ingest_stream(ids, &mut file.batches, COMMIT_ROWS, FailPoint::Never)
        .await
        .with_context(|| format!("storing events from {name}"))?
    {
        report.imported += c.stored;
        report.duplicate += c.duplicate;
        report.quarantined += c.unknown_customer.len() as u64;
        ctx.progress.advance(
            c.stored + c.duplicate + c.unknown_customer.len() as u64 + c.refused.len() as u64,
        );
        for (location, code, reason) in &c.refused {
            report.rejected += 1;
            report.errors.push(format!("{location}: {reason} [{code}]"));
        }
        for (location, customer) in &c.unknown_customer {
            report.quarantine.push(format!(
                "{location}: column customer_id: unknown customer {customer:?}; kept in quarantine until the customer is imported (then `attune quarantine retry`)"
            ));
        }
    }
    if let Some(e) = file.take_error() {
        return Err(e.into());
    }
    ctx.db
        .refresh_statistics(&["events", "activity_daily"], report.imported)
        .await
        .context("refreshing the database's statistics")?;
    Ok(report)
}
