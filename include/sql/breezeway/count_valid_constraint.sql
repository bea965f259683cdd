-- Fragment (a scalar subquery): 1 when the migration's UNIQUE constraint of the table is present,
-- validated and its index valid, else 0. Shared by the constraints step, the migration's gate and
-- the daily health check.
(SELECT count(*) FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
  WHERE c.conrelid = {oid} AND c.conname = {constraint} AND c.contype = 'u'
    AND c.convalidated AND i.indisvalid)
