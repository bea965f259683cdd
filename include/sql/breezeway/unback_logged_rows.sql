-- Under the swap's exclusive lock: a logged row (changed by a writer during the copy) is
-- re-copied as it is now, so it is not removed: take it out of what THIS transaction wrote to
-- the backup (rows an earlier pass backed up stay). The row count is the number taken out.
DELETE FROM {backup} b
 USING (SELECT DISTINCT row_id FROM dupguard.bw_reclaim_log WHERE table_name = {name}) l
 WHERE b.id = l.row_id AND b.xmin = pg_current_xact_id()::xid
