-- Deliveries (issue 20): each approved nudge handed to the system that sends it, once.
-- A delivery is made in the transaction that approves its nudge (by a reviewer, by its
-- rule, or on waking from a snooze), by the triggers below, so no path that approves can
-- forget it. `status`: pending (due at `next_at`; while a worker holds it, `next_at` is
-- the end of its claim, so a worker killed mid-send gives it back by itself), sent,
-- dead (out of attempts), blocked (may no longer go: `reason` says why; never sent),
-- cancelled (by a person). Times are unix seconds.
CREATE TABLE deliveries (
    nudge_id    INTEGER PRIMARY KEY REFERENCES nudges(id),
    -- The nudge's channel (email, sms, phone, post, task); `[[channels]]` carry them.
    channel     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    -- The configured channel (`[[channels]] name`) that last took it, and the worker.
    route       TEXT,
    claimed_by  TEXT,
    -- Why it waits or why it was blocked, in words.
    reason      TEXT,
    -- The receiver's answer to the last attempt that failed (status and body, cut short).
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    -- What the receiver reported afterwards through the signed callback (bounced, ...).
    outcome     TEXT,
    outcome_at  INTEGER
);
CREATE INDEX deliveries_due ON deliveries (status, next_at);

-- A configured channel's breaker: paused until a time after failures in a row, and why.
CREATE TABLE delivery_channels (
    name         TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    paused_until INTEGER,
    reason       TEXT,
    updated_at   INTEGER NOT NULL
);

CREATE TRIGGER nudge_inserted_approved AFTER INSERT ON nudges
WHEN NEW.status = 'approved' AND NEW.holdout = 0
BEGIN
    INSERT INTO deliveries (nudge_id, channel, status, next_at, created_at, updated_at)
    VALUES (NEW.id, NEW.channel, 'pending', COALESCE(NEW.send_after, NEW.planned_at, NEW.created_at),
            unixepoch(), unixepoch())
    ON CONFLICT (nudge_id) DO NOTHING;
END;

CREATE TRIGGER nudge_approved AFTER UPDATE OF status, send_after ON nudges
WHEN NEW.status = 'approved' AND NEW.holdout = 0
BEGIN
    INSERT INTO deliveries (nudge_id, channel, status, next_at, created_at, updated_at)
    VALUES (NEW.id, NEW.channel, 'pending', COALESCE(NEW.send_after, NEW.planned_at, NEW.created_at),
            unixepoch(), unixepoch())
    ON CONFLICT (nudge_id) DO UPDATE SET next_at = excluded.next_at, updated_at = excluded.updated_at
        WHERE deliveries.status = 'pending' AND deliveries.attempts = 0;
END;

INSERT INTO deliveries (nudge_id, channel, status, next_at, created_at, updated_at)
    SELECT id, channel, 'pending', COALESCE(send_after, planned_at, created_at), unixepoch(), unixepoch()
    FROM nudges WHERE status = 'approved' AND holdout = 0;
