//! The review desk's pages, in-process: signing in, sessions and CSRF tokens, what each
//! role may see and do, decisions and bulk decisions from forms, and every page rendering.

use axum::body::Body;
use axum::http::Request;

use super::api_desk::{Answer, Desk, desk, send, snapshot};
use super::helpers::TestDb;
use crate::both_backends;

/// The value of `name="NAME" value="..."` in a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let start = html.find(&key)? + key.len();
    Some(html[start..].split('"').next()?.to_owned())
}

fn set_cookie(a: &Answer, name: &str) -> Option<String> {
    a.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The `name=value` part of a Set-Cookie.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

pub async fn page(d: &Desk, uri: &str, cookie: &str) -> Answer {
    let req = Request::get(uri)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    send(&d.app, req).await
}

pub async fn form(d: &Desk, uri: &str, cookie: &str, fields: &[(&str, &str)]) -> Answer {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let req = Request::post(uri)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(&d.app, req).await
}

/// Signs in through the form; returns the session cookie (`attune_session=...`) and the
/// full Set-Cookie header.
pub async fn sign_in(d: &Desk, name: &str) -> (String, String) {
    let a = page(d, "/login?next=%2Fqueue", "").await;
    assert_eq!(a.status, 200);
    let login = set_cookie(&a, "attune_login").expect("the sign-in page sets its token cookie");
    let csrf = hidden(&a.text(), "csrf").unwrap();
    let password = format!("{name}-password");
    let a = form(
        d,
        "/login",
        &pair(&login),
        &[
            ("csrf", &csrf),
            ("next", "/queue"),
            ("name", name),
            ("password", &password),
        ],
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(a.headers["location"], "/queue");
    let session = set_cookie(&a, "attune_session").expect("a session cookie");
    (pair(&session), session)
}

/// The session's CSRF token, as its pages carry it.
pub async fn csrf_of(d: &Desk, cookie: &str) -> String {
    let a = page(d, "/queue", cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    hidden(&a.text(), "csrf").unwrap()
}

async fn signing_in_and_out(t: &TestDb) {
    let d = desk(t).await;
    // Signed out: pages send you to sign in, and come back after.
    let a = page(&d, "/nudges/3", "").await;
    assert_eq!(
        (a.status.as_u16(), a.headers["location"].to_str().unwrap()),
        (303, "/login?next=%2Fnudges%2F3")
    );
    let (cookie, set) = sign_in(&d, "reviewer").await;
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Secure",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attr), "{set} has {attr}");
    }
    let a = page(&d, "/queue", &cookie).await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("<span id=\"whoami\">reviewer</span>"));
    // A wrong password, an unknown user, a disabled user: refused alike, no session.
    let a = page(&d, "/login", "").await;
    let login = pair(&set_cookie(&a, "attune_login").unwrap());
    let csrf = hidden(&a.text(), "csrf").unwrap();
    for (name, password) in [("reviewer", "nope-nope"), ("ghost", "ghost-password")] {
        let a = form(
            &d,
            "/login",
            &login,
            &[("csrf", &csrf), ("name", name), ("password", password)],
        )
        .await;
        assert_eq!(a.status, 401, "{name}");
        assert!(a.text().contains("do not match an active user"));
        assert!(set_cookie(&a, "attune_session").is_none());
    }
    t.db.update_user("viewer", None, Some(true), "test")
        .await
        .unwrap();
    let a = form(
        &d,
        "/login",
        &login,
        &[
            ("csrf", &csrf),
            ("name", "viewer"),
            ("password", "viewer-password"),
        ],
    )
    .await;
    assert_eq!(a.status, 401);
    // The sign-in form needs its own token (double submit): a forged sign-in is refused.
    let a = form(
        &d,
        "/login",
        "",
        &[
            ("csrf", &csrf),
            ("name", "reviewer"),
            ("password", "reviewer-password"),
        ],
    )
    .await;
    assert_eq!(a.status, 403);
    assert!(a.text().contains("CSRF token"));
    let a = form(
        &d,
        "/login",
        &login,
        &[("name", "reviewer"), ("password", "reviewer-password")],
    )
    .await;
    assert_eq!(a.status, 403);
    // Signing out ends the session on the server, not just in the browser.
    let token = csrf_of(&d, &cookie).await;
    let a = form(&d, "/logout", &cookie, &[("csrf", &token)]).await;
    assert_eq!(
        (a.status.as_u16(), a.headers["location"].to_str().unwrap()),
        (303, "/login")
    );
    assert!(
        set_cookie(&a, "attune_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(page(&d, "/queue", &cookie).await.status, 303);
    // An open redirect is not possible through `next`.
    let a = page(&d, "/login?next=//evil.example/x", "").await;
    assert_eq!(hidden(&a.text(), "next").as_deref(), Some("/queue"));
}
both_backends!(web_sign_in_sessions_and_sign_out, super::signing_in_and_out);

async fn forms_need_the_sessions_csrf_token(t: &TestDb) {
    let d = desk(t).await;
    let (cookie, _) = sign_in(&d, "reviewer").await;
    let (other, _) = sign_in(&d, "admin").await;
    let others_token = csrf_of(&d, &other).await;
    let before = snapshot(t).await;
    for (cookie, fields, status, words) in [
        (
            cookie.as_str(),
            vec![("action", "approve")],
            403,
            "CSRF token is missing",
        ),
        (
            cookie.as_str(),
            vec![("action", "approve"), ("csrf", "guess")],
            403,
            "CSRF token",
        ),
        // Another session's token does not fit this session.
        (
            cookie.as_str(),
            vec![("action", "approve"), ("csrf", others_token.as_str())],
            403,
            "CSRF token",
        ),
        (
            "",
            vec![("action", "approve"), ("csrf", others_token.as_str())],
            401,
            "not signed in",
        ),
    ] {
        let a = form(&d, "/nudges/1/decide", cookie, &fields).await;
        assert_eq!(a.status, status, "{fields:?}: {}", a.text());
        assert!(a.text().contains(words), "{}", a.text());
    }
    for uri in [
        "/queue/bulk",
        "/users",
        "/users/viewer",
        "/tokens/1/revoke",
        "/logout",
    ] {
        let a = form(
            &d,
            uri,
            &cookie,
            &[
                ("action", "reject"),
                ("reason", "x"),
                ("max_id", "60"),
                ("expected", "1"),
            ],
        )
        .await;
        assert_eq!(a.status, 403, "{uri}");
    }
    assert_eq!(snapshot(t).await, before, "nothing changed");
    // With the token, the same form works.
    let token = csrf_of(&d, &cookie).await;
    let a = form(
        &d,
        "/nudges/1/decide",
        &cookie,
        &[
            ("csrf", &token),
            ("action", "approve"),
            ("message", "Edited\r\ntext"),
        ],
    )
    .await;
    assert_eq!(
        (a.status.as_u16(), a.headers["location"].to_str().unwrap()),
        (303, "/nudges/1?done=approved")
    );
    let n = t.db.review_nudge(1).await.unwrap().unwrap();
    assert_eq!(
        (n.status.as_str(), n.edited_message.as_deref()),
        ("approved", Some("Edited\ntext"))
    );
    assert_eq!(
        n.message.as_deref(),
        Some("Hello from nudge 1"),
        "the planned message is kept"
    );
    let audit = t.db.audit_for("nudge:1", 10).await.unwrap();
    assert_eq!(
        audit.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["nudge.approved", "nudge.edited"]
    );
    assert!(
        audit
            .iter()
            .all(|e| e.actor == "reviewer" && e.detail.0["via"] == "web")
    );
    // The page shows the decision and both texts; approving again is a conflict.
    let html = page(&d, "/nudges/1?done=approved", &cookie).await.text();
    assert!(
        html.contains("id=\"notice\">Approved.")
            && html.contains("Edited\ntext")
            && html.contains("Hello from nudge 1")
    );
    let a = form(
        &d,
        "/nudges/1/decide",
        &cookie,
        &[("csrf", &token), ("action", "reject"), ("reason", "late")],
    )
    .await;
    assert_eq!(a.status, 409);
    assert!(
        a.text()
            .contains("nudge 1 is already approved (by reviewer")
    );
    // Reject and snooze from their forms; bad fields are named.
    let a = form(
        &d,
        "/nudges/2/decide",
        &cookie,
        &[("csrf", &token), ("action", "reject"), ("reason", "")],
    )
    .await;
    assert_eq!(a.status, 422);
    assert!(a.text().contains("reason: say why"));
    let a = form(
        &d,
        "/nudges/2/decide",
        &cookie,
        &[
            ("csrf", &token),
            ("action", "reject"),
            ("reason", "wrong tone"),
        ],
    )
    .await;
    assert_eq!(a.status, 303);
    let a = form(
        &d,
        "/nudges/3/decide",
        &cookie,
        &[
            ("csrf", &token),
            ("action", "snooze"),
            ("until", "2001-01-01"),
        ],
    )
    .await;
    assert_eq!(a.status, 422);
    let until = (attune::jobs::today() + chrono::Days::new(2)).to_string();
    let a = form(
        &d,
        "/nudges/3/decide",
        &cookie,
        &[("csrf", &token), ("action", "snooze"), ("until", &until)],
    )
    .await;
    assert_eq!(a.status, 303);
    let a = form(
        &d,
        "/nudges/4/decide",
        &cookie,
        &[
            ("csrf", &token),
            ("action", "edit"),
            ("message", "Hello from nudge 4"),
        ],
    )
    .await;
    assert_eq!(
        a.headers["location"], "/nudges/4?done=unchanged",
        "the same text is no edit"
    );
    let statuses: Vec<String> =
        t.db.review_nudges(&[2, 3, 4])
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.status)
            .collect::<Vec<_>>();
    let mut statuses = statuses;
    statuses.sort();
    assert_eq!(statuses, ["proposed", "rejected", "snoozed"]);
    // Oversized forms are refused before they are read.
    let long = "x".repeat(5000);
    let a = form(
        &d,
        "/nudges/5/decide",
        &cookie,
        &[("csrf", &token), ("action", "edit"), ("message", &long)],
    )
    .await;
    assert_eq!(a.status, 413);
    assert!(
        t.db.review_nudge(5)
            .await
            .unwrap()
            .unwrap()
            .edited_message
            .is_none()
    );
}
both_backends!(
    web_forms_need_the_sessions_csrf_token,
    super::forms_need_the_sessions_csrf_token
);

async fn viewers_see_no_actions_and_change_nothing(t: &TestDb) {
    let d = desk(t).await;
    let (viewer, _) = sign_in(&d, "viewer").await;
    let (reviewer, _) = sign_in(&d, "reviewer").await;
    let q = page(&d, "/queue", &viewer).await.text();
    assert!(!q.contains("bulk-approve") && !q.contains("bulk-reject"));
    assert!(
        page(&d, "/queue", &reviewer)
            .await
            .text()
            .contains("id=\"bulk-reject\"")
    );
    let n = page(&d, "/nudges/1", &viewer).await.text();
    assert!(n.contains("Hello from nudge 1"));
    assert!(!n.contains("id=\"actions\"") && !n.contains("<textarea") && !n.contains("/decide"));
    assert!(
        page(&d, "/nudges/1", &reviewer)
            .await
            .text()
            .contains("id=\"actions\"")
    );
    let before = snapshot(t).await;
    let token = csrf_of(&d, &viewer).await;
    let a = form(
        &d,
        "/nudges/1/decide",
        &viewer,
        &[("csrf", &token), ("action", "approve")],
    )
    .await;
    assert_eq!(a.status, 403);
    assert!(
        a.text()
            .contains("viewer has the viewer role, which cannot decide on nudges")
    );
    let a = page(&d, "/queue/bulk?action=approve", &viewer).await;
    assert_eq!(a.status, 403);
    let a = form(
        &d,
        "/queue/bulk",
        &viewer,
        &[
            ("csrf", &token),
            ("action", "approve"),
            ("max_id", "60"),
            ("expected", "56"),
        ],
    )
    .await;
    assert_eq!(a.status, 403);
    // Users are an admin's business.
    assert_eq!(page(&d, "/users", &viewer).await.status, 403);
    assert_eq!(page(&d, "/users", &reviewer).await.status, 403);
    let reviewer_token = csrf_of(&d, &reviewer).await;
    let a = form(
        &d,
        "/users",
        &reviewer,
        &[
            ("csrf", &reviewer_token),
            ("name", "eve"),
            ("role", "admin"),
            ("password", "eve-password"),
        ],
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(snapshot(t).await, before);
    assert!(t.db.user_by_name("eve").await.unwrap().is_none());
}
both_backends!(
    web_viewers_see_no_actions_and_change_nothing,
    super::viewers_see_no_actions_and_change_nothing
);

async fn bulk_decisions_confirm_how_many(t: &TestDb) {
    let d = desk(t).await;
    let (cookie, _) = sign_in(&d, "reviewer").await;
    let selected: Vec<i64> = (0..super::api_desk::N)
        .map(|i| (i + 1, super::api_desk::fixture(i, &[1])))
        .filter(|(_, n)| n.status == "proposed" && n.kind == "renewal" && n.channel == "sms")
        .map(|(id, _)| id)
        .collect();
    assert!(selected.len() > 3);
    let a = page(
        &d,
        "/queue/bulk?action=reject&rule=renewal&channel=sms",
        &cookie,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let html = a.text();
    assert!(
        html.contains(&format!("<b id=\"bulk-count\">{}</b>", selected.len())),
        "{html}"
    );
    assert!(html.contains("rule = renewal, channel = sms"));
    let max_id = hidden(&html, "max_id").unwrap();
    let expected = hidden(&html, "expected").unwrap();
    let token = hidden(&html, "csrf").unwrap();
    // Someone decides one of them before the confirmation; a new one is queued after it.
    d.post(
        &format!("/v1/nudges/{}/decision", selected[0]),
        "admin",
        r#"{"decision":"approve"}"#,
    )
    .await;
    let mut late = super::api_desk::fixture(4, &[t.db.customer_id_map().await.unwrap()["cust-0"]]);
    late.occasion = "late".into();
    t.db.insert_review_nudges(&[late]).await.unwrap();
    let fields = [
        ("csrf", token.as_str()),
        ("action", "reject"),
        ("rule", "renewal"),
        ("channel", "sms"),
        ("max_id", max_id.as_str()),
        ("expected", expected.as_str()),
        ("reason", "renewal texts are paused"),
    ];
    // A rejection needs its reason.
    let without: Vec<(&str, &str)> = fields
        .iter()
        .copied()
        .filter(|(k, _)| *k != "reason")
        .collect();
    assert_eq!(form(&d, "/queue/bulk", &cookie, &without).await.status, 422);
    let a = form(&d, "/queue/bulk", &cookie, &fields).await;
    assert_eq!(a.status, 303, "{}", a.text());
    let to = a.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        to,
        format!(
            "/queue?rule=renewal&channel=sms&done=rejected&count={}&skipped=1",
            selected.len() - 1
        )
    );
    let html = page(&d, &to, &cookie).await.text();
    assert!(
        html.contains(&format!(
            "{} nudges rejected. 1 had been decided by someone else",
            selected.len() - 1
        )),
        "{html}"
    );
    let rows = t.db.review_nudges(&selected).await.unwrap();
    for n in &rows {
        let want = if n.id == selected[0] {
            "approved"
        } else {
            "rejected"
        };
        assert_eq!(n.status, want, "nudge {}", n.id);
    }
    // The late one was not in what the person confirmed.
    let (late_rows, _) =
        t.db.queue_page(
            &attune::store::QueueFilter {
                rule: Some("renewal".into()),
                channel: Some("sms".into()),
                ..Default::default()
            },
            None,
            50,
        )
        .await
        .unwrap();
    assert_eq!(
        late_rows
            .iter()
            .map(|n| n.occasion.as_str())
            .collect::<Vec<_>>(),
        ["late"]
    );
    let audit =
        t.db.audit_page(None, 100, Some("reviewer"), Some("nudge.rejected"), None)
            .await
            .unwrap();
    assert_eq!(audit.len(), selected.len() - 1);
    assert!(
        audit
            .iter()
            .all(|e| e.detail.0["after"]["decision_reason"] == "renewal texts are paused")
    );
    // Only proposed nudges can be selected.
    assert_eq!(
        page(&d, "/queue/bulk?action=reject&status=approved", &cookie)
            .await
            .status,
        400
    );
    assert_eq!(
        page(&d, "/queue/bulk?action=launch", &cookie).await.status,
        400
    );
}
both_backends!(
    web_bulk_decisions_confirm_how_many,
    super::bulk_decisions_confirm_how_many
);

async fn every_page_renders(t: &TestDb) {
    let d = desk(t).await;
    let (admin, _) = sign_in(&d, "admin").await;
    let q = page(&d, "/queue?rule=renewal&limit=5", &admin).await;
    assert_eq!(q.status, 200);
    let html = q.text();
    assert_eq!(html.matches("<tr data-id=").count(), 5);
    assert!(html.contains("id=\"next-page\""));
    assert!(html.contains("data-rule=\"renewal\""), "counts per rule");
    assert!(!html.contains(">welcome</td>"), "only renewal rows");
    let a = page(&d, "/queue?status=bad", &admin).await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("status: unknown status"), "{}", a.text());
    let n = page(&d, "/nudges/1", &admin).await;
    assert_eq!(n.status, 200);
    let html = n.text();
    for words in [
        "Hello from nudge 1",
        "2 failed payments in 90 days",
        "reason 0",
        "Email to customer cust-0",
    ] {
        assert!(html.contains(words), "the nudge page shows {words:?}");
    }
    assert_eq!(page(&d, "/nudges/99999", &admin).await.status, 404);
    assert_eq!(page(&d, "/nudges/x", &admin).await.status, 404);
    for uri in [
        "/overview",
        "/model",
        "/audit",
        "/users",
        "/audit?action=user.",
    ] {
        let a = page(&d, uri, &admin).await;
        assert_eq!(a.status, 200, "{uri}: {}", a.text());
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{uri}");
    }
    // The uplift table has a row per rule that nudged; these nudges are new, so no
    // customer's horizon has ended and each says there are too few to tell.
    let overview = page(&d, "/overview", &admin).await.text();
    assert!(overview.contains("id=\"uplift-table\""), "{overview}");
    assert!(overview.contains("too few customers"), "{overview}");
    assert!(page(&d, "/model", &admin).await.text().contains("<svg"));
    assert!(
        page(&d, "/audit?action=user.", &admin)
            .await
            .text()
            .contains("user.created")
    );
    assert_eq!(page(&d, "/nowhere", &admin).await.status, 404);
    // An admin manages users from the page.
    let token = csrf_of(&d, &admin).await;
    let a = form(
        &d,
        "/users",
        &admin,
        &[
            ("csrf", &token),
            ("name", "nina"),
            ("role", "reviewer"),
            ("password", "nina-password"),
        ],
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(
        t.db.user_by_name("nina").await.unwrap().unwrap().role,
        "reviewer"
    );
    let a = form(
        &d,
        "/users",
        &admin,
        &[
            ("csrf", &token),
            ("name", "nina"),
            ("role", "reviewer"),
            ("password", "nina-password"),
        ],
    )
    .await;
    assert_eq!(a.status, 409, "a name is taken once");
    let a = form(
        &d,
        "/users",
        &admin,
        &[
            ("csrf", &token),
            ("name", "bad name"),
            ("role", "reviewer"),
            ("password", "nina-password"),
        ],
    )
    .await;
    assert_eq!(a.status, 422);
    let a = form(
        &d,
        "/users",
        &admin,
        &[
            ("csrf", &token),
            ("name", "short"),
            ("role", "reviewer"),
            ("password", "x"),
        ],
    )
    .await;
    assert_eq!(a.status, 422);
    let a = form(
        &d,
        "/users/viewer",
        &admin,
        &[("csrf", &token), ("role", "reviewer"), ("state", "active")],
    )
    .await;
    assert_eq!(a.status, 303);
    assert_eq!(
        t.db.user_by_name("viewer").await.unwrap().unwrap().role,
        "reviewer"
    );
    let a = form(
        &d,
        "/users/admin",
        &admin,
        &[("csrf", &token), ("role", "viewer"), ("state", "active")],
    )
    .await;
    assert_eq!(a.status, 422, "an admin cannot demote themself");
    let updated =
        t.db.audit_page(None, 10, Some("admin"), Some("user.updated"), None)
            .await
            .unwrap();
    assert_eq!(updated[0].detail.0["before"]["role"], "viewer");
    assert_eq!(updated[0].detail.0["after"]["role"], "reviewer");
}
both_backends!(web_every_page_renders, super::every_page_renders);

/// A request over a real socket, answered in full (`Connection: close`).
async fn get_over_tcp(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn the_daemon_serves_the_desk_and_stops_with_it(t: &TestDb) {
    let ctx = t.ctx(|c| {
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.schedule.pull = "0 0 0 1 1 *".parse().unwrap();
        c.schedule.score = "0 0 0 1 1 *".parse().unwrap();
        c.worker.shutdown_grace = std::time::Duration::from_secs(5);
    });
    let app = attune::http::Application::build(ctx.clone()).await.unwrap();
    let port = app.port();
    assert_ne!(
        port, 0,
        "port 0 picks a free port, and the application says which"
    );
    assert_eq!(app.url(), format!("http://127.0.0.1:{port}"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The shutdown signal fires once the desk has answered over the network.
    let stop = async move {
        let _ = tx.send(get_over_tcp(port, "/readyz").await);
        Ok(())
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(40),
        attune::jobs::daemon::run_serving(ctx, Some(app), stop),
    )
    .await
    .expect("the daemon and the desk stop on one signal")
    .unwrap();
    let answer = rx.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ready\""), "{answer}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "nothing listens once stopped"
    );
}
both_backends!(
    web_the_daemon_serves_the_desk_and_stops_with_it,
    super::the_daemon_serves_the_desk_and_stops_with_it
);

/// One sign-in attempt from `ip`, with a fresh sign-in page's token.
async fn sign_in_from(d: &Desk, name: &str, password: &str, ip: [u8; 4]) -> Answer {
    let a = page(d, "/login", "").await;
    let login = pair(&set_cookie(&a, "attune_login").unwrap());
    let csrf = hidden(&a.text(), "csrf").unwrap();
    let body = serde_urlencoded::to_string([
        ("csrf", csrf.as_str()),
        ("name", name),
        ("password", password),
    ])
    .unwrap();
    let mut req = Request::post("/login")
        .header("cookie", login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            ip, 40000,
        ))));
    send(&d.app, req).await
}

/// Before: 40 wrong passwords in a row were all answered 401 and the right one worked at
/// once. Now the fifth failure for a name locks it (429, a message saying until when and
/// how to lift it, Retry-After, an audit entry), known and unknown names alike; twenty
/// failures from one address lock the address whatever the names; an admin lifts a lock.
async fn sign_in_throttling(t: &TestDb) {
    let d = desk(t).await;
    let home = [10, 0, 0, 1];
    for name in ["reviewer", "ghost"] {
        for i in 1..=5 {
            let a = sign_in_from(&d, name, "wrong-password", home).await;
            if i < 5 {
                assert_eq!(a.status, 401, "{name} attempt {i}");
            } else {
                assert_eq!(a.status, 429, "{name} attempt {i}: {}", a.text());
                assert!(
                    a.text().contains("Too many failed sign-ins"),
                    "{}",
                    a.text()
                );
                assert!(a.text().contains("attune users unlock NAME"));
                let wait: i64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((800..=900).contains(&wait), "about 15 minutes: {wait}");
            }
        }
    }
    // Locked: even the right password is refused, and no session is made.
    let a = sign_in_from(&d, "reviewer", "reviewer-password", home).await;
    assert_eq!(a.status, 429);
    assert!(set_cookie(&a, "attune_session").is_none());
    let audit = t.db.audit_entries(50).await.unwrap();
    let locked: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "login.locked")
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(locked.len(), 2, "{locked:?}");
    assert!(locked.contains(&"user:reviewer") && locked.contains(&"user:ghost"));
    // An admin lifts it; the right password works again and clears the count.
    assert!(t.db.clear_login_failures("user:reviewer").await.unwrap());
    let a = sign_in_from(&d, "reviewer", "reviewer-password", home).await;
    assert_eq!(a.status, 303, "{}", a.text());
    // Another address is not held back by this one's failures; twenty failures from one
    // address, spread over names, lock the address for every name.
    let other = [10, 0, 0, 2];
    for i in 1..=20 {
        let a = sign_in_from(&d, &format!("name{i}"), "wrong-password", other).await;
        assert_eq!(a.status, if i < 20 { 401 } else { 429 }, "attempt {i}");
    }
    let a = sign_in_from(&d, "viewer", "viewer-password", other).await;
    assert_eq!(a.status, 429, "the address is locked");
    let a = sign_in_from(&d, "viewer", "viewer-password", home).await;
    assert_eq!(a.status, 303, "another address is not: {}", a.text());
    let locks = t.db.login_locks().await.unwrap();
    let keys: Vec<&str> = locks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["addr:10.0.0.2", "user:ghost"]);
}
both_backends!(web_sign_in_is_throttled, super::sign_in_throttling);

/// The desk shows the daemon's jobs as `attune jobs` does: counts by kind and status, the
/// leases held, and each execution with its lag and its error or reason; a status filter
/// narrows the list and an unknown status is refused naming the choices.
async fn jobs_page(t: &TestDb) {
    let d = desk(t).await;
    let (cookie, _) = sign_in(&d, "viewer").await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let id =
        t.db.queue_job_run("pull", "pull@2026-12-05T10:00:00Z", 1, now_ms - 1500)
            .await
            .unwrap();
    assert!(t.db.start_job_run(id, "host-1-pull", now_ms).await.unwrap());
    t.db.finish_job_run(
        id,
        "failed",
        Some("the inbox /srv/in is not readable"),
        None,
        Some(now_ms / 1000 + 5),
    )
    .await
    .unwrap();
    t.db.skip_job_run(
        "score",
        "score@2026-12-05T10:00:07Z",
        now_ms,
        "host-1",
        "a score job is still running",
    )
    .await
    .unwrap();
    assert!(
        t.db.take_lease("score", "host-1", 60)
            .await
            .unwrap()
            .is_ok()
    );
    let a = page(&d, "/jobs", &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let html = a.text();
    for words in [
        "data-kind=\"pull\" data-status=\"failed\"",
        "the inbox /srv/in is not readable",
        "a score job is still running",
        "1.5 s",
        "<td>score</td><td>host-1</td>",
        "href=\"/jobs\" class=\"on\"",
    ] {
        assert!(html.contains(words), "the jobs page shows {words:?}");
    }
    let html = page(&d, "/jobs?status=skipped", &cookie).await.text();
    assert!(html.contains("a score job is still running"));
    assert!(
        !html.contains("not readable"),
        "only skipped executions are listed"
    );
    let a = page(&d, "/jobs?status=bogus", &cookie).await;
    assert_eq!(a.status, 400);
    assert!(
        a.text().contains("expected one of queued, running"),
        "{}",
        a.text()
    );
}
both_backends!(web_jobs_page_shows_executions, super::jobs_page);

/// The jobs page shows the shards of the newest scoring run split into shards, with the
/// line `attune jobs` prints and a row per shard: its ids in words, customers planned,
/// status, holder, attempts, scored, how long it took or since when it runs, and its
/// error; before any run is split it says so.
async fn jobs_page_shows_shards(t: &TestDb) {
    let d = desk(t).await;
    let (cookie, _) = sign_in(&d, "viewer").await;
    let html = page(&d, "/jobs", &cookie).await.text();
    assert!(
        html.contains("None yet: no scoring run has been split into shards."),
        "{html}"
    );
    assert!(!html.contains("id=\"shards\""));

    let run = super::helpers::a_run_in_every_shard_state(&t.db).await;
    let a = page(&d, "/jobs", &cookie).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let html = a.text();
    let summary = format!(
        "<p id=\"shard-progress\">scoring run {run} (full, as of 2026-12-07): 5 shards: \
         2 done, 1 running, 1 queued, 1 failed; 198 of 450 customers scored; failed: shard 3 \
         failed after "
    );
    for words in [
        format!("<h2>Shards of scoring run {run}</h2>"),
        summary,
        "<tr data-shard=\"0\" data-status=\"done\">\n  <td>0</td><td>ids up to 100</td><td>100</td><td>done</td><td class=\"small\">host-a-score</td>\n  <td>1</td><td>100</td><td>took ".into(),
        "<td>1</td><td>ids 101 to 200</td><td>100</td><td>done</td>".into(),
        "<tr data-shard=\"2\" data-status=\"running\">\n  <td>2</td><td>ids 201 to 300</td><td>100</td><td>running</td><td class=\"small\">host-b-score</td>\n  <td>2</td><td></td><td>since ".into(),
        "<td>3</td><td>ids 301 to 400</td><td>100</td><td>failed</td><td class=\"small\">host-c-score</td>\n  <td>1</td><td></td><td>started ".into(),
        "<td class=\"small\">boom</td>".into(),
        "<tr data-shard=\"4\" data-status=\"queued\">\n  <td>4</td><td>ids above 400</td><td>50</td><td>queued</td><td class=\"small\"></td>\n  <td>0</td><td></td><td></td><td class=\"small\"></td>".into(),
    ] {
        assert!(html.contains(&words), "the jobs page shows {words:?}: {html}");
    }
    assert!(!html.contains("None yet: no scoring run"));
}
both_backends!(web_jobs_page_shows_shards, super::jobs_page_shows_shards);

/// The text a person sees on a page: tags, the head and the stylesheet removed, entities
/// decoded.
fn visible_text(html: &str) -> String {
    let mut s = html.to_owned();
    for (open, close) in [
        ("<head", "</head>"),
        ("<style", "</style>"),
        ("<code", "</code>"),
        ("<details", "</details>"),
    ] {
        while let Some(a) = s.find(open) {
            let Some(b) = s[a..].find(close) else { break };
            s.replace_range(a..a + b + close.len(), " ");
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for ch in s.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What a reviewer should never read: a snake_case identifier (a raw feature, rule,
/// stage or segment name), a JSON object, or a placeholder address.
fn raw_bits(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let parts: Vec<&str> = token.split('_').collect();
        if parts.len() > 1
            && parts.iter().all(|p| !p.is_empty())
            && token.chars().any(|c| c.is_ascii_lowercase())
        {
            found.push(token.to_owned());
        }
    }
    for bad in ["{\"", ".example"] {
        if let Some(at) = text.find(bad) {
            found.push(text[at..text.len().min(at + 60)].to_owned());
        }
    }
    // A plural after one: "1 days", "1 complaints open".
    let words: Vec<&str> = text.split_whitespace().collect();
    for pair in words.windows(2) {
        let noun = pair[1].trim_end_matches([',', '.', ';', ')', ':']);
        if pair[0] == "1"
            && [
                "days",
                "months",
                "complaints",
                "nudges",
                "customers",
                "events",
                "logins",
                "contacts",
                "payments",
                "times",
            ]
            .contains(&noun)
        {
            found.push(format!("1 {noun}"));
        }
    }
    found
}

/// Every page of a demo cycle, walked as a reviewer would (the queue in three states, a
/// nudge of each rule, a customer, the overview, the model, the audit log, jobs, users), reads in
/// words: no snake_case name, JSON object or placeholder address. A name set as code (a
/// setting to type) and details behind a toggle are not running text.
async fn every_page_reads_in_words(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    // A business in euros: every amount says so, none in the default dollars.
    let ctx = t.ctx(|c| {
        c.pull.inbox = Some(inbox.path().to_owned());
        c.money = attune::domain::Currency::parse("EUR", None).unwrap();
    });
    let today = attune::jobs::today();
    attune::demo::run_cycle(&ctx, 1500, 7, today).await.unwrap();
    let hash = attune::http::hash_password("admin-password").unwrap();
    t.db.create_user("admin", attune::store::Role::Admin, &hash, "test")
        .await
        .unwrap();
    let d = super::api_desk::Desk {
        app: attune::http::router(attune::http::AppState::new(ctx)),
        tokens: Default::default(),
    };
    let (admin, _) = sign_in(&d, "admin").await;
    let mut uris: Vec<String> = [
        "/queue",
        "/queue?status=deferred",
        "/queue?status=holdout",
        "/overview",
        "/model",
        "/audit",
        "/jobs",
        "/users",
    ]
    .iter()
    .map(|u| u.to_string())
    .collect();
    let mut seen_rules = std::collections::BTreeSet::new();
    for n in t.db.list_nudges(&Default::default()).await.unwrap() {
        if seen_rules.insert(n.kind.clone()) {
            uris.push(format!("/nudges/{}", n.id));
        }
    }
    assert!(seen_rules.len() >= 5, "{seen_rules:?}");
    // The customer of the first nudge, through the search box.
    let first = &t.db.list_nudges(&Default::default()).await.unwrap()[0];
    let found = page(&d, &format!("/customers?q={}", first.external_id), &admin).await;
    assert_eq!(found.status, 303);
    let to = found.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(to, format!("/customers/{}", first.external_id));
    uris.push(to);
    let mut offenders = Vec::new();
    for uri in &uris {
        let a = page(&d, uri, &admin).await;
        assert_eq!(a.status, 200, "{uri}");
        let text = visible_text(&a.text());
        let mut bits = raw_bits(&text);
        if text.contains('$') {
            bits.push("an amount in dollars".into());
        }
        if (uri == "/overview" || uri.starts_with("/customers/") || uri.starts_with("/nudges/"))
            && !text.contains('€')
        {
            bits.push("no amount in euros".into());
        }
        bits.sort();
        bits.dedup();
        if !bits.is_empty() {
            offenders.push(format!("{uri}: {}", bits.join(" | ")));
        }
    }
    assert!(
        offenders.is_empty(),
        "raw text on pages:\n{}",
        offenders.join("\n")
    );
}
both_backends!(
    every_page_of_the_demo_reads_in_words,
    super::every_page_reads_in_words
);

/// The customer page: reached from the queue, a nudge and the search box; shows the
/// profile with consent, the latest drivers, both complaints of a customer with two (the
/// older resolved, by the one lifecycle), their nudges with decisions and their activity.
async fn the_customer_page_tells_the_whole_story(t: &TestDb) {
    use attune::domain::{ActivityEvent, CustomerId, Meaning};
    let d = super::api_desk::desk(t).await;
    let (admin, _) = sign_in(&d, "admin").await;
    let at = |day: &str| {
        chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap()
            .and_utc()
    };
    let ev = |kind: Meaning, day: &str, n: &str, value: Option<f64>| ActivityEvent {
        customer: CustomerId::parse("cust-0").unwrap(),
        kind: kind.code(),
        occurred_at: at(day),
        value,
        attributes: Default::default(),
        source: "crm".into(),
        source_event_id: n.into(),
    };
    // Opened t1, opened t2, resolved t3: the t1 complaint is the resolved one.
    t.db.insert_events(&[
        ev(Meaning::ComplaintOpened, "2026-10-03", "k1", None),
        ev(Meaning::ComplaintOpened, "2026-11-09", "k2", None),
        ev(Meaning::ComplaintResolved, "2026-11-20", "k3", Some(2.0)),
    ])
    .await
    .unwrap();
    let queue = page(&d, "/queue", &admin).await.text();
    assert!(
        queue.contains("href=\"/customers/cust-"),
        "the queue links customers"
    );
    let nudge = page(&d, "/nudges/1", &admin).await.text();
    assert!(
        nudge.contains("id=\"customer-link\""),
        "the nudge page links its customer"
    );
    let a = page(&d, "/customers/cust-0", &admin).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let html = a.text();
    let complaints = &html[html.find("id=\"complaints\"").unwrap()..];
    let complaints = &complaints[..complaints.find("</table>").unwrap()];
    let rows: Vec<&str> = complaints.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 2, "{complaints}");
    // Newest first: the 11-09 complaint is open, the 10-03 one resolved.
    assert!(
        rows[0].contains("2026-11-09") && rows[0].contains(">open"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains("2026-10-03")
            && rows[1].contains("resolved")
            && rows[1].contains("2 of 5"),
        "{}",
        rows[1]
    );
    assert!(html.contains("id=\"consent\">email<"), "consent in words");
    assert!(html.contains("href=\"/nudges/1\""), "their nudges");
    assert!(html.contains("Complaint opened"), "their activity");
    assert_eq!(page(&d, "/customers/nobody", &admin).await.status, 404);
    assert_eq!(page(&d, "/customers?q=nobody", &admin).await.status, 404);
}
both_backends!(
    the_customer_page_shows_profile_complaints_nudges_and_activity,
    super::the_customer_page_tells_the_whole_story
);
