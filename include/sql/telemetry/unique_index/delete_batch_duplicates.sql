-- One batch of the online full-table dedup (one short transaction).
-- Reads the next batch_size keys in id order (index-only scan of the id index), finds the ids
-- of the batch with more than one row (the last id of the batch may have copies past the limit:
-- it is probed through the index), and deletes every copy but one of those ids, with the same
-- keep rule as the per-minute cleanup (oldest time, NULL last, then ctid).
-- The next batch starts after last_id.
WITH batch_keys AS MATERIALIZED (
    SELECT b.{id} AS id
    FROM {table} AS b
    WHERE b.{id} IS NOT NULL {after_clause}
    ORDER BY b.{id}
    LIMIT %(batch_size)s
),
bounds AS (
    -- max() has no uuid version: the last key in id order
    SELECT (SELECT id FROM batch_keys ORDER BY id DESC LIMIT 1) AS last_id,
           (SELECT count(*) FROM batch_keys) AS keys_read
),
dup_ids AS MATERIALIZED (
    SELECT id FROM batch_keys GROUP BY id HAVING count(*) > 1
    UNION
    SELECT bd.last_id FROM bounds AS bd
    WHERE bd.last_id IS NOT NULL
      AND (SELECT count(*) FROM {table} AS x WHERE x.{id} = bd.last_id) > 1
),
extra_copies AS MATERIALIZED (
    -- per id, every row but the keeper: a LATERAL probe of the id index with OFFSET 1 (the
    -- OFFSET also keeps the planner from turning the probes into a hash join over the table)
    SELECT c.row_tid
    FROM dup_ids AS d
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
SELECT (SELECT last_id FROM bounds) AS last_id,
       (SELECT keys_read FROM bounds) AS keys_read,
       (SELECT count(*) FROM deleted) AS rows_deleted,
       (SELECT count(DISTINCT id) FROM deleted) AS ids_affected;
