-- The published table's health (the original plan's check), measured from the run's
-- logical date rather than the wall clock so a re-run checks the same thing.
SELECT
    count() AS total,
    countIf(resolved_at IS NULL) AS unresolved,
    uniqExact(wallet) AS wallets,
    max(entry_time) AS latest_entry,
    dateDiff('second', max(entry_time), {as_of:DateTime}) / 3600. AS hours_stale,
    (SELECT count() - uniqExact(tx_hash, wallet, condition_id, outcome_index)
       FROM {db:Identifier}.{unified:Identifier} WHERE resolved_at IS NULL) AS unresolved_duplicates,
    (SELECT count() FROM (
        SELECT tx_hash, wallet, condition_id, outcome_index
        FROM {db:Identifier}.{unified:Identifier}
        WHERE (wallet, condition_id) IN (SELECT wallet, condition_id FROM {db:Identifier}.{staging:Identifier}
                                         WHERE resolved_at IS NOT NULL)
        GROUP BY tx_hash, wallet, condition_id, outcome_index
        HAVING countIf(resolved_at IS NULL) > 0 AND countIf(resolved_at IS NOT NULL) > 0)) AS moved_lots_in_both
FROM {db:Identifier}.{unified:Identifier}
