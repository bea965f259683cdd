-- Put the kept copies back: only keys now absent from the table, so a retry after a crash
-- at any point neither loses a lot nor inserts it twice.
INSERT INTO {unified} ({columns})
SELECT {columns}
FROM {keep}
WHERE ({key}) NOT IN (
        SELECT {key}
        FROM {unified}
        WHERE (wallet, condition_id) IN (SELECT wallet, condition_id FROM {keep}))
