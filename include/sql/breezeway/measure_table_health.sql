-- Daily health of one child table (dedup_health_daily): duplicate natural keys, whether the
-- migration's unique constraint is present and valid, and the table's size.
SELECT {qualified} AS "table",
       {duplicate_keys} AS duplicate_keys,
       {constraint_valid} AS constraint_valid,
       pg_total_relation_size({oid}::regclass) AS size_bytes
