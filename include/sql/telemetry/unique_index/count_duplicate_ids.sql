-- Ids with more than one row in the whole table (NULL ids are not duplicates of each other).
SELECT count(*) AS duplicate_ids
FROM (
    SELECT d.{id}
    FROM {table} AS d
    WHERE d.{id} IS NOT NULL
    GROUP BY d.{id}
    HAVING count(*) > 1
) AS dup
