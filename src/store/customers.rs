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
            plan: self.plan.clone(),
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
            attributes: self.attributes.0.clone(),
        };
        Ok((self.id, customer))
    }
}

/// Active customers with ids in `$2..=$3`, as one JSON array of rows.
const SQLITE_CUSTOMERS_JSON: &str =
    "SELECT json_group_array(json_array(id, external_id, signup_date, plan,
        monthly_charge, contract_type, contract_end, first_invoice_due, preferred_channel,
        consent_email, consent_sms, consent_phone, consent_post, churned_on, json(attributes)))
    FROM customers WHERE id BETWEEN $2 AND $3 AND signup_date <= $1
        AND (churned_on IS NULL OR churned_on > $1)";

/// A customer row as SQLite's `json_array` writes it (see [`Db::customers_active_page`]).
#[derive(serde::Deserialize)]
struct PackedCustomer(
    i64,
    String,
    NaiveDate,
    String,
    f64,
    String,
    Option<NaiveDate>,
    Option<NaiveDate>,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<NaiveDate>,
    BTreeMap<String, String>,
);

impl PackedCustomer {
    fn into_row(self) -> CustomerRow {
        let PackedCustomer(
            id,
            external_id,
            signup_date,
            plan,
            monthly_charge,
            contract_type,
            contract_end,
            first_invoice_due,
            preferred_channel,
            email,
            sms,
            phone,
            post,
            churned_on,
            attributes,
        ) = self;
        CustomerRow {
            id,
            external_id,
            signup_date,
            plan,
            monthly_charge,
            contract_type,
            contract_end,
            first_invoice_due,
            preferred_channel,
            consent_email: email != 0,
            consent_sms: sms != 0,
            consent_phone: phone != 0,
            consent_post: post != 0,
            churned_on,
            attributes: Json(attributes),
        }
    }
}

const COLUMNS: &str = "id, external_id, signup_date, plan, monthly_charge, contract_type, contract_end, \
    first_invoice_due, preferred_channel, consent_email, consent_sms, consent_phone, consent_post, \
    churned_on, attributes";

impl Db {
    /// Inserts new customers and refreshes known ones, in one transaction. If the same id
    /// appears twice, the later record wins and counts as an update.
    pub async fn upsert_customers(&self, customers: &[Customer]) -> Result<UpsertCounts> {
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
                     consent_post = excluded.consent_post, churned_on = excluded.churned_on, \
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
    /// `after_id`, in id order. Pages keep memory flat however many customers there are.
    pub async fn customers_active_page(
        &self,
        day: NaiveDate,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Customer)>> {
        match self {
            // Rows cross from sqlx's SQLite worker thread one at a time, with a thread
            // wake-up each: each query packs a thousand ids' customers into one JSON row.
            Db::Sqlite(p) => {
                let (Some(min_id), Some(max_id)): (Option<i64>, Option<i64>) =
                    sqlx::query_as("SELECT MIN(id), MAX(id) FROM customers WHERE id > $1")
                        .bind(after_id)
                        .fetch_one(p)
                        .await?
                else {
                    return Ok(Vec::new());
                };
                let want = limit.max(0) as usize;
                let mut out = Vec::with_capacity(want);
                let mut a = min_id;
                while out.len() < want && a <= max_id {
                    let b = a.saturating_add(1023).min(max_id);
                    let (json,): (Option<String>,) = sqlx::query_as(SQLITE_CUSTOMERS_JSON)
                        .bind(day)
                        .bind(a)
                        .bind(b)
                        .fetch_one(p)
                        .await?;
                    if let Some(json) = json {
                        let rows: Vec<PackedCustomer> =
                            serde_json::from_str(&json).map_err(|e| {
                                StoreError::Data(format!("unreadable customers {a}..={b}: {e}"))
                            })?;
                        for r in rows {
                            out.push(r.into_row().into_customer()?);
                        }
                    }
                    a = b.saturating_add(1);
                }
                out.sort_by_key(|(id, _)| *id);
                out.truncate(want);
                Ok(out)
            }
            Db::Postgres(p) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM customers WHERE id > $2 AND signup_date <= $1 AND (churned_on IS NULL OR churned_on > $1) ORDER BY id LIMIT $3"
                );
                let rows: Vec<CustomerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(day)
                    .bind(after_id)
                    .bind(limit)
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
                let mut q = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM customers WHERE id IN ("));
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(") ORDER BY id");
                q.build_query_as().fetch_all(p).await?
            });
            for r in rows {
                out.push(r.into_customer()?);
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Every customer, churned or not (for training sets and exports).
    pub async fn all_customers(&self) -> Result<Vec<(i64, Customer)>> {
        let sql = format!("SELECT {COLUMNS} FROM customers ORDER BY id");
        let rows: Vec<CustomerRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(p).await?);
        rows.into_iter().map(CustomerRow::into_customer).collect()
    }

    /// The map from the business's customer ids to attune's row ids.
    pub async fn customer_id_map(&self) -> Result<HashMap<String, i64>> {
        let rows: Vec<(i64, String)> = on_pool!(self, p => sqlx::query_as("SELECT id, external_id FROM customers").fetch_all(p).await?);
        Ok(rows.into_iter().map(|(id, ext)| (ext, id)).collect())
    }
}
