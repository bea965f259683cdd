-- One copy of every duplicated lot key of one wallet range, kept aside before the copies
-- are deleted. Preference: the resolved copy (a lot is never both open and resolved), then
-- the copy with the most FIFO progress.
INSERT INTO {db:Identifier}.{keep:Identifier}
    (tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
     tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed)
SELECT tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
       tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed
FROM {db:Identifier}.{unified:Identifier}
WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
  AND (tx_hash, wallet, condition_id, outcome_index) IN (
        SELECT tx_hash, wallet, condition_id, outcome_index
        FROM {db:Identifier}.{unified:Identifier}
        WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
        GROUP BY tx_hash, wallet, condition_id, outcome_index
        HAVING count() > 1)
ORDER BY tx_hash, wallet, condition_id, outcome_index, isNull(resolved_at), tokens_sold_early DESC, exit_value DESC
LIMIT 1 BY tx_hash, wallet, condition_id, outcome_index
