-- The adopt-partitioning ledger: the copy's wallet ranges (state 'planned', written once, so
-- a resumed run copies the same ranges) and the ranges copied (state 'done', written after
-- the range's insert). Dropped after the exchange.
CREATE TABLE IF NOT EXISTS {ledger}
(
    bucket UInt32,
    wallet_lo String,
    wallet_hi String,
    state LowCardinality(String),
    rows UInt64,
    at DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (bucket, state)
