-- Activity at scale (issue 3): per-customer daily rollups kept current by ingest, the
-- customers whose activity changed since they were last scored, source cursors, and a
-- quarantine that keeps every event attune could not store yet with the reason.
-- Days in rollups are whole days since 1970-01-01 (UTC); totals are in thousandths.

-- The event vocabulary's stable codes, so rollups stay narrow and SQL readers can join.
CREATE TABLE event_kinds (
    code SMALLINT PRIMARY KEY,
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
    customer_id BIGINT NOT NULL,
    day         INTEGER NOT NULL,
    kind        SMALLINT NOT NULL,
    n           BIGINT NOT NULL,
    total_milli BIGINT NOT NULL,
    PRIMARY KEY (customer_id, day, kind)
);

INSERT INTO activity_daily (customer_id, day, kind, n, total_milli)
SELECT e.customer_id, floor(e.occurred_at / 86400.0)::integer, k.code, COUNT(*),
       SUM(round(COALESCE(e.value, 0) * 1000)::bigint)
FROM events e JOIN event_kinds k ON k.name = e.kind
GROUP BY e.customer_id, floor(e.occurred_at / 86400.0)::integer, k.code;

-- Customers whose activity (or record) changed since they were last scored: the daemon
-- re-scores just these every few minutes.
CREATE TABLE activity_changes (
    customer_id BIGINT PRIMARY KEY,
    changed_at  BIGINT NOT NULL
);

-- Where each pulled source has got to, committed with the events it covers.
CREATE TABLE source_cursors (
    source     TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Files taken from a drop directory: rows committed so far, so a crash mid-file resumes
-- at the next row, and the outcome once the file is finished.
CREATE TABLE source_files (
    source      TEXT NOT NULL,
    file        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    lines_done  BIGINT NOT NULL DEFAULT 0,
    stored      BIGINT NOT NULL DEFAULT 0,
    duplicate   BIGINT NOT NULL DEFAULT 0,
    quarantined BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (source, file, fingerprint)
);

-- Quarantine now keeps every event that could not be stored, whatever the reason
-- (unknown customer or kind, bad timestamp, value out of range, malformed row), with the
-- raw fields as received so a retry can map them again.
ALTER TABLE quarantine ALTER COLUMN event DROP NOT NULL;
ALTER TABLE quarantine ALTER COLUMN customer_external_id DROP NOT NULL;
ALTER TABLE quarantine ADD COLUMN reason_code TEXT NOT NULL DEFAULT 'unknown_customer';
ALTER TABLE quarantine ADD COLUMN location TEXT;
ALTER TABLE quarantine ADD COLUMN raw JSONB NOT NULL DEFAULT '{}';
