-- The review desk (issue 6): people who sign in, their browser sessions, and API tokens.
-- Secrets are never stored: a password as its argon2 hash, a session cookie and an API
-- token as their SHA-256. Times are unix seconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    -- viewer (reads), reviewer (decides on nudges), admin (also manages users)
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- A signed-in browser. The cookie holds a random value; only its hash is kept here, with
-- the synchronizer token every form of that session must carry.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Bearer tokens for API clients, with the role of the user they belong to.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    -- The token's first characters, so a person can tell tokens apart.
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- The review queue filtered by rule pages by value at risk within a status and rule.
CREATE INDEX nudges_queue_by_rule ON nudges (status, kind, expected_value DESC, id);
-- A nudge's own history on its page, and the audit page filtered by subject.
CREATE INDEX audit_by_subject ON audit_log (subject, id);
