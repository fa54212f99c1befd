-- Events that could not be stored yet (their customer is unknown), kept with the reason
-- until `attune quarantine retry` stores them: never dropped silently.
CREATE TABLE quarantine (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source               TEXT NOT NULL,
    source_event_id      TEXT NOT NULL,
    customer_external_id TEXT NOT NULL,
    reason               TEXT NOT NULL,
    event                JSONB NOT NULL,
    received_at          BIGINT NOT NULL,
    released_at          BIGINT,
    UNIQUE (source, source_event_id)
);
CREATE INDEX quarantine_open ON quarantine (released_at, id);
