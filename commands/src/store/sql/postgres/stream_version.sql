SELECT COALESCE(MAX(stream_version), 0)::bigint FROM events WHERE stream = $1
