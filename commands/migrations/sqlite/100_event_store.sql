-- keyledger event store (SQLite). Versions 100..199 belong to the `commands` crate.
-- The reader validates every column (see commands/src/codec.rs), so there are no CHECK
-- constraints here that would hide corrupt rows written by other tools.
CREATE TABLE IF NOT EXISTS events (
    -- AUTOINCREMENT: positions are never reused, even after the last row is deleted.
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    stream         TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL, -- JSON
    metadata       TEXT    NOT NULL, -- JSON
    recorded_at    TEXT    NOT NULL, -- RFC 3339, UTC
    CONSTRAINT events_stream_version_key UNIQUE (stream, stream_version)
);
