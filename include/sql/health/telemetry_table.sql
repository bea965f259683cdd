-- Daily health of one telemetry table: ids with a row inserted in [start, end) that have more than
-- one row anywhere in the table (probed through the id index), and the rows of the window.
-- The window ends a settle time before the run's logical date, so the copies the per-minute
-- cleanup has not reached yet do not count.
WITH window_ids AS (
    SELECT DISTINCT {id} AS id
    FROM {table}
    WHERE {time} >= %(start)s AND {time} < %(end)s
)
SELECT
    (SELECT count(*) FROM window_ids) AS ids_in_window,
    (SELECT count(*) FROM window_ids w
      WHERE (SELECT count(*) FROM (SELECT 1 FROM {table} x WHERE x.{id} = w.id LIMIT 2) two) > 1) AS duplicate_ids,
    pg_total_relation_size(%(regclass)s::regclass) AS size_bytes
