-- Model lifecycle: what each version was trained on, who made which version champion and
-- why, and how far each scoring run's customers drifted from the training data.
-- Times are unix seconds (BIGINT); JSON is JSONB.

ALTER TABLE models ADD COLUMN data_window TEXT;
ALTER TABLE models ADD COLUMN feature_spec_hash TEXT;

-- One row per change of champion, people's and the retrain job's alike. A rollback is a
-- promotion too: it restores `previous_version` of the latest row.
CREATE TABLE model_promotions (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version          TEXT NOT NULL REFERENCES models(version),
    previous_version TEXT REFERENCES models(version),
    at               BIGINT NOT NULL,
    actor            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    detail           JSONB NOT NULL DEFAULT '{}'
);

-- The champion from before this history was kept starts it.
INSERT INTO model_promotions (version, previous_version, at, actor, reason, detail)
SELECT version, NULL, COALESCE(promoted_at, created_at), 'migration', 'champion before promotion history was kept', '{}'
FROM models WHERE is_champion;

-- Population stability index of each feature in a scoring run against the champion's
-- training data, with the bucket shares on both sides (JSON arrays). One row per feature
-- and run; the unique index leads with run_id, so it also serves reading a run's drift.
CREATE TABLE feature_drift (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id   BIGINT NOT NULL REFERENCES scoring_runs(id),
    feature  TEXT NOT NULL,
    psi      DOUBLE PRECISION NOT NULL,
    expected JSONB NOT NULL,
    actual   JSONB NOT NULL,
    UNIQUE (run_id, feature)
);

-- Shares of a run's scores in ten equal-width bins (a JSON array).
CREATE TABLE score_distributions (
    run_id BIGINT PRIMARY KEY REFERENCES scoring_runs(id),
    shares JSONB NOT NULL
);
