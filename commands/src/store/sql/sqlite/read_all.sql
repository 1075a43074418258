SELECT position, event_id, stream, stream_version, event_type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE position > ?1
ORDER BY position
LIMIT ?2
