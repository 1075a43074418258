-- The resources behind iot:read, forms:read and users:read, as plain tables like 301_data:
-- IoT devices (on an asset) and their sensor readings, form submissions on work orders,
-- and the organisation's users (technicians). Every row belongs to one organisation.
CREATE TABLE IF NOT EXISTS iot_devices (
    id         TEXT COLLATE "C" PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL,
    asset_id   TEXT COLLATE "C" NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS iot_devices_org_created ON iot_devices (org_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS sensor_readings (
    id          TEXT COLLATE "C" PRIMARY KEY,
    org_id      TEXT COLLATE "C" NOT NULL,
    device_id   TEXT COLLATE "C" NOT NULL,
    metric      TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    unit        TEXT,
    recorded_at TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sensor_readings_device_created ON sensor_readings (org_id, device_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS form_submissions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    org_id        TEXT COLLATE "C" NOT NULL,
    work_order_id TEXT COLLATE "C" NOT NULL,
    form          TEXT NOT NULL,
    answers       TEXT NOT NULL,
    submitted_by  TEXT COLLATE "C",
    created_at    TEXT COLLATE "C" NOT NULL,
    created_by    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS form_submissions_order_created ON form_submissions (org_id, work_order_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS org_users (
    id         TEXT COLLATE "C" PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL,
    name       TEXT NOT NULL,
    email      TEXT COLLATE "C" NOT NULL,
    role       TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX IF NOT EXISTS org_users_org_created ON org_users (org_id, created_at DESC, id DESC);
