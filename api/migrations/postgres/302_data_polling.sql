-- Incremental polling (`?updated_since=`, `?completed_since=`): assets get an updated_at
-- (an existing asset was last changed when it was created), and the lists ordered by a
-- change time, oldest first, have indexes in that order. The change times compare in
-- byte order ("C"), as on SQLite.
ALTER TABLE assets ADD COLUMN IF NOT EXISTS updated_at TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE assets SET updated_at = created_at WHERE updated_at = '';
ALTER TABLE work_orders ALTER COLUMN updated_at TYPE TEXT COLLATE "C";
ALTER TABLE work_orders ALTER COLUMN completed_at TYPE TEXT COLLATE "C";
CREATE INDEX IF NOT EXISTS assets_org_updated ON assets (org_id, updated_at, id);
CREATE INDEX IF NOT EXISTS work_orders_org_updated ON work_orders (org_id, updated_at, id);
CREATE INDEX IF NOT EXISTS work_orders_org_completed ON work_orders (org_id, completed_at, id);
