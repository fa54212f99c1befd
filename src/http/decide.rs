//! What a person asked for when deciding on a nudge, read the same way from a page's form
//! and from an API body, with each mistake named; and a person's retry or cancel of a
//! delivery, refused with the reason alike from a page, the API and the CLI.

use chrono::{Days, NaiveDate};

use super::AppState;
use super::error::Problem;
use super::views;
use crate::store::{Db, Decision, DeliveryRow, Refused, ReviewNudge, StoreError, day_start};

/// The longest message and rejection reason accepted.
pub const MAX_MESSAGE_CHARS: usize = 5000;
pub const MAX_REASON_CHARS: usize = 500;
/// How far ahead a nudge may be snoozed.
pub const MAX_SNOOZE_DAYS: u64 = 365;

/// The raw fields of one decision. `field` names where the action came from (`action`
/// on pages, `decision` in the API) so errors point at it.
pub struct Input<'a> {
    pub field: &'a str,
    pub action: &'a str,
    pub reason: Option<&'a str>,
    pub until: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// A message as typed: line endings as `\n`, no surrounding blank space.
pub fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_owned()
}

pub fn reason(raw: Option<&str>) -> Result<String, Problem> {
    let r = raw.map(str::trim).unwrap_or_default();
    if r.is_empty() {
        return Err(Problem::unprocessable(
            "reason: say why the nudge is rejected; it is kept in the audit log",
        ));
    }
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(Problem::unprocessable(format!(
            "reason: is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(r.to_owned())
}

fn message(raw: &str) -> Result<String, Problem> {
    let m = normalise(raw);
    if m.is_empty() {
        return Err(Problem::unprocessable(
            "message: is empty; write the text the customer should get",
        ));
    }
    if m.chars().count() > MAX_MESSAGE_CHARS {
        return Err(Problem::unprocessable(format!(
            "message: is longer than {MAX_MESSAGE_CHARS} characters"
        )));
    }
    Ok(m)
}

/// The day a snooze ends, as unix seconds at its start: tomorrow at the earliest.
pub fn until(raw: Option<&str>, today: NaiveDate) -> Result<i64, Problem> {
    let raw = raw.map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(Problem::unprocessable(
            "until: say until which day (YYYY-MM-DD) the nudge is snoozed",
        ));
    }
    let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        Problem::unprocessable(format!("until: {raw:?} is not a date; write YYYY-MM-DD"))
    })?;
    let latest = today + Days::new(MAX_SNOOZE_DAYS);
    if day <= today || day > latest {
        return Err(Problem::unprocessable(format!(
            "until: {day} must be after today ({today}) and at most {MAX_SNOOZE_DAYS} days ahead ({latest})"
        )));
    }
    Ok(day_start(day))
}

/// The decision (if any) and the message edit (if any) the input asks for. An edit that
/// changes nothing is no edit.
pub fn interpret(
    input: &Input<'_>,
    current: Option<&ReviewNudge>,
    today: NaiveDate,
) -> Result<(Option<Decision>, Option<String>), Problem> {
    let current_text = current.and_then(|n| n.effective_message()).map(normalise);
    let edit_of = |raw: &str| -> Result<Option<String>, Problem> {
        let m = message(raw)?;
        Ok((current_text.as_deref() != Some(m.as_str())).then_some(m))
    };
    // Each decision takes its own fields and no others, so nothing sent is silently ignored.
    let only = |allowed: &[&str], what: &str| -> Result<(), Problem> {
        for (name, given, carriers) in [
            ("message", input.message.is_some(), "an approval or an edit"),
            ("reason", input.reason.is_some(), "a rejection"),
            ("until", input.until.is_some(), "a snooze"),
        ] {
            if given && !allowed.contains(&name) {
                return Err(Problem::unprocessable(format!(
                    "{name}: only {carriers} carries a {name}, not {what}"
                )));
            }
        }
        Ok(())
    };
    let no_message = |what: &str| only(&["reason", "until"], what);
    match input.action {
        "approve" => {
            only(&["message"], "an approval")?;
            let edit = input.message.map(edit_of).transpose()?.flatten();
            Ok((Some(Decision::Approve), edit))
        }
        "edit" => {
            only(&["message"], "an edit")?;
            let raw = input
                .message
                .ok_or_else(|| Problem::unprocessable("message: give the edited text to save"))?;
            Ok((None, edit_of(raw)?))
        }
        "reject" => {
            no_message("a rejection")?;
            only(&["reason"], "a rejection")?;
            Ok((
                Some(Decision::Reject {
                    reason: reason(input.reason)?,
                }),
                None,
            ))
        }
        "snooze" => {
            no_message("a snooze")?;
            only(&["until"], "a snooze")?;
            Ok((
                Some(Decision::Snooze {
                    until: until(input.until, today)?,
                }),
                None,
            ))
        }
        other => Err(Problem::unprocessable(format!(
            "{}: {other:?} is not a decision; use approve, reject, snooze or edit",
            input.field
        ))),
    }
}

/// A refused decision as a problem: 404 for unknown nudges, 409 for decided ones (naming
/// who decided a single one, and when).
pub async fn refusal(state: &AppState, refused: Refused) -> Problem {
    match &refused {
        Refused::NotFound(_) => Problem::not_found(super::pages::refused_words(&refused)),
        Refused::NotProposed(taken) if taken.len() == 1 => {
            let id = taken[0].0;
            match state.ctx.db.review_nudge(id).await {
                Ok(Some(n)) => Problem::conflict(format!(
                    "nudge {id} is already {}{}; a decision is never overwritten, so nothing was changed",
                    n.status,
                    n.decided_by
                        .as_ref()
                        .map(|by| format!(" (by {by} at {})", views::time_opt(n.decided_at)))
                        .unwrap_or_default()
                )),
                _ => Problem::conflict(super::pages::refused_words(&refused)),
            }
        }
        Refused::NotProposed(_) => Problem::conflict(super::pages::refused_words(&refused)),
    }
}

/// What a person may do to a nudge's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryAction {
    /// Send a failed (dead) or cancelled delivery again: pending, due now, attempts from zero.
    Retry,
    /// Stop a pending delivery: it is never sent.
    Cancel,
}

impl DeliveryAction {
    /// Reads `retry` or `cancel` from the field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, Problem> {
        match raw.trim() {
            "retry" => Ok(Self::Retry),
            "cancel" => Ok(Self::Cancel),
            other => Err(Problem::unprocessable(format!(
                "{field}: {other:?} is not something a delivery can be asked; use retry or cancel"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
        }
    }

    /// The past tense: `retried`, `cancelled`.
    pub fn done(self) -> &'static str {
        match self {
            Self::Retry => "retried",
            Self::Cancel => "cancelled",
        }
    }

    /// The statuses a delivery may be in for this to change it.
    pub fn allowed_from(self) -> &'static [&'static str] {
        match self {
            Self::Retry => &["dead", "cancelled"],
            Self::Cancel => &["pending"],
        }
    }

    /// Whether a delivery in `status` can be asked this.
    pub fn allowed(self, status: &str) -> bool {
        self.allowed_from().contains(&status)
    }
}

/// Why nudge `id` has no delivery to show or change: there is no such nudge (404), or it
/// is not approved (404, saying what it is).
pub async fn no_delivery(db: &Db, id: i64) -> Result<Problem, StoreError> {
    Ok(match db.review_nudge(id).await? {
        None => Problem::not_found(format!("there is no nudge {id}")),
        Some(n) => Problem::not_found(format!(
            "nudge {id} has no delivery: it is {}, and only an approved nudge (not held out) is delivered",
            n.status
        )),
    })
}

/// The delivery of nudge `id`, in `status` after `attempts`, as a refusal of `action`:
/// 409 naming its status and what `action` needs.
pub fn wrong_state(id: i64, action: DeliveryAction, status: &str, attempts: i64) -> Problem {
    let needs = match action {
        DeliveryAction::Retry => "only a failed (dead) or cancelled delivery can be retried",
        DeliveryAction::Cancel => "only a pending delivery can be cancelled",
    };
    let state = views::delivery_state(status, attempts);
    let state = if state.starts_with(status) {
        state
    } else {
        format!("{status} ({state})")
    };
    Problem::conflict(format!(
        "the delivery of nudge {id} is {state}; {needs}, so nothing was changed"
    ))
}

/// Retries or cancels nudge `id`'s delivery as `actor` (audited in the store). The inner
/// error says why nothing changed: no such nudge or no delivery (404), or a delivery in
/// a status `action` does not apply to (409).
pub async fn change_delivery(
    db: &Db,
    id: i64,
    action: DeliveryAction,
    actor: &str,
) -> Result<Result<DeliveryRow, Problem>, StoreError> {
    let changed = match action {
        DeliveryAction::Retry => db.retry_delivery(id, actor).await?,
        DeliveryAction::Cancel => db.cancel_delivery(id, actor).await?,
    };
    match db.delivery(id).await? {
        Some(d) if changed => Ok(Ok(d)),
        Some(d) => Ok(Err(wrong_state(id, action, &d.status, d.attempts.into()))),
        None => Ok(Err(no_delivery(db, id).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_actions_are_read_and_say_what_they_need() {
        assert_eq!(
            DeliveryAction::parse("action", " retry ").unwrap(),
            DeliveryAction::Retry
        );
        let e = DeliveryAction::parse("action", "resend").unwrap_err();
        assert!(e.message.starts_with("action: \"resend\""), "{}", e.message);
        assert!(
            DeliveryAction::Retry.allowed("dead") && DeliveryAction::Retry.allowed("cancelled")
        );
        assert!(!DeliveryAction::Retry.allowed("sent") && !DeliveryAction::Cancel.allowed("sent"));
        assert!(DeliveryAction::Cancel.allowed("pending"));
        let e = wrong_state(7, DeliveryAction::Cancel, "dead", 5);
        assert_eq!(e.status, axum::http::StatusCode::CONFLICT);
        assert_eq!(
            e.message,
            "the delivery of nudge 7 is dead (failed: no more attempts after 5 attempts); only a pending delivery can be cancelled, so nothing was changed"
        );
        let e = wrong_state(7, DeliveryAction::Retry, "sent", 1);
        assert!(
            e.message.starts_with(
                "the delivery of nudge 7 is sent: the receiver accepted it; only a failed (dead) or cancelled delivery can be retried"
            ),
            "{}",
            e.message
        );
    }

    fn input<'a>(action: &'a str, message: Option<&'a str>) -> Input<'a> {
        Input {
            field: "decision",
            action,
            reason: None,
            until: None,
            message,
        }
    }

    #[test]
    fn snooze_days_are_checked() {
        let today: NaiveDate = "2026-11-24".parse().unwrap();
        assert_eq!(
            until(Some("2026-11-25"), today).unwrap(),
            day_start("2026-11-25".parse().unwrap())
        );
        for bad in ["2026-11-24", "2027-12-01", "tomorrow", ""] {
            let e = until(Some(bad), today).unwrap_err();
            assert!(e.message.starts_with("until: "), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn decisions_are_read_with_their_fields() {
        let today: NaiveDate = "2026-11-24".parse().unwrap();
        let (d, e) = interpret(&input("approve", None), None, today).unwrap();
        assert_eq!((d, e), (Some(Decision::Approve), None));
        let (d, e) = interpret(&input("approve", Some(" Hi\r\nthere ")), None, today).unwrap();
        assert_eq!(
            (d, e.as_deref()),
            (Some(Decision::Approve), Some("Hi\nthere"))
        );
        let e = interpret(&input("reject", None), None, today).unwrap_err();
        assert!(e.message.starts_with("reason: "), "{}", e.message);
        let e = interpret(&input("reject", Some("x")), None, today).unwrap_err();
        assert!(e.message.starts_with("message: "), "{}", e.message);
        let e = interpret(&input("edit", Some("   ")), None, today).unwrap_err();
        assert!(e.message.contains("is empty"), "{}", e.message);
        let mut i = input("approve", None);
        i.reason = Some("why not");
        let e = interpret(&i, None, today).unwrap_err();
        assert!(
            e.message
                .starts_with("reason: only a rejection carries a reason, not an approval"),
            "{}",
            e.message
        );
        let e = interpret(&input("launch", None), None, today).unwrap_err();
        assert!(
            e.message.starts_with("decision: \"launch\""),
            "{}",
            e.message
        );
    }
}
