-- Ingest at scale (issue 3): events and rollups keyed by day first.
--
-- Activity arrives roughly in time order, so keys that start with the day put each
-- transaction's new index entries at the end of the tree, next to each other. Keys that
-- start with the customer (the old `(customer_id, occurred_at)` index, the unique
-- `(source, source_event_id)` text key, and rollups by customer) put them all over the
-- tree: every million-row transaction rewrote most of each index, and that, not parsing,
-- held ingest at a fifth of its target.
--
-- An event is now identified by its day, customer, source and source event id: a source
-- sending the same event again (a retried request, a file dropped twice) sends the same
-- day and customer, so it is still a duplicate. The same source event id sent for another
-- day or customer is stored as another event.
--
-- On SQLite the events themselves are stored in that key's order (WITHOUT ROWID): one
-- tree written per event instead of a table and an index, 2.6 times less work per event
-- measured with the sqlite3 shell. `id` stays the event's number, taken from
-- `events_next_id`.
--
-- Readers seek by day: a page of customers over a window reads each day's range of the
-- page; one customer's history seeks each day it spans.
--
-- `events` no longer references `customers`: ingest stores only events of customers it
-- has just resolved to their row ids, and customers are never deleted, so the per-row
-- check bought nothing and cost a lookup per event.

CREATE TABLE events_by_day (
    day             INTEGER NOT NULL,
    customer_id     INTEGER NOT NULL,
    source          TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    id              INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    value           REAL,
    attributes      TEXT NOT NULL DEFAULT '{}',
    ingested_at     INTEGER NOT NULL,
    PRIMARY KEY (day, customer_id, source, source_event_id)
) WITHOUT ROWID;
INSERT INTO events_by_day (day, customer_id, source, source_event_id, id, kind, occurred_at, value, attributes, ingested_at)
SELECT occurred_at / 86400 - (occurred_at % 86400 < 0), customer_id, source, source_event_id, id, kind, occurred_at,
       value, attributes, ingested_at
FROM events ORDER BY 1, 2, 3, 4;

-- The next event id: ingest holds the write lock, takes ids from here and writes back
-- where it got to in the same transaction.
CREATE TABLE events_next_id (next INTEGER NOT NULL);
INSERT INTO events_next_id (next) SELECT COALESCE(MAX(id), 0) + 1 FROM events;

DROP TABLE events;
ALTER TABLE events_by_day RENAME TO events;

CREATE TABLE activity_daily_by_day (
    day         INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    total_milli INTEGER NOT NULL,
    PRIMARY KEY (day, customer_id, kind)
) WITHOUT ROWID;
INSERT INTO activity_daily_by_day (day, customer_id, kind, n, total_milli)
SELECT day, customer_id, kind, n, total_milli FROM activity_daily ORDER BY day, customer_id, kind;
DROP TABLE activity_daily;
ALTER TABLE activity_daily_by_day RENAME TO activity_daily;

-- Ingest notes which customers changed in a log keyed by when, so a request of a thousand
-- events appends to its end instead of updating a thousand scattered rows of
-- `activity_changes`; readers fold the log into `activity_changes` first.
CREATE TABLE activity_changes_log (
    changed_at  INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    PRIMARY KEY (changed_at, customer_id)
) WITHOUT ROWID;
