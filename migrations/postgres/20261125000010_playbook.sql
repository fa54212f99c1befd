-- The relationship playbook (issue 5): the contacts of business accounts, and the
-- planning instant of every nudge.

-- People at a customer, each with a role a playbook rule can address (operations users,
-- decision makers, ...), their channel addresses and their own consent per channel.
CREATE TABLE contacts (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       BIGINT NOT NULL REFERENCES customers(id),
    name              TEXT NOT NULL,
    role              TEXT NOT NULL,
    email             TEXT,
    phone             TEXT,
    address           TEXT,
    preferred_channel TEXT NOT NULL,
    consent_email     BOOLEAN NOT NULL DEFAULT false,
    consent_sms       BOOLEAN NOT NULL DEFAULT false,
    consent_phone     BOOLEAN NOT NULL DEFAULT false,
    consent_post      BOOLEAN NOT NULL DEFAULT false,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (customer_id, role, name)
);

-- When planning decided the nudge, in the day it planned for (unix seconds). `created_at`
-- is the wall clock of the insert; a plan run for a past day (a backfill, a simulation)
-- places its nudges on that day, and the contact cap and `report uplift` count from here.
ALTER TABLE nudges ADD COLUMN planned_at BIGINT;
UPDATE nudges SET planned_at = created_at;
