-- Columns and partition key of a table (preflight checks and publish-mode choice).
SELECT c.name AS column, c.type AS type, t.partition_key AS partition_key, t.engine AS engine
FROM system.columns AS c
INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
WHERE c.database = {db:String} AND c.table = {table:String}
ORDER BY c.position
