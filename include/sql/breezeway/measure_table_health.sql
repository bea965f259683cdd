-- Daily health of one Breezeway child table: duplicate natural keys (NULL keys are not duplicates),
-- whether the migration's unique constraint is present and valid, and the table's size.
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL
                            GROUP BY {k1}, {k2} HAVING count(*) > 1) d) AS duplicate_keys,
    (SELECT count(*) FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
      WHERE c.conrelid = %(regclass)s::regclass AND c.conname = %(constraint)s AND c.contype = 'u'
        AND c.convalidated AND i.indisvalid) AS constraint_valid,
    pg_total_relation_size(%(regclass)s::regclass) AS size_bytes
