-- Rows and an order-independent checksum of every row (all unified columns) of one wallet
-- range: equal on two tables = the same multiset of rows (sum of 64-bit hashes, wrapping).
SELECT count() AS rows, sum(cityHash64(tuple({columns}))) AS row_hash
FROM {table}
WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
