//! The daemon's jobs and the audit log in sentences.

use super::*;

pub(super) struct AuditView {
    id: i64,
    when: String,
    actor: String,
    action: String,
    subject: String,
    link: Option<String>,
    /// What happened, in a sentence.
    what: String,
    /// The entry's details in words, behind a toggle.
    details: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
pub(super) struct JobsPage {
    nav: Nav,
    status: String,
    statuses: Vec<Opt>,
    counts: Vec<(String, String, i64)>,
    leases: Vec<(String, String, String)>,
    /// The newest scoring run split into shards: its id, where it stands in a line, and
    /// every shard.
    split: Option<(i64, String, Vec<ShardView>)>,
    runs: Vec<JobView>,
}

/// A shard of a scoring run, in words.
pub(super) struct ShardView {
    shard: i32,
    range: String,
    planned: String,
    status: String,
    holder: String,
    attempts: i32,
    scored: String,
    /// How long it took, or since when it runs.
    time: String,
    error: String,
}

impl ShardView {
    fn of(s: &crate::store::ShardRow) -> ShardView {
        ShardView {
            shard: s.shard,
            range: views::id_range(s.after_id, s.upto_id),
            planned: views::count(s.planned),
            status: s.status.clone(),
            holder: s.holder.clone().unwrap_or_default(),
            attempts: s.attempts,
            scored: s.scored.map(views::count).unwrap_or_default(),
            time: match (s.status.as_str(), s.started_at, s.finished_at) {
                ("done", Some(from), Some(to)) => format!("took {}", views::duration(to - from)),
                ("running", Some(from), _) => format!("since {}", views::time(from)),
                ("failed", Some(from), _) => format!("started {}", views::time(from)),
                _ => String::new(),
            },
            error: s.error.clone().unwrap_or_default(),
        }
    }
}

pub(super) struct JobView {
    id: i64,
    kind: String,
    key: String,
    attempt: i32,
    status: String,
    worker: String,
    due: String,
    lag: String,
    took: String,
    note: String,
}

/// The daemon's jobs, as `attune jobs` shows them: executions by kind and status, leases
/// held now, the shards of the latest scoring run split into shards, the latest executions
/// with their lag, outcome and error.
pub(super) async fn jobs(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["status"])?;
    let status = query::get(&pairs, "status");
    if let Some(v) = status
        && !crate::store::JOB_STATUSES.contains(&v)
    {
        return Err(Problem::bad_request(
            "invalid_parameter",
            format!(
                "status: {v:?} is not a job status; expected one of {}",
                crate::store::JOB_STATUSES.join(", ")
            ),
        )
        .into());
    }
    let db = &state.ctx.db;
    let counts = db.job_run_counts().await?;
    let leases = db.live_leases().await?;
    let runs = db.job_runs(status, 100).await?;
    let split = db.latest_split().await?.map(|split| {
        (
            split.run.id,
            views::shard_progress(
                &split.run,
                split.failed.as_deref(),
                &split.shards,
                views::time,
            ),
            split.shards.iter().map(ShardView::of).collect(),
        )
    });
    let page = JobsPage {
        nav: nav(&s, "jobs"),
        status: status.unwrap_or_default().to_owned(),
        statuses: options(
            crate::store::JOB_STATUSES.iter().map(|s| s.to_string()),
            status,
        ),
        counts,
        leases: leases
            .into_iter()
            .map(|l| (l.name, l.holder, views::time(l.expires_at)))
            .collect(),
        split,
        runs: runs
            .iter()
            .map(|r| JobView {
                id: r.id,
                kind: r.kind.clone(),
                key: r.job_key.clone(),
                attempt: r.attempt,
                status: r.status.clone(),
                worker: r.worker.clone().unwrap_or_default(),
                due: views::time(r.due_ms / 1000),
                lag: r
                    .lag_ms()
                    .map(|l| format!("{:.1} s", l.max(0) as f64 / 1000.0))
                    .unwrap_or_default(),
                took: match (r.started_ms, r.finished_at) {
                    (Some(s), Some(f)) => format!("{} s", (f - s / 1000).max(0)),
                    _ => String::new(),
                },
                note: r
                    .error
                    .clone()
                    .or_else(|| r.detail.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(super) struct AuditPage {
    nav: Nav,
    actor: String,
    action: String,
    subject: String,
    entries: Vec<AuditView>,
    older_link: Option<String>,
}

const AUDIT_PAGE: i64 = 100;

pub(super) async fn audit(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let pairs = query::pairs(raw.as_deref(), &["actor", "action", "subject", "before"])?;
    let before = query::get(&pairs, "before")
        .map(|v| query::integer("before", v, 1, i64::MAX))
        .transpose()?;
    let actor = query::get(&pairs, "actor");
    let action = query::get(&pairs, "action");
    let subject = query::get(&pairs, "subject");
    let entries = state
        .ctx
        .db
        .audit_page(before, AUDIT_PAGE, actor, action, subject)
        .await?;
    let older_link = (entries.len() as i64 == AUDIT_PAGE).then(|| {
        let mut p: Vec<(&str, String)> = Vec::new();
        for (k, v) in [("actor", actor), ("action", action), ("subject", subject)] {
            if let Some(v) = v {
                p.push((k, v.to_owned()));
            }
        }
        p.push((
            "before",
            entries.last().map(|e| e.id).unwrap_or(0).to_string(),
        ));
        format!("/audit?{}", query::encode(&p))
    });
    let page = AuditPage {
        nav: nav(&s, "audit"),
        actor: actor.unwrap_or_default().to_owned(),
        action: action.unwrap_or_default().to_owned(),
        subject: subject.unwrap_or_default().to_owned(),
        entries: entries
            .iter()
            .map(|e| {
                let d = &e.detail.0;
                AuditView {
                    what: views::audit_sentence(&e.action, &e.subject, d),
                    details: views::detail_lines(d),
                    id: e.id,
                    when: views::time(e.at),
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    link: e
                        .subject
                        .strip_prefix("nudge:")
                        .filter(|id| id.parse::<i64>().is_ok())
                        .map(|id| format!("/nudges/{id}")),
                    subject: e.subject.clone(),
                }
            })
            .collect(),
        older_link,
    };
    render(&page)
}
