-- Activity at scale (issue 3): per-customer daily rollups kept current by ingest, the
-- customers whose activity changed since they were last scored, source cursors, and a
-- quarantine that keeps every event attune could not store yet with the reason.
-- Days in rollups are whole days since 1970-01-01 (UTC); totals are in thousandths.

-- The event vocabulary's stable codes, so rollups stay narrow and SQL readers can join.
CREATE TABLE event_kinds (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO event_kinds (code, name) VALUES
    (1, 'usage'), (2, 'login'), (3, 'invoice_issued'), (4, 'payment_made'),
    (5, 'payment_failed'), (6, 'complaint_opened'), (7, 'complaint_resolved'),
    (8, 'complaint_reopened'), (9, 'support_contact'), (10, 'meter_reading'),
    (11, 'plan_change'), (12, 'contract_renewed'), (13, 'cancellation_requested'),
    (14, 'churned');

-- One row per customer, day and kind: how many events and the sum of their values (in
-- thousandths). Ingest adds to it in the transaction that stores the events, so features
-- read these rows, never the raw history.
CREATE TABLE activity_daily (
    customer_id INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    total_milli INTEGER NOT NULL,
    PRIMARY KEY (customer_id, day, kind)
) WITHOUT ROWID;

INSERT INTO activity_daily (customer_id, day, kind, n, total_milli)
SELECT e.customer_id, e.occurred_at / 86400 - (e.occurred_at % 86400 < 0), k.code, COUNT(*),
       SUM(CAST(ROUND(COALESCE(e.value, 0) * 1000) AS INTEGER))
FROM events e JOIN event_kinds k ON k.name = e.kind
GROUP BY e.customer_id, e.occurred_at / 86400 - (e.occurred_at % 86400 < 0), k.code;

-- Customers whose activity (or record) changed since they were last scored: the daemon
-- re-scores just these every few minutes.
CREATE TABLE activity_changes (
    customer_id INTEGER PRIMARY KEY,
    changed_at  INTEGER NOT NULL
);

-- Where each pulled source has got to, committed with the events it covers.
CREATE TABLE source_cursors (
    source     TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Files taken from a drop directory: rows committed so far, so a crash mid-file resumes
-- at the next row, and the outcome once the file is finished.
CREATE TABLE source_files (
    source      TEXT NOT NULL,
    file        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    lines_done  INTEGER NOT NULL DEFAULT 0,
    stored      INTEGER NOT NULL DEFAULT 0,
    duplicate   INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (source, file, fingerprint)
);

-- Quarantine now keeps every event that could not be stored, whatever the reason
-- (unknown customer or kind, bad timestamp, value out of range, malformed row), with the
-- raw fields as received so a retry can map them again.
CREATE TABLE quarantine_v2 (
    id                   INTEGER PRIMARY KEY,
    source               TEXT NOT NULL,
    source_event_id      TEXT NOT NULL,
    customer_external_id TEXT,
    reason_code          TEXT NOT NULL DEFAULT 'unknown_customer',
    reason               TEXT NOT NULL,
    location             TEXT,
    raw                  TEXT NOT NULL DEFAULT '{}',
    event                TEXT,
    received_at          INTEGER NOT NULL,
    released_at          INTEGER,
    UNIQUE (source, source_event_id)
);
INSERT INTO quarantine_v2 (id, source, source_event_id, customer_external_id, reason_code, reason, location, raw, event, received_at, released_at)
SELECT id, source, source_event_id, customer_external_id, 'unknown_customer', reason, NULL, '{}', event, received_at, released_at
FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_v2 RENAME TO quarantine;
CREATE INDEX quarantine_open ON quarantine (released_at, id);
