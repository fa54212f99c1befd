//! `attune predict`: any table scored with a model, and `attune scores export`: a scoring
//! run written out for the tools a data team already has (CSV, or Parquet for the warehouse).
//!
//! A table is read as training reads one: a column per feature the model reads (its name
//! is the column's), numbers where the model expects numbers. A row that cannot be scored
//! is reported with its line and column and left out; the others are written.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::features::{FeatureRow, FeatureValue};
use crate::ingest::record::{Problem, parse_with};
use crate::model::{Encoding, ModelArtifact};

/// What `attune predict` did.
#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    pub file: String,
    pub out: String,
    pub model: String,
    pub scored: usize,
    pub rejected: usize,
    /// One line per rejected row: `file:line: column C: problem`.
    pub errors: Vec<String>,
    /// The columns copied into the output beside the probability.
    pub id_columns: Vec<String>,
}

/// Writes `path`'s rows scored by `model` to `out` (CSV): the identifier columns (those
/// named like an id, or `id_column`), `churn_probability` and the top three drivers.
pub fn predict_table(
    path: &Path,
    model: &ModelArtifact,
    out: &Path,
    id_column: Option<&str>,
) -> anyhow::Result<PredictReport> {
    let name = path.display().to_string();
    let numeric: BTreeSet<&str> = model
        .features
        .iter()
        .filter(|f| matches!(f.encoding, Encoding::Numeric { .. }))
        .map(|f| f.source.as_str())
        .collect();
    let sources: BTreeSet<&str> = model.features.iter().map(|f| f.source.as_str()).collect();
    let required: Vec<&str> = sources.iter().copied().collect();
    let (file, format) = crate::ingest::open(path)?;
    let mut id_columns: Option<Vec<String>> = None;
    let parsed = parse_with(&name, file, format, &required, |record| {
        let ids = id_columns.get_or_insert_with(|| {
            let mut cols: Vec<String> = match id_column {
                Some(c) => vec![c.to_owned()],
                None => record
                    .fields
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .filter(|k| crate::ingest::table::named_like_an_id(k))
                    .collect(),
            };
            cols.dedup();
            cols
        });
        let mut row = FeatureRow::new();
        for source in &sources {
            let v = match record.text(source)? {
                None => FeatureValue::Missing,
                Some(raw) if numeric.contains(source) => match raw.parse::<f64>() {
                    Ok(x) if x.is_finite() => FeatureValue::Num(x),
                    _ => {
                        return Err(Problem::at(
                            source,
                            format!(
                                "{raw:?} is not a number; model {} reads {source} as a number",
                                model.version
                            ),
                        ));
                    }
                },
                Some(raw) => FeatureValue::Cat(raw.to_owned()),
            };
            row.insert((*source).to_owned(), v);
        }
        let ids: Vec<String> = ids
            .iter()
            .map(|c| record.text(c).map(|v| v.unwrap_or_default().to_owned()))
            .collect::<Result<_, _>>()?;
        Ok((ids, row))
    })?;
    let id_columns = id_columns.unwrap_or_default();
    if let Some(c) = id_column
        && !parsed.rows.is_empty()
        && parsed.rows.iter().all(|(_, (ids, _))| ids[0].is_empty())
    {
        anyhow::bail!(
            "{name}: --id-column {c:?} is empty in every row (or not a column of the file)"
        );
    }
    let tmp = out.with_extension("tmp");
    {
        let mut w =
            csv::Writer::from_path(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut header: Vec<String> = if id_columns.is_empty() {
            vec!["line".into()]
        } else {
            id_columns.clone()
        };
        header.extend(["churn_probability", "driver_1", "driver_2", "driver_3"].map(String::from));
        w.write_record(&header)?;
        for (line, (ids, row)) in &parsed.rows {
            let mut rec: Vec<String> = if id_columns.is_empty() {
                vec![line.to_string()]
            } else {
                ids.clone()
            };
            rec.push(format!("{:.6}", model.predict(row).get()));
            let drivers = model.drivers(row, 3);
            for i in 0..3 {
                rec.push(
                    drivers
                        .get(i)
                        .map(|d| d.feature.clone())
                        .unwrap_or_default(),
                );
            }
            w.write_record(&rec)?;
        }
        w.flush()?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(PredictReport {
        file: name,
        out: out.display().to_string(),
        model: model.version.clone(),
        scored: parsed.rows.len(),
        rejected: parsed.rejected.len(),
        errors: parsed.rejected.iter().map(|e| e.to_string()).collect(),
        id_columns,
    })
}

/// The file formats `attune scores export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

impl ExportFormat {
    /// From `--format`, or else the file's extension (`.parquet`), else CSV.
    pub fn choose(format: Option<&str>, out: &Path) -> anyhow::Result<Self> {
        match format.map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Self::Csv),
            Some("parquet") => Ok(Self::Parquet),
            Some(other) => anyhow::bail!("--format {other:?}: use csv or parquet"),
            None => Ok(
                if out
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
                {
                    Self::Parquet
                } else {
                    Self::Csv
                },
            ),
        }
    }
}

/// One exported score: a customer's probability in a run, with its top drivers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedScore {
    pub customer_id: String,
    pub churn_probability: f64,
    pub model_version: String,
    pub as_of: chrono::NaiveDate,
    pub run_id: i64,
    /// Up to three (encoded column, words).
    pub drivers: Vec<(String, String)>,
}

/// What `attune scores export` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub run_id: i64,
    pub as_of: chrono::NaiveDate,
    pub model_version: String,
    pub scores: usize,
    pub file: String,
    pub format: &'static str,
}

/// A score's drivers as exported: up to three (encoded column, words).
pub fn exported_drivers(list: &[crate::model::Driver]) -> Vec<(String, String)> {
    list.iter()
        .take(3)
        .map(|d| (d.feature.clone(), d.description.clone()))
        .collect()
}

/// Writes scores as CSV: `customer_id, churn_probability, model_version, as_of, run_id`,
/// then `driver_N` and `driver_N_words` for N = 1..3.
pub fn write_scores_csv(
    w: &mut csv::Writer<impl std::io::Write>,
    rows: &[ExportedScore],
    header: bool,
) -> anyhow::Result<()> {
    if header {
        let mut h: Vec<String> = [
            "customer_id",
            "churn_probability",
            "model_version",
            "as_of",
            "run_id",
        ]
        .map(String::from)
        .to_vec();
        for i in 1..=3 {
            h.push(format!("driver_{i}"));
            h.push(format!("driver_{i}_words"));
        }
        w.write_record(&h)?;
    }
    for r in rows {
        let mut rec = vec![
            r.customer_id.clone(),
            format!("{:.6}", r.churn_probability),
            r.model_version.clone(),
            r.as_of.to_string(),
            r.run_id.to_string(),
        ];
        for i in 0..3 {
            let (f, words) = r.drivers.get(i).cloned().unwrap_or_default();
            rec.push(f);
            rec.push(words);
        }
        w.write_record(&rec)?;
    }
    Ok(())
}

/// Writes scoring run `run` (the latest full run when `None`) to `out`.
pub async fn export_scores(
    db: &crate::store::Db,
    run: Option<i64>,
    out: &Path,
    format: ExportFormat,
) -> anyhow::Result<ExportReport> {
    let run = match run {
        Some(id) => db.scoring_run(id).await?.with_context(|| {
            format!("there is no scoring run {id}; `attune scores runs` lists them")
        })?,
        None => db
            .latest_full_scoring_run()
            .await?
            .context("there is no finished full scoring run yet; run `attune score`")?,
    };
    if run.finished_at.is_none() {
        anyhow::bail!(
            "scoring run {} has not finished; export a finished run",
            run.id
        );
    }
    let tmp = out.with_extension("tmp");
    let mut after = None;
    let mut n = 0usize;
    let mut parquet = match format {
        ExportFormat::Parquet => Some(ParquetScores::create(&tmp)?),
        ExportFormat::Csv => None,
    };
    let mut csv = match format {
        ExportFormat::Csv => Some(
            csv::Writer::from_path(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        ),
        ExportFormat::Parquet => None,
    };
    loop {
        let page = db.run_scores_page(run.id, after, None, 50_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer_id);
        let rows: Vec<ExportedScore> = page
            .into_iter()
            .map(|s| ExportedScore {
                customer_id: s.customer,
                churn_probability: s.probability,
                model_version: s.model_version,
                as_of: run.as_of,
                run_id: run.id,
                drivers: exported_drivers(&s.drivers),
            })
            .collect();
        if let Some(w) = csv.as_mut() {
            write_scores_csv(w, &rows, n == 0)?;
        }
        if let Some(p) = parquet.as_mut() {
            p.write(&rows)?;
        }
        n += rows.len();
    }
    if let Some(mut w) = csv {
        if n == 0 {
            write_scores_csv(&mut w, &[], true)?;
        }
        w.flush()?;
    }
    if let Some(p) = parquet {
        p.finish()?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(ExportReport {
        run_id: run.id,
        as_of: run.as_of,
        model_version: run.model_version,
        scores: n,
        file: out.display().to_string(),
        format: match format {
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
        },
    })
}

/// Scores written as Parquet, a row group per page: the columns of the CSV export, with
/// `as_of` a DATE and the drivers nullable.
struct ParquetScores {
    writer: parquet::file::writer::SerializedFileWriter<std::fs::File>,
}

const PARQUET_SCHEMA: &str = "message scores {
    REQUIRED BYTE_ARRAY customer_id (UTF8);
    REQUIRED DOUBLE churn_probability;
    REQUIRED BYTE_ARRAY model_version (UTF8);
    REQUIRED INT32 as_of (DATE);
    REQUIRED INT64 run_id;
    OPTIONAL BYTE_ARRAY driver_1 (UTF8);
    OPTIONAL BYTE_ARRAY driver_1_words (UTF8);
    OPTIONAL BYTE_ARRAY driver_2 (UTF8);
    OPTIONAL BYTE_ARRAY driver_2_words (UTF8);
    OPTIONAL BYTE_ARRAY driver_3 (UTF8);
    OPTIONAL BYTE_ARRAY driver_3_words (UTF8);
}";

impl ParquetScores {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let schema =
            std::sync::Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA)?);
        let props = std::sync::Arc::new(
            parquet::file::properties::WriterProperties::builder()
                .set_created_by(format!("attune {}", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            writer: parquet::file::writer::SerializedFileWriter::new(file, schema, props)?,
        })
    }

    fn write(&mut self, rows: &[ExportedScore]) -> anyhow::Result<()> {
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
        let text = |s: &str| ByteArray::from(s.as_bytes().to_vec());
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
        let mut group = self.writer.next_row_group()?;
        let mut i = 0;
        while let Some(mut col) = group.next_column()? {
            match i {
                0 | 2 => {
                    let v: Vec<ByteArray> = rows
                        .iter()
                        .map(|r| {
                            text(if i == 0 {
                                &r.customer_id
                            } else {
                                &r.model_version
                            })
                        })
                        .collect();
                    col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                }
                1 => {
                    let v: Vec<f64> = rows.iter().map(|r| r.churn_probability).collect();
                    col.typed::<DoubleType>().write_batch(&v, None, None)?;
                }
                3 => {
                    let v: Vec<i32> = rows
                        .iter()
                        .map(|r| (r.as_of - epoch).num_days() as i32)
                        .collect();
                    col.typed::<Int32Type>().write_batch(&v, None, None)?;
                }
                4 => {
                    let v: Vec<i64> = rows.iter().map(|r| r.run_id).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None)?;
                }
                _ => {
                    // Drivers: column 5 + 2k is driver k+1's column, the next its words.
                    let (k, words) = ((i - 5) / 2, (i - 5) % 2 == 1);
                    let mut values = Vec::new();
                    let mut defined = Vec::with_capacity(rows.len());
                    for r in rows {
                        match r.drivers.get(k) {
                            Some((f, w)) => {
                                values.push(text(if words { w } else { f }));
                                defined.push(1i16);
                            }
                            None => defined.push(0),
                        }
                    }
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defined), None)?;
                }
            }
            col.close()?;
            i += 1;
        }
        group.close()?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        self.writer.close()?;
        Ok(())
    }
}
