-- Phase 2 of the online full-table dedup: one batch (one short transaction) of the duplicate
-- ids found by find_duplicate_ids.sql, numbered n in (after, after + batch_size]. Every copy
-- but one of each id is deleted, found through the id index wherever it lies (so copies written
-- since phase 1 are seen too), with the same keep rule as the per-minute cleanup (oldest time,
-- NULL last, then ctid).
WITH extra_copies AS MATERIALIZED (
    -- per id, every row but the keeper: a LATERAL probe of the id index with OFFSET 1 (the
    -- OFFSET also keeps the planner from turning the probes into a hash join over the table)
    SELECT c.row_tid
    FROM dupguard_dup_ids AS d
    CROSS JOIN LATERAL (
        SELECT x.ctid AS row_tid
        FROM {table} AS x
        WHERE x.{id} = d.id
        ORDER BY x.{time} ASC NULLS LAST, x.ctid
        OFFSET 1
    ) AS c
    WHERE d.n > %(after)s::bigint AND d.n <= %(after)s::bigint + %(batch_size)s::bigint
),
deleted AS (
    DELETE FROM {table} AS t
    WHERE t.ctid = ANY (ARRAY(SELECT row_tid FROM extra_copies))
    RETURNING t.{id} AS id
)
SELECT count(*) AS rows_deleted, count(DISTINCT id) AS ids_affected
FROM deleted
