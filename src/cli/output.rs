//! Printing results: a few readable lines for people, one JSON document with `--json`.

use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::demo::DemoSummary;
use crate::domain::DeliveryStatus;
use crate::http::{DeliveryAction, Problem, views};
use crate::jobs::import::ImportReport;
use crate::jobs::plan::PlanReport;
use crate::jobs::score::ScoreReport;
use crate::model::ModelArtifact;
use crate::store::{AuditEntry, ChannelState, DecideOutcome, DeliveryCounts, DeliveryRow};

pub struct Printer {
    pub json: bool,
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into())
}

impl Printer {
    pub fn message(&self, json: &serde_json::Value, text: &str) -> anyhow::Result<()> {
        if self.json {
            print_json(json)
        } else {
            println!("{text}");
            Ok(())
        }
    }

    pub fn config(
        &self,
        config: &Config,
        origin: &str,
        overrides: &[String],
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(
                &serde_json::json!({"valid": true, "read": origin, "environment": overrides, "config": config}),
            );
        }
        let env = if overrides.is_empty() {
            "no ATTUNE_* variables".to_owned()
        } else {
            format!("overridden by {}", overrides.join(", "))
        };
        println!(
            "configuration is valid: read {origin}; {env}\n\n{}",
            toml::to_string_pretty(config)?
        );
        Ok(())
    }

    pub fn import(&self, r: &ImportReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        for e in &r.errors {
            eprintln!("rejected: {e}");
        }
        for q in &r.quarantine {
            eprintln!("quarantined: {q}");
        }
        println!(
            "{}: {} imported, {} updated, {} duplicate, {} quarantined, {} rejected",
            r.file, r.imported, r.updated, r.duplicate, r.quarantined, r.rejected
        );
        Ok(())
    }

    pub fn train(
        &self,
        m: &ModelArtifact,
        window: Option<&crate::model::dataset::TrainingWindow>,
        path: &Path,
        fit_seconds: f64,
        champion: bool,
    ) -> anyhow::Result<()> {
        let t = &m.training;
        let train_rows = t.train_rows.unwrap_or(t.rows);
        if self.json {
            return print_json(&serde_json::json!({
                "version": m.version, "path": path.display().to_string(), "champion": champion,
                "fit_seconds": fit_seconds, "training": t, "window": window,
                "train_rows": train_rows, "test_rows": t.test_rows,
                "holdout": m.metrics, "train": m.train_metrics, "solver": m.solver,
                "features": m.features.len(), "backtest": m.backtest,
                "warning": m.backtest.as_ref().and_then(|b| b.warning.clone()),
            }));
        }
        println!(
            "model {} written to {}{}",
            m.version,
            path.display(),
            if champion { " (champion)" } else { "" }
        );
        println!(
            "  fitted on {train_rows} rows ({} churned) from {}{}; {} columns; solver converged: {} (gradient {:.2e})",
            m.train_metrics.positives,
            t.source,
            t.test_rows
                .map(|n| format!(", tested on {n} other rows"))
                .unwrap_or_default(),
            m.features.len(),
            m.solver.converged,
            m.solver.gradient_norm
        );
        if !t.not_features.is_empty() {
            println!("  not features: {}", t.not_features.join(", "));
        }
        for l in &t.left_out {
            println!("  attribute {} left out: {}", l.attribute, l.why);
        }
        if let Some(w) = window {
            println!(
                "  {} observations of customers on {} days ({}), churn = {}: {} churned ({:.1}%); {} on the training side, {} test rows on the backtest days",
                w.observations,
                w.dates.len(),
                w.span(),
                if w.churn_definition.is_empty() {
                    format!("left within {} days", w.horizon_days)
                } else {
                    w.churn_definition.clone()
                },
                w.churned,
                w.churn_rate * 100.0,
                w.train_observations,
                w.validation_observations,
            );
            if !w.days_before_history.is_empty() {
                println!(
                    "  {} observation day{} left out: before the first imported activity ({})",
                    w.days_before_history.len(),
                    if w.days_before_history.len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                    w.days_before_history
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if let Some(b) = &m.backtest {
            let iv = |i: &Option<crate::model::backtest::Interval>| {
                i.map(|i| format!(" [{:.3}, {:.3}]", i.low, i.high))
                    .unwrap_or_default()
            };
            println!("  backtest: {}", b.design);
            println!(
                "    pooled: ROC AUC {}{} and top-decile lift {}{} on {} test rows of {} customers ({} churners); 95% intervals from {} resamples of customers",
                opt(b.pooled.auc),
                iv(&b.pooled.auc_interval),
                opt(b.pooled.top_decile_lift),
                iv(&b.pooled.lift_interval),
                b.pooled.test_rows,
                b.pooled.test_customers,
                b.pooled.test_churners,
                b.resamples
            );
            for o in &b.origins {
                println!(
                    "    {}: ROC AUC {}{} on {} rows ({} churners); trained on {} rows of {} days",
                    o.day,
                    opt(o.auc),
                    iv(&o.auc_interval),
                    o.test_rows,
                    o.test_churners,
                    o.train_rows,
                    o.trained_on.len()
                );
            }
            if let Some(w) = &b.warning {
                println!("  WARNING: {w}");
            }
        }
        if let Some(h) = &m.metrics {
            println!(
                "  the model on {} test rows: ROC AUC {}  PR AUC {}  log loss {:.4}  Brier {:.4}",
                h.rows,
                opt(h.auc),
                opt(h.pr_auc),
                h.log_loss,
                h.brier
            );
        }
        println!("  fit and evaluation took {fit_seconds:.2} s");
        Ok(())
    }

    pub fn score(&self, r: &ScoreReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        println!(
            "scoring run {} with model {} as of {}: {} customers, {} at or above {:.0}% risk",
            r.run_id,
            r.model_version,
            r.as_of,
            r.customers,
            r.at_risk,
            r.risk_threshold * 100.0
        );
        Ok(())
    }

    pub fn plan(&self, r: &PlanReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        let t = &r.summary.totals;
        println!(
            "planned {} customers as of {} with {}: {} nudges queued ({} proposed, {} approved with their rule, {} deferred by the contact cap, {} offers held while a complaint is open, {} held out); {} already queued, {} without a consented channel",
            r.summary.customers,
            r.as_of,
            r.playbook,
            r.queued,
            t.proposed,
            t.approved,
            t.deferred,
            t.held,
            t.holdout,
            r.already_queued,
            t.no_consented_channel
        );
        println!(
            "stored nudges: {} released from deferral, {} deferred again, {} held while a complaint is open, {} withdrawn, {} expired",
            t.released, t.redeferred, t.held_stored, t.withdrawn, t.expired
        );
        Ok(())
    }

    pub fn simulation(&self, sim: &crate::jobs::plan::Simulation) -> anyhow::Result<()> {
        if self.json {
            return print_json(sim);
        }
        let r = &sim.report;
        println!(
            "simulated planning as of {} with {} over {} customers (nothing written)",
            r.as_of, r.playbook, r.summary.customers
        );
        println!(
            "  {:<26} {:>6} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9}",
            "rule",
            "fired",
            "proposed",
            "approved",
            "deferred",
            "holdout",
            "already",
            "no channel",
            "withdrawn"
        );
        for (rule, c) in &r.summary.by_rule {
            println!(
                "  {:<26} {:>6} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9}",
                rule,
                c.fired,
                c.proposed,
                c.approved,
                c.deferred,
                c.holdout,
                c.already_queued,
                c.no_consented_channel,
                c.withdrawn
            );
        }
        let t = &r.summary.totals;
        println!(
            "  {:<26} {:>6} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9}",
            "total",
            t.fired,
            t.proposed,
            t.approved,
            t.deferred,
            t.holdout,
            t.already_queued,
            t.no_consented_channel,
            t.withdrawn
        );
        if !sim.nudges.is_empty() {
            println!(
                "\n  {:<10} {:<24} {:<9} {:<6} {:<24} {:<20} why",
                "customer", "rule", "status", "via", "to", "send after"
            );
        }
        for n in &sim.nudges {
            println!(
                "  {:<10} {:<24} {:<9} {:<6} {:<24} {:<20} {}",
                n.customer,
                n.rule,
                n.status.as_str(),
                n.channel,
                n.recipient,
                n.send_after.as_deref().unwrap_or("-"),
                n.why
            );
        }
        for (rule, c) in &sim.changes {
            println!("  stored nudge {} ({rule}): {c:?}", c.id());
        }
        Ok(())
    }

    pub fn uplift(
        &self,
        rows: &[crate::playbook::uplift::RuleUplift],
        as_of: chrono::NaiveDate,
        horizon_days: u32,
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(
                &serde_json::json!({"as_of": as_of, "horizon_days": horizon_days, "rules": rows}),
            );
        }
        println!(
            "churn within {horizon_days} days of a customer's first nudge of each rule, nudged against held out, for horizons ended by {as_of}"
        );
        if rows.is_empty() {
            println!("  no nudges yet");
        }
        let pct = |v: Option<f64>| {
            v.map(|v| format!("{:.1}%", v * 100.0))
                .unwrap_or_else(|| "-".into())
        };
        for u in rows {
            println!(
                "  {:<26} nudged {:>7} ({:>6})  held out {:>6} ({:>6})  pending {:>6}  {}",
                u.rule,
                u.treated,
                pct(u.treated_churn),
                u.held_out,
                pct(u.held_out_churn),
                u.pending,
                u.note
            );
            if let Some(d) = &u.delivered {
                println!(
                    "  {:<26} delivered {:>4} ({:>6})  held out {:>6} ({:>6})  {:>14}  {}",
                    "",
                    d.treated,
                    pct(d.treated_churn),
                    d.held_out,
                    pct(d.held_out_churn),
                    "",
                    d.note
                );
            }
        }
        Ok(())
    }

    /// What `deliveries send` did: per channel, what it took; the counts after.
    pub fn deliveries_sent(
        &self,
        passes: &[crate::jobs::deliver::ChannelPass],
        counts: &crate::store::DeliveryCounts,
        seconds: f64,
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(
                &serde_json::json!({"channels": passes, "counts": counts, "seconds": seconds}),
            );
        }
        for p in passes {
            println!(
                "{}: took {} due deliveries{}",
                p.channel,
                p.claimed,
                p.paused
                    .as_ref()
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default()
            );
        }
        println!(
            "now: {} sent, {} pending, {} waiting to retry, {} failed (out of attempts), {} blocked, {} cancelled ({:.1} s)",
            counts.sent,
            counts.pending,
            counts.retrying,
            counts.dead,
            counts.blocked,
            counts.cancelled,
            seconds
        );
        Ok(())
    }

    /// Per rule: nudges proposed a week, this week's budget and what waits.
    pub fn budgets(
        &self,
        weeks: &[crate::store::RuleWeek],
        budgets: &[crate::store::ReviewBudget],
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::json!({"rules": weeks, "budgets": budgets}));
        }
        println!(
            "{:<26} {:>12} {:>10} {:>8} {:>8} {:>8}",
            "rule", "a week (4w)", "this week", "budget", "taken", "waiting"
        );
        for w in weeks {
            let budget = budgets.iter().find(|b| b.rule == w.rule);
            println!(
                "{:<26} {:>12.1} {:>10} {:>8} {:>8} {:>8}",
                w.rule.replace('_', " "),
                w.last_four_weeks as f64 / 4.0,
                w.this_week,
                budget.map_or("-".into(), |b| b.weekly.to_string()),
                budget.map_or("-".into(), |_| w.used.to_string()),
                w.waiting
            );
        }
        Ok(())
    }

    /// A page of the queue, as the desk orders it, with how many match and the next page.
    pub fn queue(
        &self,
        rows: &[crate::store::ReviewNudge],
        total: i64,
        status: &str,
        next: Option<String>,
        currency: &crate::domain::Currency,
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::json!({"total": total, "nudges": rows, "next": next}));
        }
        if rows.is_empty() {
            println!("no {status} nudges match");
            return Ok(());
        }
        println!(
            "{:>6}  {:<10}  {:<24}  {:<18}  {:<6}  {:>10}  {:>5}  {:<17}  why",
            "id",
            "customer",
            "rule",
            "stage",
            "via",
            format!("value {}", currency.code()),
            "risk",
            "not before"
        );
        for n in rows {
            let why = n.reason.0["why"].as_str().unwrap_or_default();
            println!(
                "{:>6}  {:<10}  {:<24}  {:<18}  {:<6}  {:>10}  {:>5}  {:<17}  {}",
                n.id,
                n.external_id,
                n.kind.replace('_', " "),
                n.stage.replace('_', " "),
                n.channel,
                n.expected_value
                    .map(|v| currency.amount(v))
                    .unwrap_or_else(|| "-".into()),
                n.probability
                    .map(|p| format!("{:.0}%", p * 100.0))
                    .unwrap_or_else(|| "-".into()),
                n.send_after.map(fmt_secs).unwrap_or_else(|| "-".into()),
                why
            );
        }
        let plural = |n: i64| if n == 1 { "" } else { "s" };
        println!(
            "{} of {total} {status} nudge{}, largest value at risk first",
            rows.len(),
            plural(total)
        );
        if let Some(c) = next {
            println!("next page: --after {c}");
        }
        Ok(())
    }

    pub fn decision(&self, o: &DecideOutcome, verb: &str) -> anyhow::Result<()> {
        if self.json {
            print_json(o)?;
        } else {
            println!(
                "{verb} {}: {:?}",
                crate::http::views::counted(o.decided.len() as i64, "nudge", "nudges"),
                o.decided
            );
            if !o.not_found.is_empty() {
                eprintln!("no nudge with id {:?}", o.not_found);
            }
            for (id, status) in &o.already_decided {
                eprintln!("nudge {id} was already {status}; left as it is");
            }
        }
        if o.not_found.is_empty() && o.already_decided.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "{} of the ids given were not decided",
                o.not_found.len() + o.already_decided.len()
            )
        }
    }

    /// Deliveries, newest change first, then every delivery counted by status and the
    /// channels paused now.
    pub fn deliveries(
        &self,
        rows: &[DeliveryRow],
        counts: &DeliveryCounts,
        paused: &[ChannelState],
        status: Option<DeliveryStatus>,
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(
                &serde_json::json!({"items": rows, "counts": counts, "paused_channels": paused}),
            );
        }
        if rows.is_empty() {
            match status {
                Some(s) => println!("no {s} deliveries"),
                None => println!("no deliveries yet: each approved nudge gets one"),
            }
        } else {
            println!(
                "{:>6}  {:<10}  {:<24}  {:<6}  {:<9}  {:>5}  {:<22}  {:<16}  note",
                "nudge", "customer", "rule", "via", "status", "tries", "when", "through"
            );
            for d in rows {
                let when = match (d.status.as_str(), d.sent_at) {
                    (_, Some(at)) => format!("sent {}", fmt_secs(at)),
                    ("pending", _) => format!("due {}", fmt_secs(d.next_at)),
                    _ => format!("since {}", fmt_secs(d.updated_at)),
                };
                let mut note = d.reason.clone().unwrap_or_default();
                if let Some(o) = &d.outcome {
                    note = format!("receiver reported: {o}");
                }
                println!(
                    "{:>6}  {:<10}  {:<24}  {:<6}  {:<9}  {:>5}  {:<22}  {:<16}  {}",
                    d.nudge_id,
                    d.customer,
                    views::label(&d.rule),
                    d.channel,
                    views::delivery_status(&d.status),
                    d.attempts,
                    when,
                    d.route
                        .as_deref()
                        .map(views::label)
                        .unwrap_or_else(|| "-".into()),
                    note
                );
                if let Some(answer) = &d.last_error {
                    println!("        the receiver answered: {answer}");
                }
            }
            println!(
                "{} shown, newest change first",
                views::counted(rows.len() as i64, "delivery", "deliveries")
            );
        }
        println!(
            "in all: {} sent, {} pending, {} retrying, {} failed (dead), {} blocked, {} cancelled",
            counts.sent,
            counts.pending,
            counts.retrying,
            counts.dead,
            counts.blocked,
            counts.cancelled
        );
        for c in paused {
            if let Some(until) = c.paused_until {
                println!(
                    "channel {}",
                    views::channel_pause(&c.name, c.failures.into(), until, c.reason.as_deref())
                );
            }
        }
        Ok(())
    }

    /// A retry or cancel: the delivery as it is now, or why nothing changed (an error, so
    /// the command exits non-zero).
    pub fn delivery_change(
        &self,
        id: i64,
        action: DeliveryAction,
        outcome: Result<DeliveryRow, Problem>,
    ) -> anyhow::Result<()> {
        match outcome {
            Ok(d) => {
                if self.json {
                    return print_json(
                        &serde_json::json!({"nudge_id": id, "changed": true, "delivery": d}),
                    );
                }
                println!(
                    "{} the delivery of nudge {id}: {}",
                    action.done(),
                    views::delivery_state(&d.status, d.attempts.into())
                );
                Ok(())
            }
            Err(p) => {
                if self.json {
                    print_json(&serde_json::json!({"nudge_id": id, "changed": false,
                        "error": {"code": p.code, "message": p.message}}))?;
                }
                anyhow::bail!("{}", p.message)
            }
        }
    }

    pub fn audit(&self, entries: &[AuditEntry]) -> anyhow::Result<()> {
        if self.json {
            return print_json(entries);
        }
        for e in entries {
            println!(
                "{}  {:<12}  {:<16}  {:<14}  {}",
                time(e.at),
                e.actor,
                e.action,
                e.subject,
                e.detail.0
            );
        }
        Ok(())
    }

    pub fn demo(&self, d: &DemoSummary, currency: &crate::domain::Currency) -> anyhow::Result<()> {
        if self.json {
            return print_json(d);
        }
        println!("attune demo on {} (today is {})", d.database, d.today);
        println!(
            "  {} customers, {} events pulled from the inbox",
            d.customers, d.events
        );
        let backtest = d.backtest.as_ref().map_or(String::new(), |b| {
            format!(
                "backtest ROC AUC {}{} on {} test customers never trained on, over {} days",
                opt(b.pooled.auc),
                b.pooled
                    .auc_interval
                    .map(|i| format!(" [95%: {:.3}, {:.3}]", i.low, i.high))
                    .unwrap_or_default(),
                b.pooled.test_customers,
                b.origins.len()
            )
        });
        println!(
            "  model {}: trained on {} monthly observation days, label churn within {} days; {backtest}",
            d.model_version,
            crate::demo::TRAINING_MONTHS,
            crate::demo::TRAINING_HORIZON_DAYS,
        );
        println!(
            "  scored {} active customers: {:.1}% at or above {:.0}% churn risk",
            d.score.customers,
            d.share_at_risk * 100.0,
            d.score.risk_threshold * 100.0
        );
        println!(
            "  nudges queued by rule (proposed, approved with their rule, deferred or held out):"
        );
        for (kind, n) in &d.nudges_by_kind {
            println!("    {kind:<22} {n:>6}");
        }
        println!("  the ten riskiest customers:");
        for r in &d.riskiest {
            println!(
                "    {:<9} {:>4.0}%  {:>9}/month  {}",
                r.customer,
                r.probability * 100.0,
                currency.format(r.monthly_charge),
                r.drivers.join("; ")
            );
        }
        println!("  one full cycle took {:.1} s", d.seconds);
        Ok(())
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC.
fn fmt_secs(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}
