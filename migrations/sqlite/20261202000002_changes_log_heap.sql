-- PostgreSQL drops the primary key of `activity_changes_log` here. SQLite keeps it: it
-- folds the log in key order, and its ingest writes the marks in key order anyway.
SELECT 1;
