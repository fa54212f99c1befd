-- Sign-in throttling (issue 17): failed sign-ins counted per key (`user:NAME`, known or
-- not, and `addr:IP`) within a window; past the limit the key is locked until
-- `locked_until`, which an admin can lift (`attune users unlock NAME`).
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT
);
