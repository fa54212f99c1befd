-- Declared event kinds (issue 16): a business's own kinds get codes in event_kinds the
-- first time the config declares them (101 and up), and each may mean one of attune's
-- kinds to the playbook. The meaning is the config's, written here by every process that
-- loads the catalog, so SQL summaries (open complaints, usage) select kinds by meaning.
-- attune's own kinds mean themselves.
ALTER TABLE event_kinds ADD COLUMN meaning TEXT;
UPDATE event_kinds SET meaning = name WHERE code < 101;
