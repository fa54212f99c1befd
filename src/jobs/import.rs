//! Importing customer and activity files: parse (pure, in `ingest`), then store. Shared by
//! `attune import`, the pull job and the demo. Good rows are kept; every bad row is
//! reported with its file, line and column; nothing is dropped silently.

use std::path::Path;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::{ActivityEvent, Customer};
use crate::ingest::{self, CustomerPreset, Format, RowError};
use crate::store::Db;

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
    let format = Format::from_path(path)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let parsed =
        ingest::parse_customers(&name, std::io::BufReader::new(file), format, preset, today)?;
    let customers: Vec<Customer> = parsed.rows.into_iter().map(|(_, c)| c).collect();
    let counts = db
        .upsert_customers(&customers)
        .await
        .with_context(|| format!("storing customers from {name}"))?;
    let mut report = ImportReport {
        file: name,
        imported: counts.inserted,
        updated: counts.updated,
        ..Default::default()
    };
    report.reject(parsed.rejected);
    Ok(report)
}

pub async fn import_events_file(db: &Db, path: &Path) -> anyhow::Result<ImportReport> {
    let name = path.display().to_string();
    let format = Format::from_path(path)?;
    let source = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("file")
        .to_owned();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let parsed = ingest::parse_events(&name, std::io::BufReader::new(file), format, &source)?;
    let mut report = ImportReport {
        file: name.clone(),
        ..Default::default()
    };
    report.reject(parsed.rejected);
    let (lines, events): (Vec<u64>, Vec<ActivityEvent>) = parsed.rows.into_iter().unzip();
    let counts = db
        .insert_events(&events)
        .await
        .with_context(|| format!("storing events from {name}"))?;
    report.imported = counts.inserted;
    report.duplicate = counts.duplicate;
    report.quarantined = counts.quarantined;
    for &i in &counts.unknown_customer {
        report.quarantine.push(format!(
            "{name}:{}: column customer_id: unknown customer {:?}; kept in quarantine until the customer is imported (then `attune quarantine retry`)",
            lines[i],
            events[i].customer.as_str()
        ));
    }
    let prefix = format!("{name}:");
    report.errors.sort_by_key(|e| {
        e.strip_prefix(&prefix)
            .and_then(|r| r.split(':').next())
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0)
    });
    Ok(report)
}
