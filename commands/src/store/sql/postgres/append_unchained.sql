-- The one-round-trip group commit: keyledger_append_unchained (migration 101).
SELECT out_stream, out_version, out_position
FROM keyledger_append_unchained($1, $2, $3::uuid[], $4::text[], $5::text[], $6::bigint[],
                                $7::jsonb[], $8::jsonb[], $9, $10)
