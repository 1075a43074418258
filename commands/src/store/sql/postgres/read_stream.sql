SELECT position, event_id, stream, stream_version, event_type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE stream = $1 AND stream_version >= $2
ORDER BY stream_version
LIMIT $3
