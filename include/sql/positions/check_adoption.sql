-- Adopt-partitioning gate: the partitioned copy holds the same rows (every column) and the
-- same lot keys, with the same multiplicity, as the original; streaming aggregates only (no
-- hash set of keys), so memory stays flat at any size.
WITH
    s AS (SELECT count() AS n, sum(cityHash64(tuple({columns}))) AS h, sum(cityHash64(tuple({key}))) AS k
          FROM {source}),
    c AS (SELECT count() AS n, sum(cityHash64(tuple({columns}))) AS h, sum(cityHash64(tuple({key}))) AS k,
                 countIf(_partition_id != toString(toUInt8(resolved_at IS NULL))) AS misplaced
          FROM {target})
SELECT
    s.n AS source_rows,
    c.n AS copied_rows,
    toInt64(c.n) - toInt64(s.n) AS row_difference,
    toUInt8(s.h != c.h) AS rows_differ,
    toUInt8(s.k != c.k) AS keys_differ,
    c.misplaced AS misplaced_rows
FROM s CROSS JOIN c
