//! The queue: the nudges waiting for a decision, filtered and paged as the API pages them.

use super::*;

pub(super) struct RuleCount {
    rule: String,
    label: String,
    count: String,
    link: String,
    active: bool,
}

pub(super) struct QueueRow {
    id: i64,
    customer: String,
    customer_link: String,
    why: String,
    rule: String,
    stage: String,
    channel: String,
    risk_band: String,
    segment: String,
    value: String,
    probability: String,
    queued: String,
    status: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
pub(super) struct QueuePage {
    nav: Nav,
    notice: Option<String>,
    status_words: String,
    status_is_proposed: bool,
    statuses: Vec<Opt>,
    rules: Vec<Opt>,
    stages: Vec<Opt>,
    channels: Vec<Opt>,
    risk_bands: Vec<Opt>,
    segments: Vec<Opt>,
    from: String,
    to: String,
    rule_counts: Vec<RuleCount>,
    rows: Vec<QueueRow>,
    limit: i64,
    next_link: Option<String>,
    first_link: Option<String>,
    export_link: String,
    filter_fields: Vec<(&'static str, String)>,
    can_decide: bool,
}

pub(super) fn why_of(n: &ReviewNudge) -> String {
    let why = n
        .reason
        .0
        .get("why")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut s: String = why.chars().take(140).collect();
    if why.chars().count() > 140 {
        s.push('…');
    }
    s
}

pub(super) fn dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "—".into())
}

pub(super) async fn queue(
    State(state): State<AppState>,
    PageUser(s): PageUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let money = state.ctx.config.currency();
    let mut accepted = QUEUE_PARAMS.to_vec();
    accepted.extend(["done", "count", "skipped"]);
    let pairs = query::pairs(raw.as_deref(), &accepted)?;
    let lq = query::queue_query(&pairs)?;
    let f = &lq.filter;
    let (rows, next) = state.ctx.db.queue_page(f, lq.cursor, lq.limit).await?;
    let counts = state.rule_counts(&f.status).await?;
    let labels = state.filter_values().await?;
    let base = query::filter_pairs(f);
    let link_with = |extra: Vec<(&'static str, String)>| {
        let mut p = base.clone();
        p.extend(extra);
        format!("/queue?{}", query::encode(&p))
    };
    let limit_pair = || {
        (lq.limit != query::DEFAULT_LIMIT)
            .then(|| ("limit", lq.limit.to_string()))
            .into_iter()
            .collect::<Vec<_>>()
    };
    let next_link = next.map(|c| {
        let mut extra = vec![("cursor", c.encode())];
        extra.extend(limit_pair());
        link_with(extra)
    });
    let first_link = lq.cursor.map(|_| link_with(limit_pair()));
    let rule_counts = counts
        .iter()
        .map(|(rule, n)| {
            let mut p: Vec<(&'static str, String)> =
                base.iter().filter(|(k, _)| *k != "rule").cloned().collect();
            p.push(("rule", rule.clone()));
            RuleCount {
                rule: rule.clone(),
                label: views::label(rule),
                count: views::count(*n),
                link: format!("/queue?{}", query::encode(&p)),
                active: f.rule.as_deref() == Some(rule.as_str()),
            }
        })
        .collect();
    let notice = queue_notice(&pairs);
    let page = QueuePage {
        nav: nav(&s, "queue"),
        notice,
        status_words: f.status.clone(),
        status_is_proposed: f.status == "proposed",
        statuses: options(STATUSES.iter().map(|s| s.to_string()), Some(&f.status)),
        rules: options(counts.iter().map(|(r, _)| r.clone()), f.rule.as_deref()),
        stages: options(labels.stages.clone(), f.stage.as_deref()),
        channels: options(
            Channel::ALL.iter().map(|c| c.as_str().to_owned()),
            f.channel.as_deref(),
        ),
        risk_bands: options(labels.risk_bands.clone(), f.risk_band.as_deref()),
        segments: options(labels.segments.clone(), f.segment.as_deref()),
        from: f.from.map(|d| d.to_string()).unwrap_or_default(),
        to: f.to.map(|d| d.to_string()).unwrap_or_default(),
        rule_counts,
        rows: rows
            .iter()
            .map(|n| QueueRow {
                id: n.id,
                customer: n.external_id.clone(),
                customer_link: views::path_segment(&n.external_id),
                why: why_of(n),
                rule: views::label(&n.kind),
                stage: views::label(&n.stage),
                channel: n.channel.clone(),
                risk_band: dash(&n.risk_band),
                segment: n
                    .segment
                    .as_deref()
                    .map(views::label)
                    .unwrap_or_else(|| "—".into()),
                value: views::money_opt(&money, n.expected_value),
                probability: views::percent_opt(n.probability),
                queued: views::time(n.created_at),
                status: n.status.clone(),
            })
            .collect(),
        limit: lq.limit,
        next_link,
        first_link,
        export_link: format!("/v1/nudges/export.csv?{}", query::encode(&base)),
        filter_fields: base.clone(),
        can_decide: s.principal.role.can_decide(),
    };
    render(&page)
}

pub(super) fn queue_notice(pairs: &[(String, String)]) -> Option<String> {
    let done = query::get(pairs, "done")?;
    let verb = match done {
        "approved" | "rejected" => done,
        _ => return None,
    };
    let n: i64 = query::get(pairs, "count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let skipped: i64 = query::get(pairs, "skipped")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut s = format!(
        "{} {} {verb}.",
        views::count(n),
        if n == 1 { "nudge" } else { "nudges" }
    );
    if skipped > 0 {
        s.push_str(&format!(
            " {} had been decided by someone else in the meantime and were left as they were.",
            views::count(skipped)
        ));
    }
    Some(s)
}
