-- One index-only probe per stream (a correlated MAX uses the (stream, version) index
-- backwards); `WHERE stream = ANY(..) GROUP BY stream` scans every row of every stream
-- instead, which made appends to a long stream O(stream length).
SELECT s.stream,
       COALESCE((SELECT MAX(e.stream_version) FROM events e WHERE e.stream = s.stream), 0)::bigint
           AS version
FROM UNNEST($1::text[]) AS s(stream)
