-- The usage read model (projection `key_usage`), built from `ApiCallRecorded` on the
-- `apikey-usage-<key id>` streams. Its own tables, apart from `api_keys`: rebuilding the
-- key list never wipes usage, and usage never waits for the key list. (The usage columns
-- of `api_keys` from 201 stay, unused: applied migrations are never edited.)
--
-- Counters: successful = 1xx/2xx/3xx, client errors = 4xx except 429, server errors =
-- 5xx, rate limited = 429; total = their sum. `latency_us_total` is the sum of the calls'
-- latencies (average = total / calls). Timestamps are RFC 3339 UTC text with
-- microseconds, so they sort and compare as strings. Rows are upserted by adding a
-- batch's counts; exactly-once comes from the projector's checkpoint, moved in the same
-- transaction.

-- One row per key that has been called.
CREATE TABLE IF NOT EXISTS key_usage (
    key_id             TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL,
    total_calls        BIGINT NOT NULL DEFAULT 0,
    successful_calls   BIGINT NOT NULL DEFAULT 0,
    client_error_calls BIGINT NOT NULL DEFAULT 0,
    server_error_calls BIGINT NOT NULL DEFAULT 0,
    rate_limited_calls BIGINT NOT NULL DEFAULT 0,
    latency_us_total   BIGINT NOT NULL DEFAULT 0,
    last_used_at       TEXT
);
CREATE INDEX IF NOT EXISTS key_usage_org ON key_usage (org_id);

-- One row per key, method and route template.
CREATE TABLE IF NOT EXISTS key_usage_routes (
    key_id             TEXT NOT NULL,
    method             TEXT NOT NULL,
    route              TEXT NOT NULL,
    org_id             TEXT NOT NULL,
    total_calls        BIGINT NOT NULL DEFAULT 0,
    successful_calls   BIGINT NOT NULL DEFAULT 0,
    client_error_calls BIGINT NOT NULL DEFAULT 0,
    server_error_calls BIGINT NOT NULL DEFAULT 0,
    rate_limited_calls BIGINT NOT NULL DEFAULT 0,
    latency_us_total   BIGINT NOT NULL DEFAULT 0,
    last_used_at       TEXT,
    PRIMARY KEY (key_id, method, route)
);

-- Time buckets per key (`scope` 'key') and per organisation ('org'), by 'minute',
-- 'hour' and 'day' (UTC); `bucket_start` is the bucket's first instant. Only buckets
-- with calls have a row. The primary key serves the range reads.
CREATE TABLE IF NOT EXISTS usage_series (
    scope              TEXT NOT NULL,
    scope_id           TEXT NOT NULL,
    granularity        TEXT NOT NULL,
    bucket_start       TEXT NOT NULL,
    total_calls        BIGINT NOT NULL DEFAULT 0,
    successful_calls   BIGINT NOT NULL DEFAULT 0,
    client_error_calls BIGINT NOT NULL DEFAULT 0,
    server_error_calls BIGINT NOT NULL DEFAULT 0,
    rate_limited_calls BIGINT NOT NULL DEFAULT 0,
    latency_us_total   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, scope_id, granularity, bucket_start)
);
