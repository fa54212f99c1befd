//! Customers: batched upserts keyed by the business's own id, and reads for scoring.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use sqlx::types::Json;

use super::{BATCH_ROWS, Db, Result, StoreError, now_secs, on_pool};
use crate::domain::{Consent, Customer, CustomerId};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpsertCounts {
    /// Customers attune did not know before.
    pub inserted: u64,
    /// Customers already known, whose record was refreshed from the file.
    pub updated: u64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: i64,
    pub external_id: String,
    pub signup_date: NaiveDate,
    pub plan: String,
    pub monthly_charge: f64,
    pub contract_type: String,
    pub contract_end: Option<NaiveDate>,
    pub first_invoice_due: Option<NaiveDate>,
    pub preferred_channel: String,
    pub consent_email: bool,
    pub consent_sms: bool,
    pub consent_phone: bool,
    pub consent_post: bool,
    pub churned_on: Option<NaiveDate>,
    pub attributes: Json<BTreeMap<String, String>>,
}

impl CustomerRow {
    /// Checks a stored row against the domain's rules: a row someone edited by hand into
    /// an invalid state is reported by id instead of being scored with a guess.
    pub fn into_customer(self) -> Result<(i64, Customer)> {
        let bad = |what: &str, e: crate::domain::InvalidValue| {
            StoreError::Data(format!(
                "customer row {} ({}): {what}: {e}",
                self.id, self.external_id
            ))
        };
        let customer = Customer {
            external_id: CustomerId::parse(&self.external_id).map_err(|e| bad("external_id", e))?,
            signup_date: self.signup_date,
            plan: self.plan,
            monthly_charge: self.monthly_charge,
            contract_type: self
                .contract_type
                .parse()
                .map_err(|e| bad("contract_type", e))?,
            contract_end: self.contract_end,
            first_invoice_due: self.first_invoice_due,
            preferred_channel: self
                .preferred_channel
                .parse()
                .map_err(|e| bad("preferred_channel", e))?,
            consent: Consent {
                email: self.consent_email,
                sms: self.consent_sms,
                phone: self.consent_phone,
                post: self.consent_post,
            },
            churned_on: self.churned_on,
            attributes: self.attributes.0,
        };
        Ok((self.id, customer))
    }
}

/// Active customers on day `?1` with ids above `?2`, `?3` of them, in id order.
const SQLITE_ACTIVE_PAGE: &str = "SELECT id, external_id, signup_date, plan, monthly_charge,
        contract_type, contract_end, first_invoice_due, preferred_channel, consent_email,
        consent_sms, consent_phone, consent_post, churned_on, attributes
    FROM customers WHERE id > ?2 AND id <= ?4 AND signup_date <= ?1 AND (churned_on IS NULL OR churned_on > ?1)
    ORDER BY id LIMIT ?3";

/// The customer in the first 15 columns of the row a statement is on, in the order of
/// [`SQLITE_ACTIVE_PAGE`]; a value that does not read is an error
/// naming the customer and the column.
pub(super) fn raw_customer(stmt: &super::raw::Stmt<'_>) -> Result<CustomerRow> {
    let id = stmt.i64(0);
    let bad =
        |column: &str, why: &str| StoreError::Data(format!("customer row {id}: {column}: {why}"));
    let text = |i: i32, column: &str| -> Result<String> {
        stmt.text(i)
            .map_err(|e| bad(column, &e.to_string()))?
            .map(str::to_owned)
            .ok_or_else(|| bad(column, "is NULL"))
    };
    let date = |i: i32, column: &str| -> Result<Option<NaiveDate>> {
        match stmt.text(i).map_err(|e| bad(column, &e.to_string()))? {
            None => Ok(None),
            Some(s) => iso_date(s)
                .or_else(|| s.parse::<NaiveDate>().ok())
                .map(Some)
                .ok_or_else(|| bad(column, &format!("{s:?} is not a date (YYYY-MM-DD)"))),
        }
    };
    let attributes = match stmt
        .text(14)
        .map_err(|e| bad("attributes", &e.to_string()))?
    {
        None | Some("{}") => BTreeMap::new(),
        Some(json) => serde_json::from_str(json).map_err(|e| bad("attributes", &e.to_string()))?,
    };
    Ok(CustomerRow {
        id,
        external_id: text(1, "external_id")?,
        signup_date: date(2, "signup_date")?.ok_or_else(|| bad("signup_date", "is NULL"))?,
        plan: text(3, "plan")?,
        monthly_charge: stmt.f64(4),
        contract_type: text(5, "contract_type")?,
        contract_end: date(6, "contract_end")?,
        first_invoice_due: date(7, "first_invoice_due")?,
        preferred_channel: text(8, "preferred_channel")?,
        consent_email: stmt.i64(9) != 0,
        consent_sms: stmt.i64(10) != 0,
        consent_phone: stmt.i64(11) != 0,
        consent_post: stmt.i64(12) != 0,
        churned_on: date(13, "churned_on")?,
        attributes: Json(attributes),
    })
}

/// A date written `YYYY-MM-DD`, as attune stores them, read without chrono's general
/// parser (three per customer in every scan); anything else is left to that parser.
fn iso_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// Every customer `stmt` (bound, selecting [`COLUMNS`]) steps to; `expected` rows are
/// room made first (up to 100,000).
fn read_customers(stmt: &mut super::raw::Stmt<'_>, expected: i64) -> Result<Vec<(i64, Customer)>> {
    let mut out = Vec::with_capacity(expected.clamp(0, 100_000) as usize);
    while stmt.step()? {
        out.push(raw_customer(stmt)?.into_customer()?);
    }
    Ok(out)
}

const COLUMNS: &str = "id, external_id, signup_date, plan, monthly_charge, contract_type, contract_end, \
    first_invoice_due, preferred_channel, consent_email, consent_sms, consent_phone, consent_post, \
    churned_on, attributes";

impl Db {
    /// Inserts new customers and refreshes known ones, in one transaction. If the same id
    /// appears twice, the later record wins and counts as an update.
    pub async fn upsert_customers(&self, customers: &[Customer]) -> Result<UpsertCounts> {
        let _turn = self.bulk_turn().await;
        let now = now_secs();
        // Last record per id wins; a statement may not touch one row twice.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(customers.len());
        for (i, c) in customers.iter().enumerate() {
            last.insert(c.external_id.as_str(), i);
        }
        let repeats = (customers.len() - last.len()) as u64;
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let unique: Vec<&Customer> = order.into_iter().map(|i| &customers[i]).collect();

        let mut counts = UpsertCounts {
            inserted: 0,
            updated: repeats,
        };
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in unique.chunks(BATCH_ROWS) {
                let mut q = sqlx::QueryBuilder::new("SELECT external_id FROM customers WHERE external_id IN (");
                let mut sep = q.separated(", ");
                for c in chunk {
                    sep.push_bind(c.external_id.as_str());
                }
                q.push(")");
                let known: Vec<(String,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                let known: HashSet<String> = known.into_iter().map(|(s,)| s).collect();
                counts.updated += known.len() as u64;
                counts.inserted += (chunk.len() - known.len()) as u64;

                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO customers (external_id, signup_date, plan, monthly_charge, contract_type, \
                     contract_end, first_invoice_due, preferred_channel, consent_email, consent_sms, \
                     consent_phone, consent_post, churned_on, attributes, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, c| {
                    b.push_bind(c.external_id.as_str())
                        .push_bind(c.signup_date)
                        .push_bind(c.plan.as_str())
                        .push_bind(c.monthly_charge)
                        .push_bind(c.contract_type.as_str())
                        .push_bind(c.contract_end)
                        .push_bind(c.first_invoice_due)
                        .push_bind(c.preferred_channel.as_str())
                        .push_bind(c.consent.email)
                        .push_bind(c.consent.sms)
                        .push_bind(c.consent.phone)
                        .push_bind(c.consent.post)
                        .push_bind(c.churned_on)
                        .push_bind(Json(&c.attributes))
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (external_id) DO UPDATE SET signup_date = excluded.signup_date, \
                     plan = excluded.plan, monthly_charge = excluded.monthly_charge, \
                     contract_type = excluded.contract_type, contract_end = excluded.contract_end, \
                     first_invoice_due = excluded.first_invoice_due, \
                     preferred_channel = excluded.preferred_channel, consent_email = excluded.consent_email, \
                     consent_sms = excluded.consent_sms, consent_phone = excluded.consent_phone, \
                     consent_post = excluded.consent_post, \
                     churned_on = COALESCE(excluded.churned_on, customers.churned_on), \
                     attributes = excluded.attributes, updated_at = excluded.updated_at",
                );
                q.build().execute(&mut *tx).await?;
                // A changed record can change a score: mark the customers for re-scoring.
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO activity_changes (customer_id, changed_at) SELECT id, ",
                );
                q.push_bind(now).push(" FROM customers WHERE external_id IN (");
                let mut sep = q.separated(", ");
                for c in chunk {
                    sep.push_bind(c.external_id.as_str());
                }
                q.push(") ON CONFLICT (customer_id) DO UPDATE SET changed_at = excluded.changed_at");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(counts)
    }

    /// Customers who had signed up by `day` and had not left before it.
    pub async fn customers_active_on(&self, day: NaiveDate) -> Result<Vec<(i64, Customer)>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM customers WHERE signup_date <= $1 AND (churned_on IS NULL OR churned_on > $1) ORDER BY id"
        );
        let rows: Vec<CustomerRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(day).fetch_all(p).await?);
        rows.into_iter().map(CustomerRow::into_customer).collect()
    }

    /// One page of [`Db::customers_active_on`]: up to `limit` customers with ids above
    /// `after_id` and at most `upto_id`, in id order. Pages keep memory flat however many
    /// customers there are.
    pub async fn customers_active_page(
        &self,
        day: NaiveDate,
        after_id: i64,
        upto_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Customer)>> {
        match self {
            // Rows are stepped through SQLite's own API (`raw`): sqlx would hand each one
            // across threads with a wake-up.
            Db::Sqlite(p, ..) => {
                let day = day.to_string();
                super::raw::with_scan(p, move |raw| {
                    let mut stmt = raw.prepare(SQLITE_ACTIVE_PAGE)?;
                    stmt.bind_text(1, &day)?;
                    stmt.bind_i64(2, after_id)?;
                    stmt.bind_i64(3, limit)?;
                    stmt.bind_i64(4, upto_id)?;
                    read_customers(&mut stmt, limit)
                })
                .await
            }
            Db::Postgres(p) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM customers WHERE id > $2 AND id <= $4 AND signup_date <= $1 AND (churned_on IS NULL OR churned_on > $1) ORDER BY id LIMIT $3"
                );
                let rows: Vec<CustomerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(day)
                    .bind(after_id)
                    .bind(limit)
                    .bind(upto_id)
                    .fetch_all(p)
                    .await?;
                rows.into_iter().map(CustomerRow::into_customer).collect()
            }
        }
    }

    /// The customers with these ids (those that exist), in id order.
    pub async fn customers_with_ids(&self, ids: &[i64]) -> Result<Vec<(i64, Customer)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_ROWS) {
            let rows: Vec<CustomerRow> = on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM customers WHERE id IN "));
                super::push_ids(&mut q, chunk);
                q.push(" ORDER BY id");
                q.build_query_as().fetch_all(p).await?
            });
            for r in rows {
                out.push(r.into_customer()?);
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Every customer, churned or not, a page at a time: up to `limit` customers with ids
    /// above `after_id`, in id order (training from history reads a page with its activity).
    pub async fn customers_page(&self, after_id: i64, limit: i64) -> Result<Vec<(i64, Customer)>> {
        let sql = format!("SELECT {COLUMNS} FROM customers WHERE id > $1 ORDER BY id LIMIT $2");
        if let Db::Sqlite(p, ..) = self {
            // Stepped through SQLite's own API (`raw`): sqlx copied every value of a
            // million rows and handed each row across threads.
            return super::raw::with_scan(p, move |raw| {
                let mut stmt = raw.prepare(&sql)?;
                stmt.bind_i64(1, after_id)?;
                stmt.bind_i64(2, limit)?;
                read_customers(&mut stmt, limit)
            })
            .await;
        }
        let rows: Vec<CustomerRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(after_id).bind(limit).fetch_all(p).await?);
        rows.into_iter().map(CustomerRow::into_customer).collect()
    }

    /// The map from the business's customer ids to attune's row ids.
    pub async fn customer_id_map(&self) -> Result<super::IdMap> {
        const SQL: &str = "SELECT id, external_id FROM customers";
        match self {
            // Stepped through SQLite's own API: sqlx hands each of a million rows across
            // threads one at a time.
            Db::Sqlite(p, ..) => {
                super::raw::with_scan(p, |raw| {
                    let mut stmt = raw.prepare(SQL)?;
                    let mut map = super::IdMap::default();
                    while stmt.step()? {
                        map.insert(stmt.string(1)?, stmt.i64(0));
                    }
                    Ok(map)
                })
                .await
            }
            Db::Postgres(p) => {
                let rows: Vec<(i64, String)> = sqlx::query_as(SQL).fetch_all(p).await?;
                Ok(rows.into_iter().map(|(id, ext)| (ext, id)).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_read_as_chrono_reads_them() {
        for s in [
            "2026-11-24",
            "2024-02-29",
            "2023-02-29",
            "0001-01-01",
            "9999-12-31",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "2026/11/24",
            "+2026-11-24",
            "2026-11-2x",
            "",
        ] {
            let chrono = s.parse::<NaiveDate>().ok();
            assert_eq!(iso_date(s).or(chrono), chrono, "{s}");
            if s.len() == 10 && chrono.is_some() {
                assert_eq!(iso_date(s), chrono, "{s}");
            }
        }
    }
}
