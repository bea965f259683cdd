-- Ids with a row in [window_start, window_end) that still have more than one row anywhere
-- in the table (probed through the id index). Zero after a successful cleanup.
SELECT count(*) AS duplicate_ids
FROM (
    SELECT DISTINCT w.{id} AS id
    FROM {table} AS w
    WHERE w.{time} >= {window_start} AND w.{time} < {window_end} AND w.{id} IS NOT NULL
) AS k
WHERE (SELECT count(*) FROM {table} AS c WHERE c.{id} = k.id) > 1
