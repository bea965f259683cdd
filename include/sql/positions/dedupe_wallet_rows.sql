-- Rows per wallet in sort-key order: the deduplicate DAG cuts these into wallet ranges of
-- similar size, each read through the primary index (no re-read of the whole table).
SELECT wallet, count() AS rows
FROM {db:Identifier}.{unified:Identifier}
GROUP BY wallet
ORDER BY wallet
