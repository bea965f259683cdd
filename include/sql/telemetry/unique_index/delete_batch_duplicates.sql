-- Phase 2 of the online full-table dedup: one batch (one short transaction) of the duplicate
-- ids found by find_duplicate_ids.sql, numbered n in (after, after + batch_size]. Every copy
-- but one of each id is deleted, found through the id index wherever it lies (so copies written
-- since phase 1 are seen too), with the keep rule of delete_extra_copies.sql.
WITH target_ids AS MATERIALIZED (
    SELECT d.id
    FROM dupguard_dup_ids AS d
    WHERE d.n > %(after)s::bigint AND d.n <= %(after)s::bigint + %(batch_size)s::bigint
),
{delete_extra_copies}
SELECT count(*) AS rows_deleted, count(DISTINCT id) AS ids_affected
FROM deleted
