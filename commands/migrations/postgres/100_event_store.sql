-- keyledger event store (Postgres). Versions 100..199 belong to the `commands` crate.
-- The reader validates every column (see commands/src/codec.rs), so there are no CHECK
-- constraints here that would hide corrupt rows written by other tools.
CREATE TABLE IF NOT EXISTS events (
    -- Positions come from an identity sequence. Appends take a transaction-scoped advisory
    -- lock before inserting, so positions are assigned and committed in the same order.
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       UUID        NOT NULL,
    stream         TEXT        NOT NULL,
    stream_version BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version BIGINT      NOT NULL,
    data           JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream, stream_version)
);
