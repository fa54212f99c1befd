-- The nudge lifecycle shared by the playbook (issue 5) and the review desk (issue 6).
-- `kind` holds the playbook rule's name. Statuses: proposed (waiting for review),
-- deferred (over the contact cap; waits for send_after), approved, rejected, snoozed
-- (until snoozed_until), withdrawn (its trigger no longer holds; decision_reason says why),
-- expired (past expires_at before it could go out), holdout (recorded for the randomised
-- holdout, never sent or reviewed). Times are unix seconds.

ALTER TABLE nudges ADD COLUMN stage TEXT NOT NULL DEFAULT 'unspecified';
ALTER TABLE nudges ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nudges ADD COLUMN holdout BOOLEAN NOT NULL DEFAULT 0;
-- Churn probability x monthly revenue x the value horizon in months.
ALTER TABLE nudges ADD COLUMN expected_value REAL;
ALTER TABLE nudges ADD COLUMN segment TEXT;
ALTER TABLE nudges ADD COLUMN risk_band TEXT;
-- The message as the customer would see it, and a reviewer's edit kept beside it.
ALTER TABLE nudges ADD COLUMN message TEXT;
ALTER TABLE nudges ADD COLUMN edited_message TEXT;
ALTER TABLE nudges ADD COLUMN edited_by TEXT;
ALTER TABLE nudges ADD COLUMN edited_at INTEGER;
-- Who receives it: a business account's contact with the rule's role.
ALTER TABLE nudges ADD COLUMN contact_role TEXT;
ALTER TABLE nudges ADD COLUMN contact_name TEXT;
ALTER TABLE nudges ADD COLUMN send_after INTEGER;
ALTER TABLE nudges ADD COLUMN expires_at INTEGER;
ALTER TABLE nudges ADD COLUMN snoozed_until INTEGER;
ALTER TABLE nudges ADD COLUMN updated_at INTEGER;

UPDATE nudges SET updated_at = COALESCE(decided_at, created_at);

-- The review queue pages by value at risk within a status.
CREATE INDEX nudges_queue ON nudges (status, expected_value DESC, id);
