-- ?1: a JSON array of stream names. The hash in the metadata of each one's last event.
SELECT s.value AS stream,
       (SELECT json_extract(e.metadata, '$.hash') FROM events e
        WHERE e.stream = s.value ORDER BY e.stream_version DESC LIMIT 1) AS hash
FROM json_each(?1) AS s
