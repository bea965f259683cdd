-- Source fills (production already has it; demo, tests and bench create it).
-- buys: tokens_delta > 0, usdc_delta < 0 (cash paid); sells: tokens_delta < 0, usdc_delta > 0.
CREATE TABLE IF NOT EXISTS {fills}
(
    fill_id String, event_time DateTime, block_number UInt64, tx_hash String,
    wallet LowCardinality(String), condition_id String, outcome_index UInt8,
    tokens_delta Float64, usdc_delta Float64, source LowCardinality(String),
    is_self_fill UInt8 DEFAULT 0, is_maker UInt8 DEFAULT 0, _version UInt64 DEFAULT 1
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (wallet, condition_id, outcome_index, fill_id)
