-- The data API's resources (work orders, assets, locations): plain tables in the
-- read-model database, written directly by the API (not event-sourced). Every row belongs
-- to one organisation, and every query filters on org_id. Ids are UUID v7 text;
-- timestamps are RFC 3339 UTC text with microseconds, so that text order is time order.
-- Columns that are compared or sorted use the "C" collation: byte order, as on SQLite.
-- References (asset -> location, work order -> asset) are checked by the API within the
-- organisation, the same way on both back ends.
CREATE TABLE IF NOT EXISTS locations (
    id         TEXT COLLATE "C" PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX IF NOT EXISTS locations_org_created ON locations (org_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS assets (
    id          TEXT COLLATE "C" PRIMARY KEY,
    org_id      TEXT COLLATE "C" NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT,
    location_id TEXT COLLATE "C",
    created_at  TEXT COLLATE "C" NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_org_created ON assets (org_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS work_orders (
    id           TEXT COLLATE "C" PRIMARY KEY,
    org_id       TEXT COLLATE "C" NOT NULL,
    title        TEXT NOT NULL,
    priority     TEXT NOT NULL,
    description  TEXT,
    status       TEXT COLLATE "C" NOT NULL,
    asset_id     TEXT COLLATE "C",
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT NOT NULL,
    completed_at TEXT,
    created_by   TEXT NOT NULL
);
-- The list's order and cursor (newest first), with and without the status filter.
CREATE INDEX IF NOT EXISTS work_orders_org_created ON work_orders (org_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS work_orders_org_status_created ON work_orders (org_id, status, created_at DESC, id DESC);
