-- One short batch of the rollback: put back the backed-up rows of heap pages [lo, hi) of the
-- backup that are not in their table (same id, same values). A row backed up twice (a key
-- cleaned again by a forced run) comes back once; a re-run restores nothing twice.
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
SELECT DISTINCT ON (b.id) {backup_columns}
  FROM {backup} b
 WHERE b.ctid >= format('(%%s,0)', %(lo)s::bigint)::tid AND b.ctid < format('(%%s,0)', %(hi)s::bigint)::tid
   AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id = b.id)
 ORDER BY b.id
