-- The key list read model (projection `key_list`): one row per API key, never a secret
-- or its hash. Timestamps are RFC 3339 UTC text with microseconds, so that they sort and
-- compare as strings; scopes and allowed IPs are JSON arrays. `version` is the stream
-- version of the last lifecycle event applied (handlers skip anything not newer).
CREATE TABLE IF NOT EXISTS api_keys (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL,
    name                  TEXT NOT NULL,
    prefix                TEXT NOT NULL,
    environment           TEXT NOT NULL,
    scopes                TEXT NOT NULL,
    allowed_ips           TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    created_by            TEXT NOT NULL,
    revoked_at            TEXT,
    revoked_by            TEXT,
    revocation_reason     TEXT,
    expires_at            TEXT,
    rotated_from          TEXT,
    rotated_to            TEXT,
    rate_limit_per_minute BIGINT,
    version               BIGINT NOT NULL,
    -- Usage counters: filled by the usage issue; 0 / NULL until then.
    total_calls           BIGINT NOT NULL DEFAULT 0,
    successful_calls      BIGINT NOT NULL DEFAULT 0,
    client_error_calls    BIGINT NOT NULL DEFAULT 0,
    server_error_calls    BIGINT NOT NULL DEFAULT 0,
    rate_limited_calls    BIGINT NOT NULL DEFAULT 0,
    last_used_at          TEXT
);

-- The list's order and cursor: newest first within an organisation.
CREATE INDEX IF NOT EXISTS api_keys_org_created ON api_keys (org_id, created_at DESC, id DESC);

-- The organisations read model (projection `organizations`).
CREATE TABLE IF NOT EXISTS organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    plan       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version    BIGINT NOT NULL
);
