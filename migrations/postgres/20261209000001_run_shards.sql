-- Many daemons, one run (issue 22): a scoring run is split into shards, ranges of customer
-- ids sized by the data (about `[scoring] shard_customers` active customers each; one
-- shard on SQLite). Any daemon takes any shard; a claim counts an attempt and lasts until
-- `lease_until`, renewed while the shard is worked. Every write of a shard's scores is
-- fenced by its attempt: a holder that lost its claim (it stalled or was killed and the
-- shard was taken back) can no longer write, and the new holder first removes what an
-- earlier attempt wrote in the range. The run finishes once, when its last shard is done.
CREATE TABLE run_shards (
    run_id      BIGINT NOT NULL REFERENCES scoring_runs(id),
    shard       INTEGER NOT NULL,
    -- The customers with ids in (after_id, upto_id].
    after_id    BIGINT NOT NULL,
    upto_id     BIGINT NOT NULL,
    -- Customers in the range when the run was split (what sized it).
    planned     BIGINT NOT NULL,
    -- A `changed` run: the ids to score, 8 bytes each, little-endian; NULL: every active
    -- customer in the range.
    ids         BYTEA,
    -- queued, running, done or failed.
    status      TEXT NOT NULL DEFAULT 'queued',
    holder      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until BIGINT,
    started_at  BIGINT,
    finished_at BIGINT,
    -- What the shard scored: customers, at risk, and its drift counts (JSON).
    scored      BIGINT,
    tally       TEXT,
    error       TEXT,
    PRIMARY KEY (run_id, shard)
);
CREATE INDEX run_shards_open ON run_shards (status, run_id);

-- How many shards the run was split into; NULL for runs before issue 22.
ALTER TABLE scoring_runs ADD COLUMN shards INTEGER;
