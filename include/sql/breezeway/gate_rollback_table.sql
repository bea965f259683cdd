-- Rollback gate figures of one child table: every removed row is back byte for byte, and
-- every row of the preflight snapshot is present (count = original + rows written since).
SELECT {name} AS table_name,
       (SELECT count(*) FROM {backup} b
         WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = b.id AND ROW(t.*) IS NOT DISTINCT FROM ROW(b.*)))
         AS backup_rows_not_restored,
       {rows_before}::bigint - (SELECT count(*) FROM {table} WHERE id <= {max_id_before}) AS original_rows_missing,
       (SELECT count(*) FROM {table}) AS rows_now,
       {rows_before}::bigint + (SELECT count(*) FROM {table} WHERE id > {max_id_before}) AS rows_expected,
       (SELECT count(*) FROM pg_constraint WHERE conrelid = {oid} AND conname = {constraint})
         AS migration_constraint_left
