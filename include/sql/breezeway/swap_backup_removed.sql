-- Dedup by copy-swap, first statement of the swap transaction (before the exclusive lock,
-- writers keep going): every row that will not be reloaded goes to the backup. The same
-- transaction then TRUNCATEs the table and reloads the kept rows, so the backup holds
-- exactly the removed rows: both commit together or neither does.
INSERT INTO {backup}
SELECT t.* FROM {table} AS t
JOIN {keepers} AS k ON t.{k1} = k.k1 AND t.{k2} = k.k2
WHERE t.id <> k.keep_id
  AND ROW(t.created_at IS NULL, coalesce(t.created_at, '-infinity'), t.id)
    > ROW(k.keep_created_at IS NULL, coalesce(k.keep_created_at, '-infinity'), k.keep_id)
