-- The keep rule, in one place, as the two CTEs every delete ends with: extra_copies is every row
-- but the keeper of each id of the CTE target_ids, found through the id index wherever it lies
-- in time; deleted removes them. Keeper: the oldest time, NULL last (a NULL row survives only
-- when the id has no timed row), ties by physical position (ctid), so two cleanups running at
-- once keep the same row. The LATERAL probe with OFFSET 1 also keeps the planner from turning the
-- probes into a hash join over the whole table.
extra_copies AS MATERIALIZED (
    SELECT c.row_tid
    FROM target_ids AS d
    CROSS JOIN LATERAL (
        SELECT x.ctid AS row_tid
        FROM {table} AS x
        WHERE x.{id} = d.id
        ORDER BY x.{time} ASC NULLS LAST, x.ctid
        OFFSET 1
    ) AS c
),
deleted AS (
    DELETE FROM {table} AS t
    WHERE t.ctid = ANY (ARRAY(SELECT row_tid FROM extra_copies))
    RETURNING t.{id} AS id
)
