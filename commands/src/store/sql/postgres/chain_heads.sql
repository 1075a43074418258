-- The hash in the metadata of each stream's last event.
SELECT s.stream,
       (SELECT e.metadata->>'hash' FROM events e
        WHERE e.stream = s.stream ORDER BY e.stream_version DESC LIMIT 1) AS hash
FROM UNNEST($1::text[]) AS s(stream)
