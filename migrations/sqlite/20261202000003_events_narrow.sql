-- A narrower event row for SQLite ingest (issue 3).
--
-- Writing the event row is most of what ingest's writer does per event. Two columns carried
-- text that says nothing the schema does not already know:
--   - `kind` repeated the kind's name ("complaint_opened", 16 bytes); it is now the kind's
--     code from `event_kinds`, the same code the rollups use (one byte);
--   - `attributes` held '{}' for every event that had none; it is now NULL then.
-- With the sqlite3 module, inserting a million such rows took 0.71 s against 0.95 s for
-- the old row (median of three alternated rounds).
--
-- PostgreSQL keeps the kind's name and a jsonb '{}' (its migration of this version does
-- nothing): its ingest writes by COPY and met its target. Readers ask
-- `store::events::kind_name` / `kinds_in` for the backend's spelling.

CREATE TABLE events_narrow (
    day             INTEGER NOT NULL,
    customer_id     INTEGER NOT NULL,
    source          TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    id              INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    value           REAL,
    attributes      TEXT,
    ingested_at     INTEGER NOT NULL,
    PRIMARY KEY (day, customer_id, source, source_event_id)
) WITHOUT ROWID;
INSERT INTO events_narrow (day, customer_id, source, source_event_id, id, kind, occurred_at, value, attributes, ingested_at)
SELECT e.day, e.customer_id, e.source, e.source_event_id, e.id, k.code, e.occurred_at, e.value,
       NULLIF(e.attributes, '{}'), e.ingested_at
FROM events e JOIN event_kinds k ON k.name = e.kind
ORDER BY e.day, e.customer_id, e.source, e.source_event_id;
DROP TABLE events;
ALTER TABLE events_narrow RENAME TO events;
