-- Rows per wallet in sort-key order: cut into wallet ranges of similar size (build buckets,
-- dedupe buckets); a range of the leading sort-key column is read through the primary index.
SELECT wallet, count() AS rows
FROM {table}
GROUP BY wallet
ORDER BY wallet
