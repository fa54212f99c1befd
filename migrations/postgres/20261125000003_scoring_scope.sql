-- A scoring run scores everyone (`full`, nightly) or only the customers whose activity
-- changed since their last score (`changed`, every few minutes). A customer's current
-- score is the newest one from the latest full run or any run after it.
ALTER TABLE scoring_runs ADD COLUMN scope TEXT NOT NULL DEFAULT 'full';
