-- Preflight snapshot (taken once per migration): every natural key present before the
-- migration with its row count, and a copy of the rows whose key contains NULL.
CREATE TABLE {keys_before} AS
SELECT {k1} AS k1, {k2} AS k2, count(*)::bigint AS n
FROM {table}
WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL
GROUP BY 1, 2;
CREATE TABLE {nullkeys_before} AS
SELECT * FROM {table} WHERE {k1} IS NULL OR {k2} IS NULL;
