-- Responses to requests that carried an Idempotency-Key. The key is stored hashed and the
-- response body encrypted with a key derived from the caller's token and the
-- Idempotency-Key (neither is stored), so a response that holds a new key's secret is
-- not readable from the database.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope        TEXT NOT NULL,
    key_hash     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,
    response     TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (scope, key_hash)
);
