-- Preflight figures of one child table from its key snapshot (snapshot_keys.sql): distinct keys,
-- rows with a full key, duplicated keys, the most copies of one key, rows whose key has a NULL,
-- the highest id (rows above it are written after the preflight) and the table's size.
SELECT (SELECT count(*) FROM {keys_before}) AS distinct_keys,
       (SELECT coalesce(sum(n), 0)::bigint FROM {keys_before}) AS keyed_rows,
       (SELECT count(*) FROM {keys_before} WHERE n > 1) AS duplicate_keys,
       (SELECT coalesce(max(n), 0) FROM {keys_before}) AS max_copies,
       (SELECT count(*) FROM {nullkeys_before}) AS null_key_rows,
       (SELECT coalesce(max(id), 0) FROM {table}) AS max_id,
       pg_total_relation_size({oid}::regclass) AS size_bytes
