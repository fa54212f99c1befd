//! The outbox receiver: NDJSON or CSV files in a directory, for a CRM's batch import. A
//! file collects nudges until it reaches `roll_bytes` or has been open `roll_secs`, then is
//! written whole to a hidden temporary name, synced, and renamed into place: a reader
//! listing the directory sees whole files only. Its nudges are marked sent after the
//! rename; a daemon killed before that leaves a hidden temporary file (removed at the next
//! start) and sends the nudges again in a later file, with the same ids.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use super::Attempt;
use crate::config::{ChannelConfig, OutboxFormat};
use crate::delivery::{CSV_HEADER, Outgoing, csv_record, ndjson_line};

pub struct Outbox {
    dir: PathBuf,
    name: String,
    format: OutboxFormat,
    roll_bytes: u64,
    roll: std::time::Duration,
    /// What the open file holds, not yet written.
    held: Vec<Outgoing>,
    bytes: u64,
    opened: Option<Instant>,
    seq: u64,
}

impl Outbox {
    pub fn new(c: &ChannelConfig) -> Result<Self, String> {
        let dir = c.dir.clone().unwrap_or_default();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("{}: cannot be created: {e}", dir.display()))?;
        // Temporary files a killed daemon left: their nudges were never marked sent.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let n = e.file_name();
                if n.to_string_lossy().starts_with(".attune-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            dir,
            name: c.name.clone(),
            format: c.format,
            roll_bytes: c.roll_bytes,
            roll: c.roll,
            held: Vec::new(),
            bytes: 0,
            opened: None,
            seq: 0,
        })
    }

    /// The directory exists and a file can be written in it.
    pub fn probe(&self) -> Result<(), String> {
        let p = self.dir.join(".attune-probe");
        std::fs::write(&p, b"")
            .and_then(|_| std::fs::remove_file(&p))
            .map_err(|e| format!("{}: cannot be written: {e}", self.dir.display()))
    }

    /// Holds `batch` in the open file; writes the file when it is full or old enough.
    /// The attempts of every nudge in a file written (or failed) now.
    pub async fn send(&mut self, batch: Vec<Outgoing>) -> Vec<(i64, Attempt)> {
        for o in batch {
            self.bytes += (o.message.len() + 400) as u64;
            self.opened.get_or_insert_with(Instant::now);
            self.held.push(o);
        }
        self.flush_if_due(false).await
    }

    /// Writes the open file if it is full, old enough, or `now` is asked for.
    pub async fn flush_if_due(&mut self, now: bool) -> Vec<(i64, Attempt)> {
        let due =
            self.bytes >= self.roll_bytes || self.opened.is_some_and(|t| t.elapsed() >= self.roll);
        if self.held.is_empty() || !(due || now) {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.held);
        self.bytes = 0;
        self.opened = None;
        self.seq += 1;
        let ids: Vec<i64> = held.iter().map(|o| o.nudge_id).collect();
        let (dir, name, format, seq) = (self.dir.clone(), self.name.clone(), self.format, self.seq);
        let written =
            tokio::task::spawn_blocking(move || write_file(&dir, &name, format, seq, &held)).await;
        let attempt = match written {
            Ok(Ok(_)) => Attempt::Accepted,
            Ok(Err(e)) => Attempt::failed(format!("writing the outbox file: {e}")),
            Err(e) => Attempt::failed(format!("writing the outbox file: {e}")),
        };
        ids.into_iter().map(|id| (id, attempt.clone())).collect()
    }
}

/// Writes `items` to a hidden temporary file, syncs it and renames it into place.
fn write_file(
    dir: &std::path::Path,
    name: &str,
    format: OutboxFormat,
    seq: u64,
    items: &[Outgoing],
) -> std::io::Result<PathBuf> {
    let now = crate::store::now_secs();
    let stamp = chrono::DateTime::<chrono::Utc>::from_timestamp(now, 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| now.to_string());
    let ext = match format {
        OutboxFormat::Ndjson => "ndjson",
        OutboxFormat::Csv => "csv",
    };
    let pid = std::process::id();
    let file = format!("{name}-{stamp}-{pid}-{seq:06}.{ext}");
    let tmp = dir.join(format!(".attune-{file}.tmp"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    match format {
        OutboxFormat::Ndjson => {
            for o in items {
                f.write_all(&ndjson_line(o, now))?;
            }
        }
        OutboxFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut f);
            w.write_record(CSV_HEADER)?;
            for o in items {
                w.write_record(csv_record(o))?;
            }
            w.flush()?;
        }
    }
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    let target = dir.join(&file);
    std::fs::rename(&tmp, &target)?;
    // The rename itself survives a crash once the directory is synced.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}
