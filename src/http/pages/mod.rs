//! The pages marketing uses: sign in, the queue, a nudge with its actions, bulk decisions
//! with a confirmation, the overview, the model report, the audit log and (for admins)
//! users. Server-rendered with askama; no JavaScript.
//!
//! Every form that changes something is read through [`CsrfForm`], and every change checks
//! the person's role here before the store is asked.

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Days;

use super::AppState;
use super::auth::{
    self, CsrfForm, LOGIN_COOKIE, PageUser, SESSION_COOKIE, Session, body_bytes, cookie, field,
    parse_form, random_hex, require, same_secret, session_of, set_cookie, sha256_hex,
};
use super::decide::{self, DeliveryAction, Input};
use super::error::{PageError, Problem};
use super::query::{self, QUEUE_PARAMS};
use super::views::{self, DriverView};
use crate::domain::Channel;
use crate::store::{BULK_MAX, Decision, Refused, ReviewNudge, Role, STATUSES};

mod audit;
mod bulk;
mod customer;
mod model;
mod nudge;
mod overview;
mod queue;
mod signin;
mod users;

use audit::*;
use bulk::*;
use customer::*;
use model::*;
use nudge::*;
use overview::*;
use queue::*;
use signin::*;
use users::*;

pub use overview::week_start;
pub(crate) use users::refused_words;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/queue") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/queue", get(queue))
        .route("/queue/bulk", get(bulk_confirm).post(bulk_apply))
        .route("/nudges/{id}", get(nudge))
        .route("/customers", get(find_customer))
        .route("/customers/{id}", get(customer))
        .route("/nudges/{id}/decide", post(decide))
        .route("/nudges/{id}/delivery", post(delivery_action))
        .route("/overview", get(overview))
        .route("/overview/budgets", post(set_budget))
        .route("/model", get(model))
        .route("/audit", get(audit))
        .route("/jobs", get(jobs))
        .route("/users", get(users).post(add_user))
        .route("/users/{name}", post(update_user))
        .route("/tokens/{id}/revoke", post(revoke_token))
}

type PageResult = Result<Response, PageError>;

/// The navigation bar's facts, on every page.
struct Nav {
    user: String,
    role: &'static str,
    csrf: String,
    is_admin: bool,
    active: &'static str,
}

fn nav(s: &Session, active: &'static str) -> Nav {
    Nav {
        user: s.principal.name.clone(),
        role: s.principal.role.as_str(),
        csrf: s.csrf.clone(),
        is_admin: s.principal.role.can_manage_users(),
        active,
    }
}

fn render<T: Template>(t: &T) -> PageResult {
    let html = t
        .render()
        .map_err(|e| anyhow::anyhow!("rendering a page: {e}"))?;
    Ok(Html(html).into_response())
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A local path to return to after signing in; anything else becomes the queue.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.to_owned()
        }
        _ => "/queue".to_owned(),
    }
}

fn parse_id(what: &str, raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Problem::not_found(format!(
            "there is no {what} {raw:?}; ids are positive whole numbers"
        ))
    })
}

struct Opt {
    value: String,
    label: String,
    selected: bool,
}

fn options(values: impl IntoIterator<Item = String>, selected: Option<&str>) -> Vec<Opt> {
    let mut out: Vec<Opt> = values
        .into_iter()
        .map(|v| Opt {
            selected: selected == Some(v.as_str()),
            label: views::label(&v),
            value: v,
        })
        .collect();
    if let Some(s) = selected
        && !out.iter().any(|o| o.value == s)
    {
        out.push(Opt {
            value: s.to_owned(),
            label: views::label(s),
            selected: true,
        });
    }
    out
}

fn join(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
