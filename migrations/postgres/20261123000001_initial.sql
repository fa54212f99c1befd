-- attune's application tables. apalis keeps its own tables and its own migration
-- history (`_sqlx_migrations`); ours is `attune_migrations`, so the two never collide.
-- Times are unix seconds (BIGINT); days are DATE; JSON is JSONB.

CREATE TABLE customers (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id       TEXT NOT NULL UNIQUE,
    signup_date       DATE NOT NULL,
    plan              TEXT NOT NULL,
    monthly_charge    DOUBLE PRECISION NOT NULL,
    contract_type     TEXT NOT NULL,
    contract_end      DATE,
    first_invoice_due DATE,
    preferred_channel TEXT NOT NULL,
    consent_email     BOOLEAN NOT NULL DEFAULT false,
    consent_sms       BOOLEAN NOT NULL DEFAULT false,
    consent_phone     BOOLEAN NOT NULL DEFAULT false,
    consent_post      BOOLEAN NOT NULL DEFAULT false,
    churned_on        DATE,
    attributes        JSONB NOT NULL DEFAULT '{}',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     BIGINT NOT NULL REFERENCES customers(id),
    kind            TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    value           DOUBLE PRECISION,
    attributes      JSONB NOT NULL DEFAULT '{}',
    source          TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    ingested_at     BIGINT NOT NULL,
    UNIQUE (source, source_event_id)
);
CREATE INDEX events_by_customer_time ON events (customer_id, occurred_at);

CREATE TABLE models (
    version     TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    source      TEXT NOT NULL,
    artifact    JSONB NOT NULL,
    is_champion BOOLEAN NOT NULL DEFAULT false,
    promoted_at BIGINT
);

CREATE TABLE scoring_runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_version TEXT NOT NULL,
    as_of         DATE NOT NULL,
    trigger       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    customers     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE scores (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        BIGINT NOT NULL REFERENCES scoring_runs(id),
    customer_id   BIGINT NOT NULL REFERENCES customers(id),
    model_version TEXT NOT NULL,
    scored_at     BIGINT NOT NULL,
    probability   DOUBLE PRECISION NOT NULL,
    drivers       JSONB NOT NULL
);
CREATE INDEX scores_by_run ON scores (run_id);
CREATE INDEX scores_by_customer ON scores (customer_id, scored_at);

CREATE TABLE nudges (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     BIGINT NOT NULL REFERENCES customers(id),
    kind            TEXT NOT NULL,
    occasion        TEXT NOT NULL,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          JSONB NOT NULL,
    probability     DOUBLE PRECISION,
    created_at      BIGINT NOT NULL,
    run_id          BIGINT,
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_reason TEXT,
    UNIQUE (customer_id, kind, occasion)
);
CREATE INDEX nudges_by_status ON nudges (status, kind);
CREATE INDEX nudges_by_customer_time ON nudges (customer_id, created_at);

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  JSONB NOT NULL DEFAULT '{}'
);

-- One row per scheduled tick: the primary key is the tick's identity, so two daemons on
-- one database cannot both enqueue it.
CREATE TABLE ticks (
    id          TEXT PRIMARY KEY,
    schedule    TEXT NOT NULL,
    fire_at     BIGINT NOT NULL,
    claimed_by  TEXT NOT NULL,
    claimed_at  BIGINT NOT NULL,
    enqueued_at BIGINT
);
