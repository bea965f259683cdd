-- A table's uuid: tells the gated staging table from one rebuilt since (a new CREATE, a new uuid).
SELECT toString(uuid) AS uuid, metadata_modification_time AS modified
FROM system.tables
WHERE database = {db:String} AND name = {table:String}
