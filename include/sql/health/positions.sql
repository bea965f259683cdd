-- Daily health of the published unified positions table (the refresh DAG's post-publish check),
-- measured from the run's logical date so a re-run checks the same thing.
SELECT
    count() AS total,
    countIf(resolved_at IS NULL) AS unresolved,
    uniqExact(wallet) AS wallets,
    max(entry_time) AS newest_entry,
    dateDiff('second', max(entry_time), {as_of:DateTime}) / 3600. AS hours_stale,
    countIf(resolved_at IS NULL)
      - uniqExactIf((tx_hash, wallet, condition_id, outcome_index), resolved_at IS NULL) AS unresolved_duplicates
FROM {db:Identifier}.{table:Identifier}
