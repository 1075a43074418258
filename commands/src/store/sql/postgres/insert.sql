-- One statement for the whole batch. WITH ORDINALITY + ORDER BY makes the identity
-- values follow the order of the events in the request.
INSERT INTO events (event_id, stream, stream_version, event_type, schema_version,
                    data, metadata, recorded_at)
SELECT e.event_id, e.stream, e.stream_version, e.event_type, e.schema_version,
       e.data, e.metadata, $8
FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::bigint[],
            $6::jsonb[], $7::jsonb[]) WITH ORDINALITY
     AS e(event_id, stream, stream_version, event_type, schema_version, data, metadata, n)
ORDER BY e.n
RETURNING stream, stream_version, position
