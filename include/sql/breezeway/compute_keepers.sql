-- For every natural key with more than one row: the row to keep (oldest created_at,
-- ties by the smallest id, NULL created_at counts as newest). Keys containing NULL are
-- never duplicates. One snapshot; transient table (UNLOGGED, dropped after the pass).
CREATE UNLOGGED TABLE {keepers} AS
SELECT k1, k2, keep_id, keep_created_at
FROM (
    SELECT {k1} AS k1, {k2} AS k2, id AS keep_id, created_at AS keep_created_at,
           row_number() OVER w AS rn, count(*) OVER (PARTITION BY {k1}, {k2}) AS n
    FROM {table}
    WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL
    WINDOW w AS (PARTITION BY {k1}, {k2} ORDER BY created_at ASC NULLS LAST, id ASC)
) ranked
WHERE rn = 1 AND n > 1
