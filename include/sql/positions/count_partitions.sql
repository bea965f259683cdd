-- Active rows per partition of a table (report).
SELECT partition, sum(rows) AS rows, count() AS parts
FROM system.parts
WHERE database = {db:String} AND table = {table:String} AND active
GROUP BY partition
ORDER BY partition
