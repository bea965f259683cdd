-- Open rows of the unified table that are exactly (every column) an open row of {source}:
-- equal to both open counts only when the source's open part is fully published
-- ({open_columns}: every column but resolved_at, NULL in every open row and never equal in IN).
SELECT count() AS matching
FROM {unified}
WHERE resolved_at IS NULL
  AND ({open_columns}) IN (SELECT {open_columns} FROM {source} WHERE resolved_at IS NULL)
