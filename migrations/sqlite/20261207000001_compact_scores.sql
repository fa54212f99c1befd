-- Compact score history. A score row was ~470 bytes (the model version as text, the page's
-- time, the drivers as JSON with their sentences, a row id and two indexes); now it is the
-- run, the customer, the probability and the drivers as a few bytes of codes and values
-- (`model::explain`), in one b-tree keyed by (run, customer). What turns the codes back
-- into drivers is kept once per run (`scoring_runs.drivers_key`); the model version and
-- the time are the run's. Rows written before keep their JSON drivers, read as they are.
CREATE TABLE scores_compact (
    run_id      INTEGER NOT NULL REFERENCES scoring_runs(id),
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    probability REAL NOT NULL,
    drivers     BLOB NOT NULL,
    PRIMARY KEY (run_id, customer_id)
) WITHOUT ROWID;
INSERT OR REPLACE INTO scores_compact (run_id, customer_id, probability, drivers)
    SELECT run_id, customer_id, probability, CAST(drivers AS BLOB) FROM scores ORDER BY id;
DROP TABLE scores;
ALTER TABLE scores_compact RENAME TO scores;

-- The JSON of a `model::explain::DriverKey`; NULL for runs written before.
ALTER TABLE scoring_runs ADD COLUMN drivers_key TEXT;
-- When retention removed the run's scores ([scoring] keep_full_runs): the run, its counts
-- and its drift stay.
ALTER TABLE scoring_runs ADD COLUMN pruned_at INTEGER;
