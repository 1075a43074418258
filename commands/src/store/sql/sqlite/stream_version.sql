SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream = ?1
