-- SQLite stores an event's kind as its code and no attributes as NULL here (see its
-- migration of this version). PostgreSQL keeps the kind's name and jsonb attributes: its
-- ingest writes by COPY and met its target. Kept so both histories have the same versions.
SELECT 1;
