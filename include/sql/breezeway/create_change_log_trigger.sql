-- From now on log the id of every row writers insert, update or delete in the table
-- (dupguard.bw_reclaim_log), so a swap can re-copy those rows under its short exclusive lock.
CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION dupguard.bw_reclaim_log_row()
