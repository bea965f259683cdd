-- Delete every copy of the duplicated keys of one wallet range (their kept copy waits in
-- the keepers table). The run token makes the mutation findable by its own id.
ALTER TABLE {unified}
DELETE WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
  AND ({key}) IN (
        SELECT {key} FROM {keep})
  AND {run_token:String} != ''
