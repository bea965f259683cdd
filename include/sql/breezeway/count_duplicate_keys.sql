-- Fragment (a scalar subquery): natural keys of one child table with more than one row; a key
-- containing NULL is never a duplicate. Shared by the migration's gate and the daily health check.
(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL
                       GROUP BY {k1}, {k2} HAVING count(*) > 1) d)
