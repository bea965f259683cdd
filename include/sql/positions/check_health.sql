-- The published table's health (the original plan's check), measured from the run's
-- logical date rather than the wall clock so a re-run checks the same thing.
SELECT
    count() AS total,
    countIf(resolved_at IS NULL) AS unresolved,
    uniqExact(wallet) AS wallets,
    max(entry_time) AS latest_entry,
    dateDiff('second', max(entry_time), {as_of:DateTime}) / 3600. AS hours_stale,
    (SELECT count() - uniqExact({key})
       FROM {unified} WHERE resolved_at IS NULL) AS unresolved_duplicates,
    (SELECT count() FROM (
        SELECT {key}
        FROM {unified}
        WHERE (wallet, condition_id) IN (SELECT wallet, condition_id FROM {staging}
                                         WHERE resolved_at IS NOT NULL)
        GROUP BY {key}
        HAVING countIf(resolved_at IS NULL) > 0 AND countIf(resolved_at IS NOT NULL) > 0)) AS moved_lots_in_both
FROM {unified}
