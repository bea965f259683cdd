-- Quality-gate figures of one child table (one row; the gate unions the six).
-- missing_keys: keys of the preflight snapshot absent now (an exact set comparison);
-- removed_without_keeper: rows removed after the preflight (writers' duplicates) whose key
-- has no row left (keys present at preflight are covered by missing_keys);
-- protected_constraints: the constraints of the schema nothing may drop, still there.
SELECT {name} AS table_name,
       {duplicate_keys} AS duplicate_keys,
       {constraint_valid} AS constraint_valid,
       (SELECT count(*) FROM {keys_before} kb
         WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{k1} = kb.k1 AND t.{k2} = kb.k2)) AS missing_keys,
       (SELECT count(*) FROM {nullkeys_before} nb
         WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = nb.id AND ROW(t.*) IS NOT DISTINCT FROM ROW(nb.*)))
         AS nullkey_rows_changed,
       (SELECT count(*) FROM {backup} b WHERE b.id > {max_id_before}
         AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{k1} = b.{k1} AND t.{k2} = b.{k2})) AS removed_without_keeper,
       (SELECT count(*) FROM pg_constraint WHERE conname = ANY(%(protected)s)
         AND connamespace = to_regnamespace(%(schema)s)) AS protected_constraints,
       {size_before}::bigint AS size_before,
       pg_total_relation_size({oid}::regclass) AS size_after
