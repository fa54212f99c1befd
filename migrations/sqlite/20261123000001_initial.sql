-- attune's application tables. apalis keeps its own tables and its own migration
-- history (`_sqlx_migrations`); ours is `attune_migrations`, so the two never collide.
-- Times are unix seconds (INTEGER); days are ISO dates (TEXT 'YYYY-MM-DD').

CREATE TABLE customers (
    id                INTEGER PRIMARY KEY,
    external_id       TEXT NOT NULL UNIQUE,
    signup_date       TEXT NOT NULL,
    plan              TEXT NOT NULL,
    monthly_charge    REAL NOT NULL,
    contract_type     TEXT NOT NULL,
    contract_end      TEXT,
    first_invoice_due TEXT,
    preferred_channel TEXT NOT NULL,
    consent_email     BOOLEAN NOT NULL DEFAULT 0,
    consent_sms       BOOLEAN NOT NULL DEFAULT 0,
    consent_phone     BOOLEAN NOT NULL DEFAULT 0,
    consent_post      BOOLEAN NOT NULL DEFAULT 0,
    churned_on        TEXT,
    attributes        TEXT NOT NULL DEFAULT '{}',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers(id),
    kind            TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    value           REAL,
    attributes      TEXT NOT NULL DEFAULT '{}',
    source          TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    ingested_at     INTEGER NOT NULL,
    UNIQUE (source, source_event_id)
);
CREATE INDEX events_by_customer_time ON events (customer_id, occurred_at);

CREATE TABLE models (
    version     TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    artifact    TEXT NOT NULL,
    is_champion BOOLEAN NOT NULL DEFAULT 0,
    promoted_at INTEGER
);

CREATE TABLE scoring_runs (
    id            INTEGER PRIMARY KEY,
    model_version TEXT NOT NULL,
    as_of         TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    customers     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE scores (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES scoring_runs(id),
    customer_id   INTEGER NOT NULL REFERENCES customers(id),
    model_version TEXT NOT NULL,
    scored_at     INTEGER NOT NULL,
    probability   REAL NOT NULL,
    drivers       TEXT NOT NULL
);
CREATE INDEX scores_by_run ON scores (run_id);
CREATE INDEX scores_by_customer ON scores (customer_id, scored_at);

CREATE TABLE nudges (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers(id),
    kind            TEXT NOT NULL,
    occasion        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    probability     REAL,
    created_at      INTEGER NOT NULL,
    run_id          INTEGER,
    decided_by      TEXT,
    decided_at      INTEGER,
    decision_reason TEXT,
    UNIQUE (customer_id, kind, occasion)
);
CREATE INDEX nudges_by_status ON nudges (status, kind);
CREATE INDEX nudges_by_customer_time ON nudges (customer_id, created_at);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}'
);

-- One row per scheduled tick: the primary key is the tick's identity, so two daemons on
-- one database cannot both enqueue it.
CREATE TABLE ticks (
    id          TEXT PRIMARY KEY,
    schedule    TEXT NOT NULL,
    fire_at     INTEGER NOT NULL,
    claimed_by  TEXT NOT NULL,
    claimed_at  INTEGER NOT NULL,
    enqueued_at INTEGER
);
