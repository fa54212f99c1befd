//! The OpenAPI 3 document of the API, served at `/v1/openapi.json`. Written by hand beside
//! the handlers in `api.rs`; the API tests check every route here is served and the
//! schemathesis run (`tests/schemathesis/run.sh`) checks the answers against it.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The error answers every authenticated endpoint may give.
fn errors(extra: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        "400".into(),
        error_response("A query parameter or path segment is malformed; the message names it."),
    );
    m.insert(
        "401".into(),
        error_response("No valid bearer token or session."),
    );
    for (code, what) in extra {
        m.insert((*code).into(), error_response(what));
    }
    m
}

fn ok(schema: Value, extra: &[(&str, &str)]) -> Value {
    let mut m = errors(extra);
    m.insert(
        "200".into(),
        json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
    );
    Value::Object(m)
}

fn param(name: &str, location: &str, description: &str, schema: Value, required: bool) -> Value {
    json!({"name": name, "in": location, "description": description, "required": required, "schema": schema})
}

fn label(name: &str, description: &str) -> Value {
    param(
        name,
        "query",
        description,
        json!({"type": "string", "pattern": "^[A-Za-z0-9_.:/-][A-Za-z0-9_.:/ -]{0,63}$"}),
        false,
    )
}

fn limit() -> Value {
    param(
        "limit",
        "query",
        "Rows per page, 1 to 200 (default 50).",
        json!({"type": "integer", "minimum": 1, "maximum": 200}),
        false,
    )
}

fn filters(with_paging: bool) -> Vec<Value> {
    let mut v = vec![
        param(
            "status",
            "query",
            "One status (default proposed).",
            json!({"type": "string", "enum": crate::store::STATUSES}),
            false,
        ),
        label(
            "rule",
            "The playbook rule that queued the nudge (its `kind`).",
        ),
        label("stage", "The customer's lifecycle stage."),
        param(
            "channel",
            "query",
            "How the customer is reached.",
            json!({"type": "string", "enum": crate::domain::Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()}),
            false,
        ),
        label("risk_band", "The churn risk band."),
        label("segment", "The customer segment."),
        param(
            "from",
            "query",
            "Queued on or after this day (UTC).",
            json!({"type": "string", "format": "date"}),
            false,
        ),
        param(
            "to",
            "query",
            "Queued on or before this day (UTC); not before `from`.",
            json!({"type": "string", "format": "date"}),
            false,
        ),
    ];
    if with_paging {
        v.push(param(
            "cursor",
            "query",
            "The `next_cursor` of the previous page.",
            json!({"type": "string", "pattern": "^(n|-?[0-9](\\.[0-9]{1,17})?e-?[0-9]{1,2})~[0-9]{1,18}$"}),
            false,
        ));
        v.push(limit());
    }
    v
}

fn nudge_id_param() -> Value {
    param(
        "id",
        "path",
        "The nudge's id.",
        json!({"type": "integer", "format": "int64", "minimum": 1}),
        true,
    )
}

fn decision_body(many: bool) -> Value {
    let mut props = json!({
        "decision": {"type": "string", "enum": if many { json!(["approve", "reject", "snooze"]) } else { json!(["approve", "reject", "snooze", "edit"]) },
            "description": "approve; reject (needs reason); snooze (needs until); edit (needs message; saves the edit without deciding)."},
        "reason": {"type": "string", "nullable": true, "minLength": 1, "maxLength": 500, "description": "Why it is rejected (reject only)."},
        "until": {"type": "string", "nullable": true, "format": "date", "description": "The day it returns to the queue: after today, at most 365 days ahead (snooze only)."},
    });
    let mut required = vec!["decision"];
    if many {
        props["ids"] = json!({"type": "array", "minItems": 1, "maxItems": super::api::MAX_IDS, "items": {"type": "integer", "format": "int64", "minimum": 1}});
        required.push("ids");
    } else {
        props["message"] = json!({"type": "string", "nullable": true, "minLength": 1, "maxLength": 5000,
            "description": "The edited message text (approve or edit); the planned message is kept beside it."});
    }
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": props})
}

/// The document itself.
pub fn document() -> Value {
    let nudge = json!({"$ref": "#/components/schemas/Nudge"});
    let delivery = json!({"$ref": "#/components/schemas/Delivery"});
    const DELIVERY_403: &str = "The caller's role cannot retry or cancel deliveries, or a session call lacks its CSRF token.";
    const DELIVERY_404: &str =
        "No such nudge, or it has no delivery (only an approved nudge is delivered).";
    let retry_errors: &[(&str, &str)] = &[
        ("403", DELIVERY_403),
        ("404", DELIVERY_404),
        (
            "409",
            "The delivery is not failed (dead) or cancelled; nothing was changed.",
        ),
    ];
    let cancel_errors: &[(&str, &str)] = &[
        ("403", DELIVERY_403),
        ("404", DELIVERY_404),
        ("409", "The delivery is not pending; nothing was changed."),
    ];
    let decision_errors: &[(&str, &str)] = &[
        (
            "403",
            "The caller's role cannot decide on nudges, or a session call lacks its CSRF token.",
        ),
        (
            "404",
            "No such nudge (for many: the message lists every unknown id; nothing was changed).",
        ),
        (
            "409",
            "The nudge is no longer proposed; a decision is never overwritten and nothing was changed.",
        ),
        ("413", "The body is larger than the limit."),
        ("415", "The body is not sent as application/json."),
        (
            "422",
            "The body is JSON of the wrong shape, or a field is invalid; the message names it.",
        ),
    ];
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "attune review desk API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Review the nudges attune queued: list and filter them, read one, approve, reject, snooze or edit them (one or many), export them as CSV; follow the deliveries of approved nudges, retry a failed one or cancel a pending one; and read scores, model reports and the audit log. Authenticate with `Authorization: Bearer TOKEN` (from `attune users token NAME`); a token carries its user's role: viewer reads, reviewer also decides (and retries or cancels deliveries). Times are unix seconds; days are YYYY-MM-DD. Errors are {\"error\": {\"code\", \"message\"}}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {
                "summary": "The process is up.", "operationId": "healthz", "security": [],
                "responses": {"200": {"description": "Up", "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/readyz": {"get": {
                "summary": "The database answers and, with an http source, the customer ids for /v1/events are loaded.", "operationId": "readyz", "security": [],
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "503": error_response("The database does not answer, or the customer ids are still loading."),
                },
            }},
            "/v1/openapi.json": {"get": {
                "summary": "This document.", "operationId": "openapi", "security": [],
                "responses": {"200": {"description": "The OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/v1/events": {"post": {
                "summary": "Activity events from an http source: a JSON array of events, or NDJSON. One request is one transaction.",
                "operationId": "postEvents",
                "security": [{"sourceToken": []}],
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"type": "array", "maxItems": 10000, "items": {"$ref": "#/components/schemas/Event"}}},
                    "application/x-ndjson": {"schema": {"type": "string"}}}},
                "responses": ok(json!({"type": "object", "required": ["accepted", "duplicate", "rejected", "rejections"], "properties": {
                    "accepted": {"type": "integer"}, "duplicate": {"type": "integer"}, "rejected": {"type": "integer"},
                    "rejections": {"type": "array", "items": {"type": "object", "required": ["index", "code", "reason", "quarantined"], "properties": {
                        "index": {"type": "integer"}, "code": {"type": "string"}, "reason": {"type": "string"}, "quarantined": {"type": "boolean"}}}}}}),
                    &[("413", "The body is larger than 8 MiB.")]),
            }},
            "/v1/me": {"get": {
                "summary": "Who the caller is.", "operationId": "me",
                "responses": ok(json!({"type": "object", "required": ["name", "role", "via"], "properties": {
                    "name": {"type": "string"}, "role": {"type": "string", "enum": ["viewer", "reviewer", "admin"]}, "via": {"type": "string", "enum": ["token", "session"]}}}), &[]),
            }},
            "/v1/nudges": {"get": {
                "summary": "Nudges of one status by value at risk, largest first (those without one last), a page at a time.",
                "operationId": "listNudges",
                "parameters": filters(true),
                "responses": ok(json!({"type": "object", "required": ["items", "next_cursor", "limit"], "properties": {
                    "items": {"type": "array", "items": nudge},
                    "next_cursor": {"type": "string", "nullable": true, "description": "Pass as `cursor` for the next page; null on the last."},
                    "limit": {"type": "integer"}}}), &[]),
            }},
            "/v1/nudges/export.csv": {"get": {
                "summary": "Every nudge the filters select, as CSV (streamed).",
                "operationId": "exportNudges",
                "parameters": filters(false),
                "responses": {
                    "200": {"description": format!("CSV with the columns {}", super::api::CSV_COLUMNS.join(", ")), "content": {"text/csv": {"schema": {"type": "string"}}}},
                    "400": error_response("A filter is malformed; the message names it."),
                    "401": error_response("No valid bearer token or session."),
                },
            }},
            "/v1/nudges/decisions": {"post": {
                "summary": "Decide on many proposed nudges at once: all of them, or none if any is unknown or already decided.",
                "operationId": "decideNudges",
                "requestBody": {"required": true, "content": {"application/json": {"schema": decision_body(true)}}},
                "responses": ok(json!({"type": "object", "required": ["decided", "status"], "properties": {
                    "decided": {"type": "array", "items": {"type": "integer"}},
                    "status": {"type": "string"}}}), decision_errors),
            }},
            "/v1/nudges/{id}": {"get": {
                "summary": "One nudge.", "operationId": "getNudge",
                "parameters": [nudge_id_param()],
                "responses": ok(nudge.clone(), &[("404", "No such nudge.")]),
            }},
            "/v1/nudges/{id}/decision": {"post": {
                "summary": "Approve (optionally with an edited message), reject, snooze, or save an edit of one proposed nudge.",
                "operationId": "decideNudge",
                "parameters": [nudge_id_param()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": decision_body(false)}}},
                "responses": ok(nudge.clone(), decision_errors),
            }},
            "/v1/deliveries": {"get": {
                "summary": "Deliveries of approved nudges, newest change first, with every delivery counted by status.",
                "operationId": "listDeliveries",
                "parameters": [
                    param("status", "query", "Only deliveries of this status: pending (waiting, or waiting for a retry after a failed attempt), sent, dead (out of attempts), blocked (may no longer go) or cancelled.",
                        json!({"type": "string", "enum": super::query::delivery_statuses()}), false),
                    param("channel", "query", "Only nudges of this channel.",
                        json!({"type": "string", "enum": super::query::nudge_channels()}), false),
                    limit(),
                ],
                "responses": ok(json!({"type": "object", "required": ["items", "counts", "limit"], "properties": {
                    "items": {"type": "array", "items": delivery.clone()},
                    "counts": {"$ref": "#/components/schemas/DeliveryCounts"},
                    "limit": {"type": "integer"}}}), &[]),
            }},
            "/v1/deliveries/{id}": {"get": {
                "summary": "One nudge's delivery.", "operationId": "getDelivery",
                "parameters": [nudge_id_param()],
                "responses": ok(delivery.clone(), &[("404", DELIVERY_404)]),
            }},
            "/v1/deliveries/{id}/retry": {"post": {
                "summary": "Send a failed (dead) or cancelled delivery again: pending, due now, its attempts counted from zero. Audited.",
                "operationId": "retryDelivery",
                "parameters": [nudge_id_param()],
                "responses": ok(delivery.clone(), retry_errors),
            }},
            "/v1/deliveries/{id}/cancel": {"post": {
                "summary": "Stop a pending delivery: it is never sent. Audited.",
                "operationId": "cancelDelivery",
                "parameters": [nudge_id_param()],
                "responses": ok(delivery.clone(), cancel_errors),
            }},
            "/v1/deliveries/callback/{channel}": {"post": {
                "summary": "A webhook receiver reports what became of a nudge it accepted (delivered, bounced, complained), signed as Standard Webhooks describes with the channel's secret; the signature is the authentication.",
                "operationId": "deliveryCallback",
                "security": [],
                "parameters": [
                    param("channel", "path", "The configured webhook channel's name.", json!({"type": "string"}), true),
                    param("webhook-id", "header", "A unique id of this callback.", json!({"type": "string"}), true),
                    param("webhook-timestamp", "header", "Unix seconds, within 5 minutes of now.", json!({"type": "string"}), true),
                    param("webhook-signature", "header", "`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the channel's secret.", json!({"type": "string"}), true),
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["id", "outcome"], "properties": {
                    "id": {"type": "string", "description": "The nudge's webhook-id, e.g. nudge_42."},
                    "outcome": {"type": "string", "enum": crate::http::callbacks::OUTCOMES}}}}}},
                "responses": {
                    "204": {"description": "Recorded."},
                    "400": error_response("The body is not JSON, or its id or outcome is not valid; the message names which."),
                    "401": error_response("The signature headers are missing or do not match the channel's secret."),
                    "404": error_response("No webhook channel of that name, or the nudge was not sent."),
                    "413": error_response("The body is larger than the desk's body limit."),
                },
            }},
            "/v1/rules": {"get": {
                "summary": "How many nudges of a status each playbook rule has.", "operationId": "ruleCounts",
                "parameters": [param("status", "query", "One status (default proposed).", json!({"type": "string", "enum": crate::store::STATUSES}), false)],
                "responses": ok(json!({"type": "object", "required": ["status", "rules"], "properties": {
                    "status": {"type": "string"},
                    "rules": {"type": "array", "items": {"type": "object", "required": ["rule", "count"], "properties": {"rule": {"type": "string"}, "count": {"type": "integer"}}}}}}), &[]),
            }},
            "/v1/scoring-runs": {"get": {
                "summary": "Scoring runs, newest first.", "operationId": "scoringRuns",
                "parameters": [limit()],
                "responses": ok(json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/ScoringRun"}}}}), &[]),
            }},
            "/v1/scores": {"get": {
                "summary": "A scoring run's scores with their drivers, a page at a time (in customer order).", "operationId": "scores",
                "parameters": [
                    param("run", "query", "The scoring run (default the latest finished).", json!({"type": "integer", "format": "int64", "minimum": 1}), false),
                    param("min_probability", "query", "Only scores at or above this churn probability.", json!({"type": "number", "minimum": 0, "maximum": 1}), false),
                    param("cursor", "query", "The `next_cursor` of the previous page.", json!({"type": "integer", "format": "int64", "minimum": 0}), false),
                    limit(),
                ],
                "responses": ok(json!({"type": "object", "required": ["run", "items", "next_cursor"], "properties": {
                    "run": {"$ref": "#/components/schemas/ScoringRun"},
                    "items": {"type": "array", "items": {"type": "object", "required": ["run_id", "customer", "probability", "scored_at", "model_version", "as_of", "drivers"], "properties": {
                        "run_id": {"type": "integer"}, "customer": {"type": "string"}, "probability": {"type": "number"},
                        "scored_at": {"type": "integer"}, "model_version": {"type": "string"}, "as_of": {"type": "string", "format": "date"}, "drivers": {}}}},
                    "next_cursor": {"type": "string", "nullable": true}}}), &[("404", "No such scoring run, or none has finished yet.")]),
            }},
            "/v1/customers/{customer}/scores": {"get": {
                "summary": "A customer's score history, newest first.", "operationId": "customerScores",
                "parameters": [
                    param("customer", "path", "The customer's id in your systems.", json!({"type": "string", "minLength": 1, "maxLength": 128}), true),
                    limit(),
                ],
                "responses": ok(json!({"type": "object", "required": ["customer", "items"], "properties": {
                    "customer": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "required": ["run_id", "scored_at", "probability", "model_version", "drivers"], "properties": {
                        "run_id": {"type": "integer"}, "scored_at": {"type": "integer"}, "probability": {"type": "number"},
                        "model_version": {"type": "string"}, "drivers": {}}}}}}), &[("404", "No such customer.")]),
            }},
            "/v1/models": {"get": {
                "summary": "The model registry.", "operationId": "models",
                "responses": ok(json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"type": "object", "required": ["version", "created_at", "source", "is_champion"], "properties": {
                    "version": {"type": "string"}, "created_at": {"type": "integer"}, "source": {"type": "string"}, "is_champion": {"type": "boolean"},
                    "promoted_at": {"type": "integer", "nullable": true}, "data_window": {"type": "string", "nullable": true}, "feature_spec_hash": {"type": "string", "nullable": true}}}}}}), &[]),
            }},
            "/v1/models/{version}/report": {"get": {
                "summary": "A model's evaluation report (the numbers of `attune models report`); `champion` is the model attune scores with.",
                "operationId": "modelReport",
                "parameters": [param("version", "path", "A model version, or `champion`.", json!({"type": "string", "minLength": 1}), true)],
                "responses": ok(json!({"type": "object"}), &[("404", "No such model, or it has no evaluation.")]),
            }},
            "/v1/audit": {"get": {
                "summary": "The audit log, newest first: who decided what, when, with the state before and after.", "operationId": "audit",
                "parameters": [
                    param("before", "query", "Entries older than this id (the previous page's `next_before`).", json!({"type": "integer", "format": "int64", "minimum": 1}), false),
                    limit(),
                    param("actor", "query", "Only this person's entries.", json!({"type": "string"}), false),
                    param("action", "query", "Only actions starting with this, e.g. `nudge.`.", json!({"type": "string"}), false),
                    param("subject", "query", "Only this subject, e.g. `nudge:12`.", json!({"type": "string"}), false),
                ],
                "responses": ok(json!({"type": "object", "required": ["items", "next_before"], "properties": {
                    "items": {"type": "array", "items": {"type": "object", "required": ["id", "at", "actor", "action", "subject", "detail"], "properties": {
                        "id": {"type": "integer"}, "at": {"type": "integer"}, "actor": {"type": "string"}, "action": {"type": "string"},
                        "subject": {"type": "string"}, "detail": {"type": "object"}}}},
                    "next_before": {"type": "integer", "nullable": true}}}), &[]),
            }},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token from `attune users token NAME`."},
                "sourceToken": {"type": "http", "scheme": "bearer", "description": "An http source's token, from the environment variable its token_env names."}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Event": {"type": "object", "required": ["customer_id", "kind", "occurred_at"], "properties": {
                    "customer_id": {"type": "string"}, "kind": {"type": "string"}, "occurred_at": {"type": "string"},
                    "value": {"type": "number"}, "source_event_id": {"type": "string"}, "source": {"type": "string"},
                    "attributes": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "ScoringRun": {"type": "object", "required": ["id", "model_version", "as_of", "trigger", "started_at", "customers"], "properties": {
                    "id": {"type": "integer"}, "model_version": {"type": "string"}, "as_of": {"type": "string", "format": "date"}, "trigger": {"type": "string"},
                    "started_at": {"type": "integer"}, "finished_at": {"type": "integer", "nullable": true}, "customers": {"type": "integer"},
                    "scope": {"type": "string", "enum": ["full", "changed"], "description": "full: everyone; changed: customers whose activity changed since their last score"},
                    "pruned_at": {"type": "integer", "nullable": true, "description": "When retention ([scoring] keep_full_runs) removed the run's scores; the run and its drift stay"}}},
                "Delivery": {"type": "object",
                    "description": "An approved nudge handed to the system that sends it.",
                    "required": ["nudge_id", "customer", "rule", "channel", "status", "attempts", "next_at", "created_at", "updated_at"],
                    "properties": {
                        "nudge_id": {"type": "integer", "description": "The nudge delivered; a nudge has at most one delivery."},
                        "customer": {"type": "string", "description": "The customer's id in your systems."},
                        "rule": {"type": "string", "description": "The playbook rule that queued the nudge."},
                        "channel": {"type": "string", "description": "The nudge's channel."},
                        "status": {"type": "string", "enum": super::query::delivery_statuses()},
                        "attempts": {"type": "integer", "description": "Attempts made (since the last retry by a person)."},
                        "next_at": {"type": "integer", "description": "When a pending delivery is due (while a worker holds it, the end of its claim)."},
                        "route": {"type": "string", "nullable": true, "description": "The configured channel (`[[channels]] name`) that last took it."},
                        "reason": {"type": "string", "nullable": true, "description": "Why it waits, or why it was blocked or cancelled, in words."},
                        "last_error": {"type": "string", "nullable": true, "description": "The receiver's answer to the last failed attempt."},
                        "created_at": {"type": "integer"},
                        "updated_at": {"type": "integer"},
                        "sent_at": {"type": "integer", "nullable": true, "description": "When the receiver accepted it."},
                        "outcome": {"type": "string", "nullable": true, "description": "What the receiver reported afterwards (bounced, delivered, ...)."},
                    }},
                "DeliveryCounts": {"type": "object",
                    "description": "Every delivery counted by status; a pending delivery that failed at least once counts as retrying, not pending.",
                    "required": ["pending", "retrying", "sent", "dead", "blocked", "cancelled"],
                    "properties": {
                        "pending": {"type": "integer"}, "retrying": {"type": "integer"}, "sent": {"type": "integer"},
                        "dead": {"type": "integer"}, "blocked": {"type": "integer"}, "cancelled": {"type": "integer"}}},
                "Nudge": {"type": "object",
                    "required": ["id", "customer", "rule", "occasion", "channel", "status", "stage", "reason", "created_at"],
                    "properties": {
                        "id": {"type": "integer"},
                        "customer_id": {"type": "integer"},
                        "customer": {"type": "string", "description": "The customer's id in your systems."},
                        "external_id": {"type": "string"},
                        "rule": {"type": "string", "description": "The playbook rule that queued it."},
                        "kind": {"type": "string"},
                        "occasion": {"type": "string"},
                        "channel": {"type": "string"},
                        "status": {"type": "string", "enum": crate::store::STATUSES},
                        "stage": {"type": "string"},
                        "priority": {"type": "integer"},
                        "holdout": {"type": "boolean"},
                        "expected_value": {"type": "number", "nullable": true, "description": "Value at risk."},
                        "segment": {"type": "string", "nullable": true},
                        "risk_band": {"type": "string", "nullable": true},
                        "message": {"type": "string", "nullable": true, "description": "The message as planned."},
                        "edited_message": {"type": "string", "nullable": true, "description": "A reviewer's edit, kept beside the planned message."},
                        "effective_message": {"type": "string", "nullable": true, "description": "What the customer would get: the edit if there is one."},
                        "edited_by": {"type": "string", "nullable": true},
                        "edited_at": {"type": "integer", "nullable": true},
                        "contact_role": {"type": "string", "nullable": true},
                        "contact_name": {"type": "string", "nullable": true},
                        "send_after": {"type": "integer", "nullable": true},
                        "expires_at": {"type": "integer", "nullable": true},
                        "snoozed_until": {"type": "integer", "nullable": true},
                        "reason": {"type": "object", "description": "Why it was queued: rule, why, probability, drivers."},
                        "probability": {"type": "number", "nullable": true},
                        "created_at": {"type": "integer"},
                        "updated_at": {"type": "integer", "nullable": true},
                        "decided_by": {"type": "string", "nullable": true},
                        "decided_at": {"type": "integer", "nullable": true},
                        "decision_reason": {"type": "string", "nullable": true},
                    }},
            },
        },
    })
}

/// Every (method, path template) the document describes, for tests.
pub fn operations() -> Vec<(String, String)> {
    let doc = document();
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(ops) = item.as_object() {
                for method in ops.keys() {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}
