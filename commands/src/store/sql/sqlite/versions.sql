-- ?1: a JSON array of stream names. One index probe per stream.
SELECT s.value AS stream,
       COALESCE((SELECT MAX(e.stream_version) FROM events e WHERE e.stream = s.value), 0)
           AS version
FROM json_each(?1) AS s
