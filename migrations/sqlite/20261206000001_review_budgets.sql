-- Weekly review budgets (issue 19): how many nudges of a rule marketing reviews in a
-- week; the rest wait, deferred, most valuable first (playbook::budget).
CREATE TABLE review_budgets (
    rule    TEXT PRIMARY KEY,
    weekly  INTEGER NOT NULL,
    set_by  TEXT NOT NULL,
    set_at  INTEGER NOT NULL
);

-- The week (its Monday 00:00 UTC, unix seconds) whose budget a nudge took a place in;
-- NULL for a nudge not yet counted.
ALTER TABLE nudges ADD COLUMN budget_week INTEGER;
-- Deferred by the budget, waiting for a place.
ALTER TABLE nudges ADD COLUMN over_budget BOOLEAN NOT NULL DEFAULT 0;

CREATE INDEX nudges_by_rule_budget ON nudges (kind, status, budget_week);
