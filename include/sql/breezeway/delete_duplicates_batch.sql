-- One short batch of the dedup: remove the rows of ids [lo, hi) that are not their key's
-- keeper and are ordered after it, and keep each removed row in the backup table in the
-- same statement (a row is never removed without being backed up).
WITH removed AS (
    DELETE FROM {table} AS t
    USING {keepers} AS k
    WHERE t.id >= %(lo)s AND t.id < %(hi)s
      AND t.{k1} = k.k1 AND t.{k2} = k.k2
      AND t.id <> k.keep_id
      AND ROW(t.created_at IS NULL, coalesce(t.created_at, '-infinity'), t.id)
        > ROW(k.keep_created_at IS NULL, coalesce(k.keep_created_at, '-infinity'), k.keep_id)
    RETURNING t.*
)
INSERT INTO {backup} SELECT * FROM removed
