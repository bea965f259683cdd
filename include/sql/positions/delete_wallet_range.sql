-- Clear one wallet range of the partitioned copy before it is copied again (a range whose
-- copy was interrupted, or whose rows changed in the source since). The run token makes the
-- mutation findable by its own id.
ALTER TABLE {target}
DELETE WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
  AND {run_token:String} != ''
