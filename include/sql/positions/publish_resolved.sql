-- Lots of markets that resolved since they were published as unresolved: insert their
-- resolved rows, skipping any lot already present as resolved (a retried publish inserts
-- nothing twice). The (wallet, condition_id) filter lets the primary index prune.
INSERT INTO {db:Identifier}.{unified:Identifier}
    (tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
     tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed)
SELECT tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
       tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed
FROM {db:Identifier}.{staging:Identifier}
WHERE resolved_at IS NOT NULL
  AND (tx_hash, wallet, condition_id, outcome_index) NOT IN (
        SELECT tx_hash, wallet, condition_id, outcome_index
        FROM {db:Identifier}.{unified:Identifier}
        WHERE resolved_at IS NOT NULL
          AND (wallet, condition_id) IN (
                SELECT wallet, condition_id FROM {db:Identifier}.{staging:Identifier} WHERE resolved_at IS NOT NULL))
