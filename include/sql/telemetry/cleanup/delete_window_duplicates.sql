-- Per-minute cleanup of one table (one short transaction).
-- For every id with at least one row whose time column lies in [window_start, window_end),
-- delete every row of that id but one, wherever the copies lie in time: the copies are found
-- through the id index, so a first copy older than the window and copies with a NULL time are
-- seen too. Kept row: the oldest time (NULL last, so a NULL row survives only when the id has
-- no timed row), ties broken by physical position (ctid), the same rule everywhere so that two
-- cleanups running at once always keep the same row.
WITH window_ids AS MATERIALIZED (
    SELECT DISTINCT w.{id} AS id
    FROM {table} AS w
    WHERE w.{time} >= %(window_start)s
      AND w.{time} < %(window_end)s
      AND w.{id} IS NOT NULL
),
extra_copies AS MATERIALIZED (
    -- per id, every row but the keeper: a LATERAL probe of the id index with OFFSET 1 (the
    -- OFFSET also keeps the planner from turning the probes into a hash join over the table)
    SELECT c.row_tid
    FROM window_ids AS k
    CROSS JOIN LATERAL (
        SELECT x.ctid AS row_tid
        FROM {table} AS x
        WHERE x.{id} = k.id
        ORDER BY x.{time} ASC NULLS LAST, x.ctid
        OFFSET 1
    ) AS c
),
deleted AS (
    DELETE FROM {table} AS t
    WHERE t.ctid = ANY (ARRAY(SELECT row_tid FROM extra_copies))
    RETURNING t.{id} AS id
)
SELECT (SELECT count(*) FROM window_ids) AS window_ids,
       count(*) AS rows_deleted,
       count(DISTINCT id) AS ids_affected
FROM deleted;
