-- Surplus copies of lot keys in one wallet range.
SELECT count() AS rows, count() - uniqExact({key}) AS surplus_rows
FROM {unified}
WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
