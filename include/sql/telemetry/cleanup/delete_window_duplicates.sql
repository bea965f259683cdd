-- Per-minute cleanup of one table (one short transaction).
-- For every id with at least one row whose time column lies in [window_start, window_end),
-- delete every row of that id but one, wherever the copies lie in time (keep rule:
-- delete_extra_copies.sql), so a first copy older than the window and copies with a NULL time are
-- seen too.
WITH target_ids AS MATERIALIZED (
    SELECT DISTINCT w.{id} AS id
    FROM {table} AS w
    WHERE w.{time} >= %(window_start)s
      AND w.{time} < %(window_end)s
      AND w.{id} IS NOT NULL
),
{delete_extra_copies}
SELECT (SELECT count(*) FROM target_ids) AS window_ids,
       count(*) AS rows_deleted,
       count(DISTINCT id) AS ids_affected
FROM deleted;
