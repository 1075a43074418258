-- Incremental polling (`?updated_since=`, `?completed_since=`): assets get an updated_at
-- (an existing asset was last changed when it was created), and the lists ordered by a
-- change time, oldest first, have indexes in that order.
ALTER TABLE assets ADD COLUMN updated_at TEXT NOT NULL DEFAULT '';
UPDATE assets SET updated_at = created_at WHERE updated_at = '';
CREATE INDEX IF NOT EXISTS assets_org_updated ON assets (org_id, updated_at, id);
CREATE INDEX IF NOT EXISTS work_orders_org_updated ON work_orders (org_id, updated_at, id);
CREATE INDEX IF NOT EXISTS work_orders_org_completed ON work_orders (org_id, completed_at, id);
