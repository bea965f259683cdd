-- Market resolutions (production already has it). payout_numerators is a JSON array,
-- '[1,0]' or '["1","0"]'; a row with is_deleted = 1 or an empty array does not resolve.
CREATE TABLE IF NOT EXISTS {resolutions}
(
    condition_id String, payout_numerators String, payout_denominator UInt64,
    resolved_at DateTime, block_number UInt64, tx_hash String, is_deleted UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree
ORDER BY condition_id
