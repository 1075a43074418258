-- One-round-trip appends to unchained streams without a version expectation (the usage
-- writer's group commits). Called outside an explicit transaction, the call is its own
-- transaction: the ordering lock, the version assignment, the insert, the notification
-- and the commit cost one round trip instead of eight. Lifecycle (hash-chained) streams
-- and appends with an expected version keep the general path in commands/src/postgres.rs;
-- both take the same ordering lock.
CREATE OR REPLACE FUNCTION keyledger_append_unchained(
    guard     BOOLEAN,
    lock_key  BIGINT,
    ids       UUID[],
    streams   TEXT[],
    types     TEXT[],
    schemas   BIGINT[],
    datas     JSONB[],
    metas     JSONB[],
    at        TIMESTAMPTZ,
    channel   TEXT
)
RETURNS TABLE (out_stream TEXT, out_version BIGINT, out_position BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF guard THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    -- A statement of its own, after the lock: in READ COMMITTED its snapshot sees every
    -- append committed by the lock's previous holder, so the versions below are current.
    RETURN QUERY
    WITH input AS (
        SELECT u.id, u.s, u.t, u.sv, u.d, u.m, u.n,
               row_number() OVER (PARTITION BY u.s ORDER BY u.n) AS k
        FROM unnest(ids, streams, types, schemas, datas, metas)
             WITH ORDINALITY AS u(id, s, t, sv, d, m, n)
    ), base AS (
        SELECT b.s,
               COALESCE((SELECT MAX(x.stream_version) FROM events x WHERE x.stream = b.s), 0) AS v
        FROM (SELECT DISTINCT input.s FROM input) AS b
    ), inserted AS (
        INSERT INTO events (event_id, stream, stream_version, event_type, schema_version,
                            data, metadata, recorded_at)
        SELECT i.id, i.s, base.v + i.k, i.t, i.sv, i.d, i.m, at
        FROM input i JOIN base ON base.s = i.s
        ORDER BY i.n
        RETURNING events.stream, events.stream_version, events.position
    )
    SELECT inserted.stream, inserted.stream_version, inserted.position FROM inserted;
    -- Delivered on commit, to listeners in every process (the payload is informational).
    PERFORM pg_notify(channel, (SELECT COALESCE(MAX(e.position), 0) FROM events e)::text);
END
$$;
