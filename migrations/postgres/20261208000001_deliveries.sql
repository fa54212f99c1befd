-- Deliveries (issue 20): see the SQLite migration of the same name for the columns.
CREATE TABLE deliveries (
    nudge_id    BIGINT PRIMARY KEY REFERENCES nudges(id),
    channel     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,
    route       TEXT,
    claimed_by  TEXT,
    reason      TEXT,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    outcome     TEXT,
    outcome_at  BIGINT
);
CREATE INDEX deliveries_due ON deliveries (status, next_at);

CREATE TABLE delivery_channels (
    name         TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    paused_until BIGINT,
    reason       TEXT,
    updated_at   BIGINT NOT NULL
);

CREATE FUNCTION attune_nudge_delivers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'approved' AND NOT NEW.holdout THEN
        INSERT INTO deliveries (nudge_id, channel, status, next_at, created_at, updated_at)
        VALUES (NEW.id, NEW.channel, 'pending',
                COALESCE(NEW.send_after, NEW.planned_at, NEW.created_at),
                extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint)
        ON CONFLICT (nudge_id) DO UPDATE SET next_at = EXCLUDED.next_at, updated_at = EXCLUDED.updated_at
            WHERE deliveries.status = 'pending' AND deliveries.attempts = 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER nudges_deliver AFTER INSERT OR UPDATE OF status, send_after ON nudges
    FOR EACH ROW EXECUTE FUNCTION attune_nudge_delivers();

INSERT INTO deliveries (nudge_id, channel, status, next_at, created_at, updated_at)
    SELECT id, channel, 'pending', COALESCE(send_after, planned_at, created_at),
           extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint
    FROM nudges WHERE status = 'approved' AND NOT holdout;
