-- Ids with a row in [window_start, window_end) that still have more than one row inserted
-- before window_end (or with a NULL time), wherever they lie in time (probed through the id
-- index). None after a successful cleanup: the gate counts them, an alert lists a few. A retry
-- inserted after window_end belongs to the next run's window (which deletes it), so live
-- traffic cannot fail the gate.
SELECT k.id
FROM (
    SELECT DISTINCT w.{id} AS id
    FROM {table} AS w
    WHERE w.{time} >= {window_start} AND w.{time} < {window_end} AND w.{id} IS NOT NULL
) AS k
WHERE (SELECT count(*) FROM (SELECT 1 FROM {table} AS c
                             WHERE c.{id} = k.id AND (c.{time} < {window_end} OR c.{time} IS NULL)
                             LIMIT 2) AS two) > 1
