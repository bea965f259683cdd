-- Delete every copy of the duplicated keys of one wallet range (their kept copy waits in
-- the keepers table). The run token makes the mutation findable by its own id.
ALTER TABLE {db:Identifier}.{unified:Identifier}
DELETE WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
  AND (tx_hash, wallet, condition_id, outcome_index) IN (
        SELECT tx_hash, wallet, condition_id, outcome_index FROM {db:Identifier}.{keep:Identifier})
  AND {run_token:String} != ''
