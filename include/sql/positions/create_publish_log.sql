-- The publish ledger next to the unified table: one row per step of each publish or
-- rollback (start before anything is deleted, done after the open part is in), with the
-- generation saved by the run and the source it swaps in. A start without a done is an
-- interrupted swap, completed by the next attempt (publish/resume in positions/publish.py).
CREATE TABLE IF NOT EXISTS {publish_log}
(
    at DateTime64(6),
    token String,
    action LowCardinality(String),
    step LowCardinality(String),
    generation String,
    generation_open UInt64,
    good UInt8,
    source String,
    source_uuid String,
    source_open UInt64,
    outcome String
)
ENGINE = MergeTree
ORDER BY at
