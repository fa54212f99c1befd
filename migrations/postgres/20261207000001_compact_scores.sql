-- Compact score history (see the SQLite migration of the same name): the run, the
-- customer, the probability and the drivers as codes and values, keyed by (run, customer).
-- Rows written before keep their JSON drivers (as UTF-8 bytes), read as they are.
DELETE FROM scores a USING scores b
    WHERE a.run_id = b.run_id AND a.customer_id = b.customer_id AND a.id < b.id;
DROP INDEX IF EXISTS scores_by_run;
DROP INDEX IF EXISTS scores_by_run_customer;
ALTER TABLE scores
    DROP COLUMN id,
    DROP COLUMN model_version,
    DROP COLUMN scored_at,
    ALTER COLUMN drivers TYPE BYTEA USING convert_to(drivers::text, 'UTF8');
ALTER TABLE scores ADD PRIMARY KEY (run_id, customer_id);

ALTER TABLE scoring_runs ADD COLUMN drivers_key TEXT;
ALTER TABLE scoring_runs ADD COLUMN pruned_at BIGINT;
