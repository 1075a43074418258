-- The resources behind iot:read, forms:read and users:read, as plain tables like 301_data:
-- IoT devices (on an asset) and their sensor readings, form submissions on work orders,
-- and the organisation's users (technicians). Every row belongs to one organisation.
CREATE TABLE IF NOT EXISTS iot_devices (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    asset_id   TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS iot_devices_org_created ON iot_devices (org_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS sensor_readings (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    metric      TEXT NOT NULL,
    value       REAL NOT NULL,
    unit        TEXT,
    recorded_at TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sensor_readings_device_created ON sensor_readings (org_id, device_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS form_submissions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    work_order_id TEXT NOT NULL,
    form          TEXT NOT NULL,
    answers       TEXT NOT NULL,
    submitted_by  TEXT,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS form_submissions_order_created ON form_submissions (org_id, work_order_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS org_users (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX IF NOT EXISTS org_users_org_created ON org_users (org_id, created_at DESC, id DESC);
