//! People who use the review desk, their browser sessions and their API tokens.
//!
//! Secrets never reach the database: passwords arrive here already hashed (argon2, by the
//! caller), and session cookies and API tokens are looked up by their SHA-256. Every change
//! an admin makes to a user is written with its audit entry in one transaction.

use std::fmt;
use std::str::FromStr;

use sqlx::types::Json;

use super::{Db, Result, StoreError, now_secs, on_pool};

/// Writes one audit entry inside the open transaction `$tx`.
macro_rules! audit_in_tx {
    ($tx:expr, $now:expr, $actor:expr, $action:expr, $subject:expr, $detail:expr) => {{
        let detail: serde_json::Value = $detail;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($now)
        .bind($actor)
        .bind($action)
        .bind($subject)
        .bind(Json(&detail))
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use audit_in_tx;

/// What a user may do. Each role can do everything the one before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page and endpoint, changes nothing.
    Viewer,
    /// Also approves, rejects, snoozes and edits nudges.
    Reviewer,
    /// Also manages users and their tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Reviewer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    pub fn can_decide(self) -> bool {
        self >= Role::Reviewer
    }

    pub fn can_manage_users(self) -> bool {
        self == Role::Admin
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(raw: &str) -> std::result::Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "reviewer" => Ok(Role::Reviewer),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role {raw:?}; expected one of: viewer, reviewer, admin"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a user name: 1 to 64 characters of letters, digits, `.`, `_`, `-` and `@`.
pub fn validate_user_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(format!(
            "user name {name:?} must be 1 to 64 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "user name {name:?} has {c:?}; use letters, digits, '.', '_', '-' and '@'"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRow {
    /// The stored role; an unknown one (edited by hand) counts as viewer.
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::Viewer)
    }
}

/// Who is asking, as established by a session cookie or an API token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
}

/// A live browser session and its synchronizer token.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub principal: Principal,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// An API token's owner, and when the token was last used.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub principal: Principal,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: i64,
    pub user_name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

type PrincipalRow = (i64, String, String);

fn principal((user_id, name, role): PrincipalRow) -> Principal {
    Principal {
        user_id,
        name,
        role: role.parse().unwrap_or(Role::Viewer),
    }
}

impl Db {
    /// Adds a user. A name already taken is an error that says so.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        actor: &str,
    ) -> Result<i64> {
        validate_user_name(name).map_err(StoreError::Data)?;
        let now = now_secs();
        let id = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Err(StoreError::Data(format!("a user named {name:?} already exists")));
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO users (name, role, password_hash, disabled, created_at, updated_at)
                 VALUES ($1, $2, $3, false, $4, $4) RETURNING id",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            audit_in_tx!(tx, now, actor, "user.created", format!("user:{name}"),
                serde_json::json!({"before": null, "after": {"name": name, "role": role.as_str()}}));
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let sql =
            "SELECT id, name, role, disabled, created_at, updated_at FROM users ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let sql =
            "SELECT id, name, role, disabled, created_at, updated_at FROM users WHERE name = $1";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await?))
    }

    /// The user and their password hash, for signing in.
    /// When `key` (`user:NAME` or `addr:IP`) is locked until, if it is locked now.
    pub async fn login_locked_until(&self, key: &str) -> Result<Option<i64>> {
        let sql = "SELECT locked_until FROM login_failures WHERE key = $1 AND locked_until > $2";
        let row: Option<(Option<i64>,)> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(key).bind(now_secs()).fetch_optional(p).await?);
        Ok(row.and_then(|(t,)| t))
    }

    /// Counts a failed sign-in for `key` within a window of `window_secs`; the failure
    /// that reaches `max` locks the key for `lock_secs` and starts the count over.
    /// Returns when the key is locked until, if this failure locked it.
    pub async fn record_login_failure(
        &self,
        key: &str,
        max: u32,
        window_secs: i64,
        lock_secs: i64,
    ) -> Result<Option<i64>> {
        let _turn = self.write_turn().await;
        let now = now_secs();
        let sql = "INSERT INTO login_failures (key, failures, window_start) VALUES ($1, 1, $2)
                   ON CONFLICT (key) DO UPDATE SET
                     failures = CASE WHEN login_failures.window_start <= $3 THEN 1 ELSE login_failures.failures + 1 END,
                     window_start = CASE WHEN login_failures.window_start <= $3 THEN $2 ELSE login_failures.window_start END
                   RETURNING failures";
        let (failures,): (i64,) = on_pool!(self, p => sqlx::query_as(sql)
            .bind(key).bind(now).bind(now - window_secs).fetch_one(p).await?);
        if failures < max as i64 {
            return Ok(None);
        }
        let until = now + lock_secs;
        on_pool!(self, p => { sqlx::query("UPDATE login_failures SET locked_until = $1, failures = 0, window_start = $2 WHERE key = $3")
            .bind(until).bind(now).bind(key).execute(p).await?; });
        Ok(Some(until))
    }

    /// Forgets `key`'s failures and lifts its lock; true if there was anything to forget.
    pub async fn clear_login_failures(&self, key: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let n = on_pool!(self, p => sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Keys locked now, with when each lock ends.
    pub async fn login_locks(&self) -> Result<Vec<(String, i64)>> {
        let sql =
            "SELECT key, locked_until FROM login_failures WHERE locked_until > $1 ORDER BY key";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(now_secs()).fetch_all(p).await?))
    }

    pub async fn user_credentials(&self, name: &str) -> Result<Option<(UserRow, String)>> {
        let sql = "SELECT id, name, role, disabled, created_at, updated_at, password_hash FROM users WHERE name = $1";
        let row: Option<(i64, String, String, bool, i64, i64, String)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await?);
        Ok(
            row.map(|(id, name, role, disabled, created_at, updated_at, hash)| {
                (
                    UserRow {
                        id,
                        name,
                        role,
                        disabled,
                        created_at,
                        updated_at,
                    },
                    hash,
                )
            }),
        )
    }

    pub async fn set_password(&self, name: &str, password_hash: &str, actor: &str) -> Result<()> {
        let now = now_secs();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3")
                .bind(password_hash)
                .bind(now)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::Data(format!("no user named {name:?}")));
            }
            // A new password ends every session signed in with the old one.
            sqlx::query("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            audit_in_tx!(tx, now, actor, "user.password_changed", format!("user:{name}"),
                serde_json::json!({"before": null, "after": null}));
            tx.commit().await?;
        });
        Ok(())
    }

    /// Changes a user's role or disables them (which also ends their sessions and revokes
    /// their tokens). Returns the user as it was before, or None if there is no such user.
    pub async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        disabled: Option<bool>,
        actor: &str,
    ) -> Result<Option<UserRow>> {
        let now = now_secs();
        let before = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let before: Option<UserRow> = sqlx::query_as(
                "SELECT id, name, role, disabled, created_at, updated_at FROM users WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(before) = before else {
                return Ok(None);
            };
            let role_after = role.map(|r| r.as_str().to_owned()).unwrap_or_else(|| before.role.clone());
            let disabled_after = disabled.unwrap_or(before.disabled);
            sqlx::query("UPDATE users SET role = $1, disabled = $2, updated_at = $3 WHERE id = $4")
                .bind(&role_after)
                .bind(disabled_after)
                .bind(now)
                .bind(before.id)
                .execute(&mut *tx)
                .await?;
            if disabled_after && !before.disabled {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(before.id).execute(&mut *tx).await?;
                sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(now).bind(before.id).execute(&mut *tx).await?;
            }
            audit_in_tx!(tx, now, actor, "user.updated", format!("user:{name}"),
                serde_json::json!({
                    "before": {"role": before.role, "disabled": before.disabled},
                    "after": {"role": role_after, "disabled": disabled_after},
                }));
            tx.commit().await?;
            before
        });
        Ok(Some(before))
    }

    pub async fn create_session(
        &self,
        user_id: i64,
        id_hash: &str,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        let now = now_secs();
        on_pool!(self, p => {
            // Expired sessions are cleared whenever someone signs in.
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(p).await?;
            sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at)
                 VALUES ($1, $2, $3, $4, $5, $4)",
            )
            .bind(id_hash)
            .bind(user_id)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// The live session with this cookie hash, if it has not expired and its user is enabled.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        let sql = "SELECT u.id, u.name, u.role, s.csrf_token, s.expires_at
                   FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.id_hash = $1 AND s.expires_at > $2 AND NOT u.disabled";
        let row: Option<(i64, String, String, String, i64)> = on_pool!(self, p =>
            sqlx::query_as(sql).bind(id_hash).bind(now_secs()).fetch_optional(p).await?);
        Ok(
            row.map(|(id, name, role, csrf_token, expires_at)| SessionRow {
                principal: principal((id, name, role)),
                csrf_token,
                expires_at,
            }),
        )
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(p).await?;
        });
        Ok(())
    }

    /// Stores a new API token's hash for `user_name`; the token itself is never stored.
    pub async fn create_api_token(
        &self,
        user_name: &str,
        token_hash: &str,
        prefix: &str,
        actor: &str,
    ) -> Result<i64> {
        let now = now_secs();
        let id = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let user: Option<(i64, bool)> = sqlx::query_as("SELECT id, disabled FROM users WHERE name = $1")
                .bind(user_name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((user_id, disabled)) = user else {
                return Err(StoreError::Data(format!("no user named {user_name:?}; add one with `attune users add`")));
            };
            if disabled {
                return Err(StoreError::Data(format!("user {user_name:?} is disabled")));
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO api_tokens (user_id, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(user_id)
            .bind(token_hash)
            .bind(prefix)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            audit_in_tx!(tx, now, actor, "token.created", format!("user:{user_name}"),
                serde_json::json!({"before": null, "after": {"token": prefix}}));
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    /// The owner of a live token with this hash.
    pub async fn token(&self, token_hash: &str) -> Result<Option<TokenRow>> {
        let sql = "SELECT t.id, t.last_used_at, u.id, u.name, u.role
                   FROM api_tokens t JOIN users u ON u.id = t.user_id
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND NOT u.disabled";
        let row: Option<(i64, Option<i64>, i64, String, String)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(token_hash).fetch_optional(p).await?);
        Ok(row.map(|(id, last_used_at, uid, name, role)| TokenRow {
            id,
            principal: principal((uid, name, role)),
            last_used_at,
        }))
    }

    pub async fn touch_token(&self, id: i64) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now_secs()).bind(id).execute(p).await?;
        });
        Ok(())
    }

    pub async fn api_tokens(&self) -> Result<Vec<TokenInfo>> {
        let sql =
            "SELECT t.id, u.name AS user_name, t.prefix, t.created_at, t.last_used_at, t.revoked_at
                   FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id";
        Ok(on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Revokes a token by id. Returns false if there is no such live token.
    pub async fn revoke_api_token(&self, id: i64, actor: &str) -> Result<bool> {
        let now = now_secs();
        let done = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let row: Option<(String, String)> = sqlx::query_as(
                "SELECT t.prefix, u.name FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.id = $1 AND t.revoked_at IS NULL",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => false,
                Some((prefix, user)) => {
                    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
                        .bind(now).bind(id).execute(&mut *tx).await?;
                    audit_in_tx!(tx, now, actor, "token.revoked", format!("user:{user}"),
                        serde_json::json!({"before": {"token": prefix}, "after": null}));
                    tx.commit().await?;
                    true
                }
            }
        });
        Ok(done)
    }
}
