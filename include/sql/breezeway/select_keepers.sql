-- Fragment (a subquery's SELECT): for every natural key with more than one row, its row count
-- and the row to keep (oldest created_at, ties by the smallest id, NULL created_at counts as
-- newest). Keys containing NULL are never duplicates. One hash aggregate, no sort of the table:
-- the keeper is the smallest rank ARRAY[created_at IS NULL, epoch of created_at, id] (numeric,
-- exact to the microsecond, compared element by element); keep_created_at = min(created_at) is
-- the keeper's created_at (min ignores NULLs; NULL only when every copy has none).
SELECT k1, k2, n, keep_rank[3]::bigint AS keep_id, keep_created_at
FROM (
    SELECT {k1} AS k1, {k2} AS k2, count(*) AS n, min(created_at) AS keep_created_at,
           min(ARRAY[(created_at IS NULL)::int::numeric, coalesce(extract(epoch FROM created_at), 0),
                     id::numeric]) AS keep_rank
    FROM {table}
    WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL
    GROUP BY 1, 2
) per_key
WHERE n > 1
