-- Phase 1 of the online full-table dedup: the ids that have more than one row, numbered in id
-- order, into a temporary table of this session. One read-only scan (sequential, hash
-- aggregate): it takes ACCESS SHARE only, like any report query, so readers and writers never
-- wait for it; no row is locked.
CREATE TEMPORARY TABLE dupguard_dup_ids ON COMMIT PRESERVE ROWS AS
SELECT row_number() OVER (ORDER BY d.id) AS n, d.id
FROM (
    SELECT b.{id} AS id
    FROM {table} AS b
    WHERE b.{id} IS NOT NULL
    GROUP BY b.{id}
    HAVING count(*) > 1
) AS d
