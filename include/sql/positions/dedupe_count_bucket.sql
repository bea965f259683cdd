-- Surplus copies of lot keys in one wallet range.
SELECT count() AS rows, count() - uniqExact(tx_hash, wallet, condition_id, outcome_index) AS surplus_rows
FROM {db:Identifier}.{unified:Identifier}
WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
