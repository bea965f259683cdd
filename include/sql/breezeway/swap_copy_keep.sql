-- Dedup by copy-swap (a table losing most of its rows), online part: the rows that stay,
-- i.e. every row that delete_duplicates_batch.sql would NOT remove (same predicate, so the
-- kept copy and the backed-up rows are exact complements of the same table contents).
CREATE UNLOGGED TABLE {compact} AS
SELECT t.* FROM {table} AS t
WHERE NOT EXISTS (
    SELECT 1 FROM {keepers} AS k
    WHERE t.{k1} = k.k1 AND t.{k2} = k.k2
      AND t.id <> k.keep_id
      AND ROW(t.created_at IS NULL, coalesce(t.created_at, '-infinity'), t.id)
        > ROW(k.keep_created_at IS NULL, coalesce(k.keep_created_at, '-infinity'), k.keep_id))
