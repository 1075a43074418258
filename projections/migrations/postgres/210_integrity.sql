-- Tamper-refusing read models: each key and organisation row keeps the head of its
-- stream's hash chain (`chain_hash`: the last applied event's hash) so that the
-- projection checks every next event against it (`domain::chain::ChainHead`), and
-- marks the row: `integrity` is `intact` (every hashed event checks out),
-- `unverifiable` (only events written before the chain existed) or `broken`
-- (sticky; `integrity_version` is the stream version where the first break showed).
ALTER TABLE api_keys ADD COLUMN integrity TEXT NOT NULL DEFAULT 'unverifiable';
ALTER TABLE api_keys ADD COLUMN integrity_version BIGINT;
ALTER TABLE api_keys ADD COLUMN chain_hash TEXT;
ALTER TABLE organizations ADD COLUMN integrity TEXT NOT NULL DEFAULT 'unverifiable';
ALTER TABLE organizations ADD COLUMN integrity_version BIGINT;
ALTER TABLE organizations ADD COLUMN chain_hash TEXT;
-- Rows projected before this migration have no chain head to check the next event
-- against: project both read models again from the start (they are derived data).
DELETE FROM api_keys;
DELETE FROM organizations;
DELETE FROM projection_checkpoints WHERE name IN ('key_list', 'organizations');
