//! Signing in (throttled per name and per address, with lockout) and out.

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage {
    csrf: String,
    next: String,
    name: String,
    error: Option<String>,
}

/// The sign-in form, with a fresh token in both the form and a cookie (double submit:
/// there is no session yet to tie it to).
pub(super) fn login_form(
    state: &AppState,
    status: StatusCode,
    next: String,
    name: String,
    error: Option<String>,
) -> PageResult {
    let token = random_hex(16);
    let page = LoginPage {
        csrf: token.clone(),
        next,
        name,
        error,
    };
    let mut r = render(&page)?;
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &token,
            "/login",
            3600,
            state.ctx.config.http.cookie_secure,
        ),
    );
    Ok(r)
}

pub(super) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["next"]).unwrap_or_default();
    let next = safe_next(query::get(&pairs, "next"));
    if session_of(&state, &headers).await?.is_some() {
        return Ok(see_other(&next));
    }
    login_form(&state, StatusCode::OK, next, String::new(), None)
}

pub(super) async fn login(State(state): State<AppState>, req: Request) -> PageResult {
    let headers = req.headers().clone();
    let address = auth::client_address(&req, state.ctx.config.http.trust_forwarded_for);
    let bytes = body_bytes(req, &state).await?;
    let fields = parse_form(&bytes)?;
    let sent = field(&fields, "csrf").unwrap_or_default();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(sent, &expected) {
        return Err(Problem::csrf().into());
    }
    let next = safe_next(field(&fields, "next"));
    let name = field(&fields, "name").unwrap_or_default().to_owned();
    let password = fields
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Throttled per name (a user's or not: the answer never tells which) and per address;
    // a locked name or address is refused before any password is checked.
    let cfg = &state.ctx.config.http;
    let keys = [
        (format!("user:{name}"), cfg.login_max_failures),
        (
            format!("addr:{address}"),
            cfg.login_max_failures_per_address,
        ),
    ];
    for (key, _) in &keys {
        if let Some(until) = state.ctx.db.login_locked_until(key).await? {
            tracing::info!(name = %name, %address, key = %key, "sign-in refused: locked");
            return locked_form(&state, next, name, until);
        }
    }
    let creds = state.ctx.db.user_credentials(&name).await?;
    let hash = creds
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| auth::decoy_hash().to_owned());
    // argon2 takes tens of milliseconds of CPU: off the async threads.
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match creds {
        Some((user, _)) if matches && !user.disabled => user,
        _ => {
            tracing::info!(name = %name, %address, "sign-in refused");
            let mut locked = None;
            for (key, max) in &keys {
                let until = state
                    .ctx
                    .db
                    .record_login_failure(
                        key,
                        *max,
                        cfg.login_window.as_secs() as i64,
                        cfg.login_lockout.as_secs() as i64,
                    )
                    .await?;
                if let Some(until) = until {
                    tracing::warn!(key = %key, %address, until, failures = max, "sign-in locked after repeated failures");
                    let detail = serde_json::json!({
                        "failures": max,
                        "window_minutes": cfg.login_window.as_secs() / 60,
                        "locked_until": until,
                        "address": address,
                    });
                    state
                        .ctx
                        .db
                        .audit("system", "login.locked", key, &detail)
                        .await?;
                    locked = Some(until);
                }
            }
            if let Some(until) = locked {
                return locked_form(&state, next, name, until);
            }
            return login_form(
                &state,
                StatusCode::UNAUTHORIZED,
                next,
                name,
                Some("That name and password do not match an active user.".into()),
            );
        }
    };
    let raw = random_hex(32);
    let max_age = state.ctx.config.http.session.as_secs() as i64;
    state
        .ctx
        .db
        .create_session(
            user.id,
            &sha256_hex(&raw),
            &random_hex(32),
            crate::store::now_secs() + max_age,
        )
        .await?;
    state
        .ctx
        .db
        .clear_login_failures(&format!("user:{name}"))
        .await?;
    tracing::info!(user = %user.name, "signed in");
    let secure = state.ctx.config.http.cookie_secure;
    let mut r = see_other(&next);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &raw, "/", max_age, secure),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/login", 0, secure),
    );
    Ok(r)
}

/// The sign-in form answered 429 while a name or address is locked, saying until when
/// and how to lift it, with `Retry-After`.
pub(super) fn locked_form(state: &AppState, next: String, name: String, until: i64) -> PageResult {
    let now = crate::store::now_secs();
    let minutes = ((until - now).max(0) + 59) / 60;
    let at = chrono::DateTime::from_timestamp(until, 0)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default();
    let mut r = login_form(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        next,
        name,
        Some(format!(
            "Too many failed sign-ins: signing in with this name or from this address is paused until {at} (about {minutes} min). An admin can lift it sooner with `attune users unlock NAME`."
        )),
    )?;
    if let Ok(v) = header::HeaderValue::from_str(&(until - now).max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(r)
}

pub(super) async fn logout(State(state): State<AppState>, form: CsrfForm) -> PageResult {
    state.ctx.db.delete_session(&form.session.id_hash).await?;
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            "",
            "/",
            0,
            state.ctx.config.http.cookie_secure,
        ),
    );
    Ok(r)
}
