//! `attune simulate`: writes a large synthetic population as the files a business would
//! export (a customers file and one events file per month, each in time order), so anyone
//! can reproduce the ingest, feature and scoring benchmarks. Customers are generated one at
//! a time; events are kept in a compact form (32 bytes each) to be sorted by time.

use crate::domain::money::grouped;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde::Serialize;

use super::synth::{self, SynthOptions};
use crate::domain::{Customer, Meaning};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Ndjson,
}

#[derive(Debug, Clone, Serialize)]
pub struct Simulated {
    pub customers: usize,
    pub events: usize,
    pub files: Vec<String>,
    pub seconds: f64,
}

/// One event, small enough that tens of millions can be sorted in memory.
#[derive(Clone, Copy)]
struct Compact {
    at: i64,
    value: f64,
    customer: u32,
    seq: u32,
    kind: Meaning,
}

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

fn create(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    ))
}

fn write_customer(
    w: &mut impl std::io::Write,
    c: &Customer,
    format: FileFormat,
) -> std::io::Result<()> {
    let consent: Vec<&str> = crate::domain::Channel::ALL
        .iter()
        .filter(|ch| c.consent.allows(**ch))
        .map(|ch| ch.as_str())
        .collect();
    let opt = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let attr = |k: &str| c.attributes.get(k).cloned().unwrap_or_default();
    match format {
        FileFormat::Csv => writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(c.external_id.as_str()),
            c.signup_date,
            csv_field(&c.plan),
            c.monthly_charge,
            c.contract_type.as_str(),
            opt(c.contract_end),
            opt(c.first_invoice_due),
            c.preferred_channel.as_str(),
            consent.join(";"),
            opt(c.churned_on),
            csv_field(&attr("region")),
            csv_field(&attr("segment")),
        ),
        FileFormat::Ndjson => {
            let v = serde_json::json!({
                "customer_id": c.external_id.as_str(),
                "signup_date": c.signup_date,
                "plan": c.plan,
                "monthly_charge": c.monthly_charge,
                "contract_type": c.contract_type.as_str(),
                "contract_end": c.contract_end,
                "first_invoice_due": c.first_invoice_due,
                "preferred_channel": c.preferred_channel.as_str(),
                "consent": consent.join(";"),
                "churned_on": c.churned_on,
                "region": attr("region"),
                "segment": attr("segment"),
            });
            writeln!(w, "{v}")
        }
    }
}

/// Generates `opts` into `out`: `customers.csv|ndjson` and `events-YYYY-MM.csv|ndjson`.
pub fn simulate_to_dir(
    opts: &SynthOptions,
    out: &Path,
    format: FileFormat,
    progress: &crate::jobs::progress::Reporter,
) -> anyhow::Result<Simulated> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ext = match format {
        FileFormat::Csv => "csv",
        FileFormat::Ndjson => "ndjson",
    };
    let customers_path = out.join(format!("customers.{ext}"));
    let mut cw = create(&customers_path)?;
    if format == FileFormat::Csv {
        writeln!(
            cw,
            "customer_id,signup_date,plan,monthly_charge,contract_type,contract_end,first_invoice_due,preferred_channel,consent,churned_on,region,segment"
        )?;
    }
    let mut ids: Vec<String> = Vec::with_capacity(opts.customers);
    let mut events: Vec<Compact> = Vec::with_capacity(opts.customers * 10);
    let mut failed: Option<std::io::Error> = None;
    progress.stage(
        &format!("generating {} customers", grouped(opts.customers as f64, 0)),
        "customers",
    );
    synth::generate_each(opts, |c, evs| {
        if failed.is_some() {
            return;
        }
        progress.advance(1);
        if let Err(e) = write_customer(&mut cw, &c, format) {
            failed = Some(e);
            return;
        }
        let customer = ids.len() as u32;
        for e in evs {
            let seq = e
                .source_event_id
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            events.push(Compact {
                at: e.occurred_at.timestamp(),
                value: e.value.unwrap_or(f64::NAN),
                customer,
                seq,
                kind: Meaning::from_code(e.kind)
                    .expect("the synthetic population uses attune's own kinds"),
            });
        }
        ids.push(c.external_id.as_str().to_owned());
    });
    if let Some(e) = failed {
        return Err(e).with_context(|| format!("writing {}", customers_path.display()));
    }
    cw.flush()?;
    progress.stage("sorting events by time", "");
    events.sort_unstable_by_key(|e| (e.at, e.customer, e.seq));
    progress.stage(
        &format!(
            "writing {} events by month",
            grouped(events.len() as f64, 0)
        ),
        "events",
    );
    let mut files = vec![customers_path.display().to_string()];
    let mut current: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
    // Event ids are the source system's running number, in time order, as an
    // auto-increment key in a billing or CRM database would give them.
    for (n, e) in events.iter().enumerate() {
        let at = DateTime::from_timestamp(e.at, 0).context("an event time out of range")?;
        let month = at.format("%Y-%m").to_string();
        if current.as_ref().is_none_or(|(m, _)| *m != month) {
            if let Some((_, mut w)) = current.take() {
                w.flush()?;
            }
            let path: PathBuf = out.join(format!("events-{month}.{ext}"));
            let mut w = create(&path)?;
            if format == FileFormat::Csv {
                writeln!(
                    w,
                    "customer_id,kind,occurred_at,value,source,source_event_id"
                )?;
            }
            files.push(path.display().to_string());
            current = Some((month, w));
        }
        let (_, w) = current.as_mut().expect("opened above");
        if (n + 1) % 65_536 == 0 {
            progress.advance(65_536);
        }
        let id = &ids[e.customer as usize];
        let ts = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        match format {
            FileFormat::Csv => {
                write!(w, "{},{},{ts},", csv_field(id), e.kind.as_str())?;
                if !e.value.is_nan() {
                    write!(w, "{}", e.value)?;
                }
                writeln!(w, ",{},ev{n:010}", synth::SOURCE)?;
            }
            FileFormat::Ndjson => {
                let v = serde_json::json!({
                    "customer_id": id,
                    "kind": e.kind.as_str(),
                    "occurred_at": ts,
                    "value": (!e.value.is_nan()).then_some(e.value),
                    "source": synth::SOURCE,
                    "source_event_id": format!("ev{n:010}"),
                });
                writeln!(w, "{v}")?;
            }
        }
    }
    progress.advance((events.len() % 65_536) as u64);
    if let Some((_, mut w)) = current.take() {
        w.flush()?;
    }
    Ok(Simulated {
        customers: ids.len(),
        events: events.len(),
        files,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{CustomerPreset, Format, parse_customers, parse_events};

    #[test]
    fn simulated_files_parse_back_to_the_generated_population() {
        let today: NaiveDate = "2026-06-30".parse().unwrap();
        let opts = SynthOptions {
            customers: 300,
            seed: 3,
            today,
            months: 3,
        };
        let want = synth::generate(&opts);
        for format in [FileFormat::Csv, FileFormat::Ndjson] {
            let dir = tempfile::tempdir().unwrap();
            let sim = simulate_to_dir(&opts, dir.path(), format, &Default::default()).unwrap();
            assert_eq!((sim.customers, sim.events), (300, want.events.len()));
            let fmt = if format == FileFormat::Csv {
                Format::Csv
            } else {
                Format::Ndjson
            };
            let text = std::fs::read(&sim.files[0]).unwrap();
            let c = parse_customers("c", text.as_slice(), fmt, CustomerPreset::Standard, today)
                .unwrap();
            assert!(c.rejected.is_empty(), "{:?}", c.rejected.first());
            assert_eq!(
                c.rows.into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
                want.customers
            );
            let mut got = Vec::new();
            let mut last = i64::MIN;
            for f in &sim.files[1..] {
                let text = std::fs::read(f).unwrap();
                let p = parse_events("e", text.as_slice(), fmt, "x").unwrap();
                assert!(p.rejected.is_empty(), "{:?}", p.rejected.first());
                for (_, e) in p.rows {
                    assert!(e.occurred_at.timestamp() >= last, "files are in time order");
                    last = e.occurred_at.timestamp();
                    got.push(e);
                }
            }
            let key = |e: &crate::domain::ActivityEvent| {
                (
                    e.customer.clone(),
                    e.occurred_at,
                    e.kind,
                    e.value.map(f64::to_bits),
                )
            };
            let mut want_events = want.events.clone();
            want_events.sort_by_key(key);
            got.sort_by_key(key);
            let mut ids: Vec<&str> = got.iter().map(|e| e.source_event_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), got.len(), "event ids are unique");
            for (g, w) in got.iter().zip(&want_events) {
                assert_eq!(
                    (g.kind, g.occurred_at, g.value, &g.customer),
                    (w.kind, w.occurred_at, w.value, &w.customer)
                );
            }
            assert_eq!(got.len(), want_events.len());
        }
    }

    /// `attune simulate` says what it is doing and counts every customer and event.
    #[test]
    fn simulating_reports_its_progress() {
        use crate::jobs::progress::{Reporter, tests::Recorded};
        let opts = SynthOptions {
            customers: 200,
            seed: 5,
            today: "2026-06-30".parse().unwrap(),
            months: 2,
        };
        let seen = std::sync::Arc::new(Recorded::default());
        let dir = tempfile::tempdir().unwrap();
        let sim = simulate_to_dir(
            &opts,
            dir.path(),
            FileFormat::Csv,
            &Reporter::new(seen.clone()),
        )
        .unwrap();
        let stages = seen.0.lock().unwrap().clone();
        assert_eq!(
            stages,
            [
                ("generating 200 customers".to_owned(), "customers", 200),
                ("sorting events by time".to_owned(), "", 0),
                (
                    format!("writing {} events by month", grouped(sim.events as f64, 0)),
                    "events",
                    sim.events as u64
                ),
            ]
        );
    }
}
