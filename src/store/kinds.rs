//! The event kinds a database knows (`event_kinds`: code and name): attune's fourteen from
//! the migrations, and each kind a business has declared, added with the next free code
//! the first time a process declares it and kept from then on, so history keeps its kinds
//! whatever the config says later.

use super::{Db, Result, StoreError, on_pool};
use crate::domain::kinds::FIRST_DECLARED_CODE;
use crate::domain::{DeclaredKind, EventKinds, KindCode, Meaning};

/// How many events of a kind are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KindCount {
    pub code: KindCode,
    pub events: i64,
    /// Some event of the kind carried a value other than 0.
    pub valued: bool,
}

impl Db {
    /// The catalog of this database for the kinds `declared`: adds those it has no code for
    /// yet (several processes may do so at once: a code taken meanwhile is retried).
    pub async fn event_kinds(&self, declared: &[DeclaredKind]) -> Result<EventKinds> {
        for _ in 0..20 {
            let stored = self.stored_kinds().await?;
            let missing = EventKinds::missing(&stored, declared);
            if missing.is_empty() {
                let kinds = EventKinds::new(&stored, declared)
                    .map_err(|e| StoreError::Data(e.to_string()))?;
                self.write_meanings(&kinds).await?;
                return Ok(kinds);
            }
            let next = stored
                .iter()
                .map(|(c, _)| *c)
                .max()
                .unwrap_or(0)
                .saturating_add(1)
                .max(FIRST_DECLARED_CODE);
            for (i, name) in missing.into_iter().enumerate() {
                let next = next.saturating_add(i as u16);
                if next >= i16::MAX as u16 {
                    return Err(StoreError::Data(
                        "event_kinds has no free code left (32767 kinds)".into(),
                    ));
                }
                // A code or name taken by another process meanwhile inserts nothing; the
                // next round reads what is there.
                let sql =
                    "INSERT INTO event_kinds (code, name) VALUES ($1, $2) ON CONFLICT DO NOTHING";
                on_pool!(self, p => {
                    sqlx::query(sql).bind(next as i16).bind(name).execute(p).await?;
                });
            }
        }
        Err(StoreError::Data(
            "could not give the declared event kinds codes: other processes kept taking them"
                .into(),
        ))
    }

    /// Writes each declared kind's meaning (none for a kind no longer declared) where the
    /// table says otherwise, so SQL can select kinds by meaning ([`Db::kinds_meaning`]).
    async fn write_meanings(&self, kinds: &EventKinds) -> Result<()> {
        let sql = "SELECT CAST(code AS INTEGER), meaning FROM event_kinds WHERE code >= $1";
        let rows: Vec<(i32, Option<String>)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(FIRST_DECLARED_CODE as i32).fetch_all(p).await?);
        for (code, stored) in rows {
            let Ok(code) = u16::try_from(code) else {
                continue;
            };
            let meaning = kinds.meaning(KindCode(code)).map(|m| m.as_str());
            if stored.as_deref() != meaning {
                let sql = "UPDATE event_kinds SET meaning = $1 WHERE code = $2";
                on_pool!(self, p => {
                    sqlx::query(sql).bind(meaning).bind(code as i16).execute(p).await?;
                });
            }
        }
        Ok(())
    }

    /// SQL that is true when the event kind in `column` of `events` means one of
    /// `meanings`: attune's own kind, or a kind the business declared with that meaning.
    pub(crate) fn kinds_meaning(&self, column: &str, meanings: &[Meaning]) -> String {
        if meanings.is_empty() {
            return "1 = 0".into();
        }
        let list: Vec<String> = meanings
            .iter()
            .map(|m| format!("'{}'", m.as_str()))
            .collect();
        let key = match self {
            Db::Postgres(_) => "name",
            Db::Sqlite(..) => "code",
        };
        format!(
            "{column} IN (SELECT {key} FROM event_kinds WHERE meaning IN ({}))",
            list.join(", ")
        )
    }

    /// SQL for the meaning of the event kind in `column` of `events` (NULL for none).
    pub(crate) fn kind_meaning(&self, column: &str) -> String {
        let key = match self {
            Db::Postgres(_) => "name",
            Db::Sqlite(..) => "code",
        };
        format!("(SELECT k.meaning FROM event_kinds k WHERE k.{key} = {column})")
    }

    /// The kinds stored, none of them declared (names and codes only; writes nothing).
    pub async fn stored_catalog(&self) -> Result<EventKinds> {
        EventKinds::new(&self.stored_kinds().await?, &[])
            .map_err(|e| StoreError::Data(e.to_string()))
    }

    /// The rows of `event_kinds`.
    pub async fn stored_kinds(&self) -> Result<Vec<(u16, String)>> {
        let sql = "SELECT CAST(code AS INTEGER), name FROM event_kinds ORDER BY code";
        let rows: Vec<(i32, String)> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter()
            .map(|(c, n)| {
                u16::try_from(c).map(|c| (c, n)).map_err(|_| {
                    StoreError::Data(format!("event_kinds has code {c}, out of range"))
                })
            })
            .collect()
    }

    /// Events stored of each kind, and whether any carried a value: counted from the
    /// rollups (`attune kinds`; which kinds auto features are derived for).
    pub async fn kind_counts(&self) -> Result<Vec<KindCount>> {
        let sql = "SELECT CAST(kind AS INTEGER), CAST(SUM(n) AS BIGINT), CAST(MAX(ABS(total_milli)) AS BIGINT)
                   FROM activity_daily GROUP BY kind ORDER BY kind";
        let rows: Vec<(i32, i64, i64)> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .filter_map(|(c, n, v)| {
                u16::try_from(c).ok().map(|c| KindCount {
                    code: KindCode(c),
                    events: n,
                    valued: v > 0,
                })
            })
            .collect())
    }

    /// SQL for the name of the event kind in `column` of `events`.
    pub(crate) fn kind_name(&self, column: &str) -> String {
        match self {
            Db::Postgres(_) => column.to_owned(),
            Db::Sqlite(..) => {
                format!("(SELECT k.name FROM event_kinds k WHERE k.code = {column})")
            }
        }
    }
}
