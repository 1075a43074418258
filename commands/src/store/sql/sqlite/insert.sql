-- ?1: a JSON array of rows, each [event_id, stream, stream_version, event_type,
-- schema_version, data, metadata] (data and metadata as JSON text); ?2: recorded_at.
-- ORDER BY j.key makes the positions follow the order of the rows.
INSERT INTO events (event_id, stream, stream_version, event_type, schema_version,
                    data, metadata, recorded_at)
SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),
       json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'),
       json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'),
       json_extract(j.value, '$[6]'), ?2
FROM json_each(?1) AS j
ORDER BY j.key
RETURNING stream, stream_version, position
