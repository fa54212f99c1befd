//! Who is asking, and may they: passwords (argon2), browser sessions in HTTP-only
//! SameSite cookies kept server-side, a synchronizer CSRF token for every form, and API
//! bearer tokens.
//!
//! Secrets never reach the database: the session cookie and API tokens are stored as
//! their SHA-256, passwords as argon2 hashes. Every state-changing form goes through
//! [`CsrfForm`], which refuses a body whose `csrf` field does not match the session's
//! token, so no handler can forget the check.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::error::{ApiError, PageError, Problem};
use crate::store::{Principal, Role};

pub const SESSION_COOKIE: &str = "attune_session";
/// Holds the login form's CSRF token until the person signs in (double-submit).
pub const LOGIN_COOKIE: &str = "attune_login";
/// The header an API call made with a session cookie carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of every API token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "attune_";

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Whether `password` matches the stored argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that matches no password, verified against when the user is unknown so that
/// signing in takes as long for an unknown name as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

/// The address a request came from, for throttling: the connection's peer, or with
/// `trust_forwarded_for` the last `X-Forwarded-For` entry (the one the reverse proxy in
/// front appended). `unknown` when neither is there (a request made in-process).
pub fn client_address(req: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for
        && let Some(last) = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
        && let Ok(ip) = last.parse::<std::net::IpAddr>()
    {
        return ip.to_string();
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Checks a new password: 8 to 1024 characters.
pub fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 8 {
        return Err(format!("the password has {n} characters; use at least 8"));
    }
    if n > 1024 {
        return Err("the password is longer than 1024 characters".into());
    }
    Ok(())
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// A new API token: (the token, shown once; its hash, stored; its prefix, shown in lists).
pub fn new_api_token() -> (String, String, String) {
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
    let hash = sha256_hex(&token);
    let prefix = token[..TOKEN_PREFIX.len() + 8].to_owned();
    (token, hash, prefix)
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// A `Set-Cookie` value: HTTP-only, SameSite=Lax, `Secure` when configured.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
    secure: bool,
) -> HeaderValue {
    let s = format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A signed-in browser: who, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub id_hash: String,
}

/// The session of the request's cookie, if it is live.
pub async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Problem> {
    let Some(raw) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let id_hash = sha256_hex(&raw);
    Ok(state.ctx.db.session(&id_hash).await?.map(|s| Session {
        principal: s.principal,
        csrf: s.csrf_token,
        id_hash,
    }))
}

/// The signed-in person of a page request; anyone else is sent to the sign-in page.
pub struct PageUser(pub Session);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session_of(state, &parts.headers).await {
            Ok(Some(s)) => Ok(PageUser(s)),
            Ok(None) => Err(to_login(parts)),
            Err(p) => Err(PageError(p).into_response()),
        }
    }
}

fn to_login(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// How an API caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token,
    /// A browser session; unsafe methods must carry its CSRF token in `X-CSRF-Token`.
    Session {
        csrf: String,
    },
}

/// The caller of an API endpoint: a bearer token, or a browser session.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub principal: Principal,
    pub credential: Credential,
}

impl ApiUser {
    pub fn require(&self, role: Role, doing: &str) -> Result<(), ApiError> {
        require(&self.principal, role, doing).map_err(ApiError)
    }
}

/// Refuses a principal whose role is below `role`, saying what they tried.
pub fn require(p: &Principal, role: Role, doing: &str) -> Result<(), Problem> {
    if p.role >= role {
        return Ok(());
    }
    Err(Problem::forbidden(format!(
        "{} has the {} role, which cannot {doing}; it needs the {} role (an admin can change it on the users page)",
        p.name, p.role, role
    )))
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    Problem::unauthenticated(
                        "the Authorization header must be `Bearer TOKEN`, with a token from `attune users token NAME`",
                    )
                })?;
            let row = state
                .ctx
                .db
                .token(&sha256_hex(token))
                .await?
                .ok_or_else(|| {
                    Problem::unauthenticated(
                        "the bearer token is not valid: unknown, revoked, or its user is disabled",
                    )
                })?;
            // Record use at most once a minute: reads stay reads under load.
            if row
                .last_used_at
                .is_none_or(|t| crate::store::now_secs() - t >= 60)
            {
                state.ctx.db.touch_token(row.id).await?;
            }
            return Ok(ApiUser {
                principal: row.principal,
                credential: Credential::Token,
            });
        }
        match session_of(state, &parts.headers).await? {
            Some(s) => {
                if !parts.method.is_safe() {
                    let sent = parts
                        .headers
                        .get(CSRF_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if !same_secret(sent, &s.csrf) {
                        return Err(ApiError(Problem::new(
                            StatusCode::FORBIDDEN,
                            "csrf_token_invalid",
                            "a call made with a session cookie must send the session's CSRF token in the X-CSRF-Token header",
                        )));
                    }
                }
                Ok(ApiUser {
                    principal: s.principal,
                    credential: Credential::Session { csrf: s.csrf },
                })
            }
            None => Err(ApiError(Problem::unauthenticated(
                "sign in, or send `Authorization: Bearer TOKEN` with a token from `attune users token NAME`",
            ))),
        }
    }
}

/// The body of a form posted by a signed-in person, after its CSRF token was checked
/// against the session's. Fields are in the order sent.
pub struct CsrfForm {
    pub session: Session,
    pub fields: Vec<(String, String)>,
}

impl CsrfForm {
    /// The first value of `name`, trimmed; None when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        field(&self.fields, name)
    }
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Reads a body within the configured limit, answering 413 past it.
pub async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(state.ctx.config.http.body_limit_bytes)
        } else {
            Problem::bad_request("unreadable_body", format!("could not read the body: {e}"))
        }
    })
}

pub fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, Problem> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        Problem::bad_request(
            "invalid_form",
            format!("the form is not URL-encoded fields: {e}"),
        )
    })
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let session = match session_of(state, req.headers()).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(PageError(Problem::unauthenticated(
                    "you are not signed in (or your session ended); sign in and try again",
                ))
                .into_response());
            }
            Err(p) => return Err(PageError(p).into_response()),
        };
        let bytes = body_bytes(req, state)
            .await
            .map_err(|p| PageError(p).into_response())?;
        let fields = parse_form(&bytes).map_err(|p| PageError(p).into_response())?;
        let sent = field(&fields, "csrf").unwrap_or_default();
        if !same_secret(sent, &session.csrf) {
            tracing::warn!(user = %session.principal.name, "refused a form without a valid CSRF token");
            return Err(PageError(Problem::csrf()).into_response());
        }
        Ok(CsrfForm { session, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("anything", decoy_hash()));
    }

    /// Signing in as an unknown name verifies one hash exactly as costly as a user's
    /// (same algorithm, version and parameters), so the answer takes as long either way.
    #[test]
    fn the_decoy_costs_what_a_users_hash_costs() {
        let params = |h: &str| {
            let h = PasswordHash::new(h).unwrap();
            (h.algorithm.to_string(), h.version, h.params.to_string())
        };
        let user = hash_password("correct horse").unwrap();
        assert_eq!(params(decoy_hash()), params(&user));
    }

    #[test]
    fn tokens_are_random_and_stored_as_hashes() {
        let (a, ha, pa) = new_api_token();
        let (b, _, _) = new_api_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(ha, sha256_hex(&a));
        assert!(a.starts_with(&pa));
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret(&a, &b));
        assert!(!same_secret("ab", "abc"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; attune_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "attune"), None);
        let c = set_cookie("n", "v", "/", 60, true);
        assert_eq!(
            c.to_str().unwrap(),
            "n=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn passwords_have_a_minimum_length() {
        assert!(
            validate_password("short")
                .unwrap_err()
                .contains("at least 8")
        );
        assert!(validate_password("long enough").is_ok());
    }
}
