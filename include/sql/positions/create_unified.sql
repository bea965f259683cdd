-- The unified positions table as this DAG creates it when it is missing: the same columns
-- as production, partitioned by open/resolved so the open part is swapped atomically
-- (ALTER TABLE ... REPLACE PARTITION 1 FROM staging) and resolved rows are never rewritten.
CREATE TABLE IF NOT EXISTS {db:Identifier}.{unified:Identifier}
(
    tx_hash String, wallet LowCardinality(String), condition_id String, outcome_index UInt8,
    entry_time DateTime, resolved_at Nullable(DateTime), cost_usd Float64, tokens Float64,
    tokens_sold_early Float64, tokens_held Float64, exit_value Float64, pnl_usd Float64, roi Float64,
    pct_sold_early Float64, is_maker UInt8, is_short UInt8, is_closed UInt8
)
ENGINE = MergeTree
PARTITION BY isNull(resolved_at)
ORDER BY (wallet, condition_id, outcome_index, tx_hash)
