-- Copy the open (unresolved) rows of one table into another with the unified columns:
-- the backup of the published open part before a publish, and, on an unpartitioned table
-- after its DELETE mutation is done, the rebuilt (or restored) open part.
INSERT INTO {target} ({columns})
SELECT {columns}
FROM {source}
WHERE resolved_at IS NULL
