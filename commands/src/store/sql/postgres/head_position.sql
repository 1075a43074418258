SELECT COALESCE(MAX(position), 0)::bigint FROM events
