-- Under the swap's exclusive lock: bring the rows writers changed during the online copy up to
-- date in the copy. Both parts see the same snapshot: the DELETE removes the copy's old version
-- of every logged row, the INSERT adds each logged row as it is now (none when it was deleted).
-- The row count is the number of rows re-copied.
WITH logged AS (
    SELECT DISTINCT row_id FROM dupguard.bw_reclaim_log WHERE table_name = {name}
), stale AS (
    DELETE FROM {compact} c USING logged l WHERE c.id = l.row_id
)
INSERT INTO {compact} SELECT * FROM {table} WHERE id IN (SELECT row_id FROM logged)
