-- Copy the rows of one wallet range [wallet_lo, wallet_hi) ('' = open end) of one table into
-- another with the unified columns (adopt partitioning: the unpartitioned table into its
-- partitioned copy; the range is read through the primary index).
INSERT INTO {target} ({columns})
SELECT {columns}
FROM {source}
WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
