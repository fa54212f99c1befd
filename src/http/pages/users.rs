//! Users and API tokens (admins only).

use super::*;

pub(super) struct UserView {
    name: String,
    role: String,
    disabled: bool,
    since: String,
}

pub(super) struct TokenView {
    id: i64,
    prefix: String,
    user: String,
    created: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
pub(super) struct UsersPage {
    nav: Nav,
    notice: Option<String>,
    users: Vec<UserView>,
    roles: Vec<&'static str>,
    tokens: Vec<TokenView>,
}

pub(super) async fn users(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    require(&s.principal, Role::Admin, "manage users")?;
    let pairs = query::pairs(raw.as_deref(), &["done"])?;
    let notice = query::get(&pairs, "done").and_then(|d| match d {
        "added" => Some("The user was added.".to_owned()),
        "updated" => Some("The user was updated.".to_owned()),
        "revoked" => Some("The token was revoked.".to_owned()),
        _ => None,
    });
    let users = state.ctx.db.users().await?;
    let tokens = state.ctx.db.api_tokens().await?;
    let page = UsersPage {
        nav: nav(&s, "users"),
        notice,
        users: users
            .iter()
            .map(|u| UserView {
                name: u.name.clone(),
                role: u.role.clone(),
                disabled: u.disabled,
                since: views::day(u.created_at),
            })
            .collect(),
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        tokens: tokens
            .iter()
            .map(|t| TokenView {
                id: t.id,
                prefix: t.prefix.clone(),
                user: t.user_name.clone(),
                created: views::day(t.created_at),
                last_used: views::time_opt(t.last_used_at),
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
    };
    render(&page)
}

pub(super) fn role_field(raw: Option<&str>) -> Result<Role, Problem> {
    raw.unwrap_or_default()
        .parse::<Role>()
        .map_err(|e| Problem::unprocessable(format!("role: {e}")))
}

pub(super) async fn add_user(State(state): State<AppState>, form: CsrfForm) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Admin, "manage users")?;
    let name = form.get("name").unwrap_or_default().to_owned();
    crate::store::validate_user_name(&name)
        .map_err(|e| Problem::unprocessable(format!("name: {e}")))?;
    let role = role_field(form.get("role"))?;
    let password = form
        .fields
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    auth::validate_password(&password)
        .map_err(|e| Problem::unprocessable(format!("password: {e}")))?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))??;
    state
        .ctx
        .db
        .create_user(&name, role, &hash, &s.principal.name)
        .await?;
    Ok(see_other("/users?done=added"))
}

pub(super) async fn update_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Admin, "manage users")?;
    let role = role_field(form.get("role"))?;
    let disabled = match form.get("state") {
        Some("active") | None => false,
        Some("disabled") => true,
        Some(other) => {
            return Err(Problem::unprocessable(format!(
                "state: {other:?} is not a state; use active or disabled"
            ))
            .into());
        }
    };
    if name == s.principal.name && (role != Role::Admin || disabled) {
        return Err(Problem::unprocessable(
            "you cannot take away your own admin role or disable yourself; ask another admin",
        )
        .into());
    }
    match state
        .ctx
        .db
        .update_user(&name, Some(role), Some(disabled), &s.principal.name)
        .await?
    {
        Some(_) => Ok(see_other("/users?done=updated")),
        None => Err(Problem::not_found(format!("there is no user {name:?}")).into()),
    }
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let s = &form.session;
    require(&s.principal, Role::Admin, "manage users")?;
    let id = parse_id("token", &raw_id)?;
    if state.ctx.db.revoke_api_token(id, &s.principal.name).await? {
        Ok(see_other("/users?done=revoked"))
    } else {
        Err(Problem::not_found(format!("there is no live token {id}")).into())
    }
}

/// Why a decision was refused, for pages and the API alike.
pub(crate) fn refused_words(refused: &Refused) -> String {
    match refused {
        Refused::NotFound(ids) => format!("there is no nudge {}", join(ids)),
        Refused::NotProposed(taken) => {
            let list: Vec<String> = taken
                .iter()
                .map(|(id, st)| format!("{id} ({st})"))
                .collect();
            format!(
                "these nudges are no longer proposed, so nothing was changed (a decision is never overwritten): {}",
                list.join(", ")
            )
        }
    }
}
