-- Ingest at scale (issue 3): events and rollups keyed by day first.
--
-- Activity arrives roughly in time order, so keys that start with the day put each
-- transaction's new index entries at the end of the tree, next to each other. Keys that
-- start with the customer (the old `(customer_id, occurred_at)` index, the unique
-- `(source, source_event_id)` text key, and rollups by customer) put them all over the
-- tree, so every large transaction dirtied most of each index.
--
-- An event is now identified by its day, customer, source and source event id: a source
-- sending the same event again (a retried request, a file dropped twice) sends the same
-- day and customer, so it is still a duplicate. The same source event id sent for another
-- day or customer is stored as another event.
--
-- `events` no longer references `customers`: ingest stores only events of customers it
-- has just resolved to their row ids, and customers are never deleted, so the per-row
-- check bought nothing and cost a trigger per event.

ALTER TABLE events DROP CONSTRAINT events_customer_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_source_source_event_id_key;
DROP INDEX events_by_customer_time;
ALTER TABLE events ADD COLUMN day INTEGER;
UPDATE events SET day = floor(occurred_at / 86400.0)::integer;
ALTER TABLE events ALTER COLUMN day SET NOT NULL;
CREATE UNIQUE INDEX events_by_day_customer ON events (day, customer_id, source, source_event_id);

ALTER TABLE activity_daily DROP CONSTRAINT activity_daily_pkey;
ALTER TABLE activity_daily ADD PRIMARY KEY (day, customer_id, kind);

-- Ingest notes which customers changed in a log keyed by when, so a request of a thousand
-- events appends to its end instead of updating a thousand scattered rows of
-- `activity_changes`; readers fold the log into `activity_changes` first.
CREATE TABLE activity_changes_log (
    changed_at  BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    PRIMARY KEY (changed_at, customer_id)
);
