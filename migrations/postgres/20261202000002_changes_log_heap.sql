-- Changed-customer marks (issue 3): the log readers fold into `activity_changes` needs no
-- key on PostgreSQL. The fold groups by customer and keeps the latest time, so a mark
-- written twice counts once; without the primary key, a bulk ingest appends a million
-- marks with `COPY` instead of a million index entries, and writers of the same second
-- never wait on each other's marks.
ALTER TABLE activity_changes_log DROP CONSTRAINT activity_changes_log_pkey;
