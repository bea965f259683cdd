-- Unpartitioned table, after the DELETE mutation is done: insert the rebuilt open lots.
INSERT INTO {db:Identifier}.{unified:Identifier}
    (tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
     tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed)
SELECT tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
       tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed
FROM {db:Identifier}.{staging:Identifier}
WHERE resolved_at IS NULL
