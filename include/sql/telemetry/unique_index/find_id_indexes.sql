-- Every index whose only key is the id column (no expression, no predicate), with its state.
SELECT i.indexrelid::regclass::text AS index_name,
       n.nspname AS index_schema,
       ic.relname AS index_relname,
       i.indisunique AS is_unique,
       i.indisvalid AS is_valid,
       i.indisready AS is_ready,
       am.amname AS method
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
JOIN pg_am AS am ON am.oid = ic.relam
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = %(table_oid)s::oid
  AND i.indnkeyatts = 1
  AND i.indkey[0] <> 0
  AND i.indpred IS NULL
  AND a.attname = %(column)s
ORDER BY ic.relname;
