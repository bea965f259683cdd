-- The unique-index gate's index figures for one table: valid unique indexes on
-- exactly the id column (the permanent fix), and INVALID indexes leading with it (left behind by
-- a failed concurrent build).
SELECT count(*) FILTER (WHERE i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 AND i.indpred IS NULL)
           AS valid_unique_indexes,
       count(*) FILTER (WHERE NOT i.indisvalid) AS invalid_id_indexes
FROM pg_index AS i
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = {table_oid}::oid
  AND a.attname = {id_name}
