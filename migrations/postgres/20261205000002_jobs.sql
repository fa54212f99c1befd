-- Jobs you can leave running (issue 17).
--
-- `job_runs`: one row per execution of a job, written when its tick (or follow-up, or
-- retry) is queued and updated as it runs: the tick-to-start lag, the worker, a heartbeat
-- while it runs, and how it ended (succeeded, skipped with the reason, failed with a retry
-- due, aborted, dead after its last attempt, interrupted when its worker died).
CREATE TABLE job_runs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL,
    job_key      TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    status       TEXT NOT NULL,
    worker       TEXT,
    due_ms       BIGINT NOT NULL,
    queued_at    BIGINT NOT NULL,
    started_ms   BIGINT,
    heartbeat_at BIGINT,
    finished_at  BIGINT,
    finished_ms  BIGINT,
    retry_at     BIGINT,
    error        TEXT,
    detail       TEXT
);
CREATE INDEX job_runs_by_status ON job_runs (status, kind);
CREATE INDEX job_runs_by_key ON job_runs (job_key);

-- Leases: at most one holder of each name at a time (`score`, `plan`, `retrain`,
-- `pull:SOURCE`), renewed while the holder works; an expired lease may be taken over, so a
-- dead holder never blocks for longer than its lease.
CREATE TABLE run_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- A scoring run knows who ran it; one left unfinished by a holder that no longer holds
-- the scoring lease was interrupted, and is marked failed with the reason.
ALTER TABLE scoring_runs ADD COLUMN holder TEXT;
ALTER TABLE scoring_runs ADD COLUMN failed_at BIGINT;
ALTER TABLE scoring_runs ADD COLUMN error TEXT;
