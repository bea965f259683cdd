-- Put the kept copies back: only keys now absent from the table, so a retry after a crash
-- at any point neither loses a lot nor inserts it twice.
INSERT INTO {db:Identifier}.{unified:Identifier}
    (tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
     tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed)
SELECT tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
       tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed
FROM {db:Identifier}.{keep:Identifier}
WHERE (tx_hash, wallet, condition_id, outcome_index) NOT IN (
        SELECT tx_hash, wallet, condition_id, outcome_index
        FROM {db:Identifier}.{unified:Identifier}
        WHERE (wallet, condition_id) IN (SELECT wallet, condition_id FROM {db:Identifier}.{keep:Identifier}))
