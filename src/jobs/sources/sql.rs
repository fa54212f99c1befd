//! The sql source: a query against the company's own database (a billing or CRM replica,
//! PostgreSQL or SQLite) that reads the rows after a watermark, in watermark order:
//! `SELECT ... WHERE id > $1 ORDER BY id LIMIT $2`. Each batch's events and the new
//! watermark (the largest `cursor_column` value read) commit in one transaction, so a
//! crash between fetching and committing fetches the same rows again next time, and the
//! events table never stores one twice.

use std::sync::Arc;

use anyhow::Context as _;
use sqlx::{Column as _, Row as _, TypeInfo as _};

use super::{PullOptions, SourceReport, map_rows};
use crate::config::SourceConfig;
use crate::ingest::record::Record;
use crate::jobs::JobContext;
use crate::store::{DatabaseUrl, Progress};

/// Reads one column of a row as text, whatever its SQL type.
macro_rules! cell_text {
    ($row:expr, $i:expr) => {{
        let row = $row;
        let i = $i;
        if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            v
        } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            v.map(|x| x.to_string())
        } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
            v.map(|x| x.to_string())
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            v.map(|x| x.to_string())
        } else if let Ok(v) = row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i) {
            v.map(|x| x.to_rfc3339())
        } else if let Ok(v) = row.try_get::<Option<chrono::NaiveDateTime>, _>(i) {
            v.map(|x| x.and_utc().to_rfc3339())
        } else if let Ok(v) = row.try_get::<Option<chrono::NaiveDate>, _>(i) {
            v.map(|x| x.to_string())
        } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
            v.map(|x| x.to_string())
        } else {
            anyhow::bail!(
                "column {:?} has SQL type {} which attune cannot read; cast it to text in the query",
                row.columns()[i].name(),
                row.columns()[i].type_info().name()
            )
        }
    }};
}

/// Runs the source's query once: up to `batch` rows after `cursor`, as records.
async fn fetch(
    source: &SourceConfig,
    url: &DatabaseUrl,
    cursor: &str,
) -> anyhow::Result<Vec<Record>> {
    let query = source
        .query
        .as_deref()
        .expect("validated: sql sources have a query");
    let limit = source.batch as i64;
    let mut out = Vec::new();
    macro_rules! run {
        ($pool:expr) => {{
            let q = sqlx::query(sqlx::AssertSqlSafe(query));
            let q = match cursor.parse::<i64>() {
                Ok(n) => q.bind(n),
                Err(_) => q.bind(cursor.to_owned()),
            };
            let rows = q.bind(limit).fetch_all($pool).await?;
            let mut names: Option<Vec<Arc<str>>> = None;
            for row in &rows {
                let names = names.get_or_insert_with(|| {
                    row.columns().iter().map(|c| Arc::from(c.name())).collect()
                });
                let mut pairs = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    pairs.push((name.clone(), cell_text!(row, i)));
                }
                out.push(Record::from_pairs(pairs));
            }
        }};
    }
    match url {
        DatabaseUrl::Sqlite(path) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            run!(&pool);
            pool.close().await;
        }
        DatabaseUrl::Postgres(u) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(u)
                .await?;
            run!(&pool);
            pool.close().await;
        }
    }
    Ok(out)
}

/// The source database's URL: from `url_env` (the place for one with a password) or `url`.
fn source_url(source: &SourceConfig) -> anyhow::Result<DatabaseUrl> {
    let raw = match (&source.url_env, &source.url) {
        (Some(var), _) => std::env::var(var).with_context(|| {
            format!(
                "source {}: environment variable {var} (url_env) is not set",
                source.name
            )
        })?,
        (None, Some(url)) => url.clone(),
        (None, None) => anyhow::bail!("source {}: no url or url_env", source.name),
    };
    Ok(DatabaseUrl::parse(&raw)?)
}

pub async fn pull(
    ctx: &JobContext,
    source: &SourceConfig,
    opts: PullOptions,
) -> anyhow::Result<SourceReport> {
    let url = source_url(source)?;
    let mapping = super::source_mapping(ctx, source).await?;
    let cursor_column = source
        .cursor_column
        .clone()
        .expect("validated: sql sources have a cursor column");
    let mut cursor = ctx
        .db
        .source_cursor(&source.name)
        .await?
        .unwrap_or_else(|| source.cursor_start.clone());
    let ids = ctx.db.customer_ids().await?;
    let mut report = SourceReport::default();
    loop {
        let records = fetch(source, &url, &cursor)
            .await
            .with_context(|| format!("querying source {} after cursor {cursor:?}", source.name))?;
        let n = records.len();
        if n == 0 {
            break;
        }
        let mut next = cursor.clone();
        let mut rows = Vec::with_capacity(n);
        for r in records {
            let at = r
                .text(&cursor_column)
                .ok()
                .flatten()
                .map(str::to_owned)
                .with_context(|| {
                    format!(
                        "source {}: a row has no value in cursor_column {cursor_column:?}; the query must select it",
                        source.name
                    )
                })?;
            if !advances(&next, &at) {
                anyhow::bail!(
                    "source {}: the query returned {cursor_column} = {at:?} after {next:?}; it must read rows after $1 in {cursor_column} order",
                    source.name
                );
            }
            next = at.clone();
            rows.push((at, r));
        }
        // Rows are located by their cursor value when it is a number, else by position.
        let numeric = rows.iter().all(|(at, _)| at.parse::<u64>().is_ok());
        let prefix = if numeric {
            format!("{} {cursor_column}=", source.name)
        } else {
            format!("{} after {cursor_column} {cursor:?}, row ", source.name)
        };
        let rows = rows.into_iter().enumerate().map(|(i, (at, r))| {
            let n = if numeric {
                at.parse().unwrap_or(0)
            } else {
                i as u64 + 1
            };
            (n, Ok(r))
        });
        // A batch is re-read whole after a crash, so it numbers repeats of its own.
        let mut repeats = crate::ingest::mapping::Repeats::default();
        let mut batch = map_rows(
            &source.name,
            &mapping,
            chrono::Utc::now(),
            &prefix,
            rows,
            &mut repeats,
        );
        batch.progress = Progress::Cursor(next.clone());
        let c = ctx
            .db
            .ingest(&ids, &batch, opts.fail_point(report.batches))
            .await?;
        report.add(&c);
        cursor = next;
        if n < source.batch {
            break;
        }
    }
    report.cursor = Some(cursor);
    Ok(report)
}

/// Whether watermark `b` comes after `a`: numerically if both are numbers, else as text.
fn advances(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => y > x,
        _ => b > a,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn watermarks_compare_as_numbers_or_text() {
        assert!(super::advances("9", "10"));
        assert!(!super::advances("10", "10"));
        assert!(super::advances(
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z"
        ));
    }
}
