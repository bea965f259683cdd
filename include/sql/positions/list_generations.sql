-- Saved generations of the open part (tables named <unified>__open_gen_<token>) with their uuid.
SELECT name, toString(uuid) AS uuid
FROM system.tables
WHERE database = {db:String} AND startsWith(name, {prefix:String})
