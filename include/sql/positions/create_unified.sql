-- The unified positions table: production's columns (rendered from positions/config.py
-- UNIFIED_SCHEMA) and sort key. The jobs create it partitioned by open/resolved, so the
-- open part is swapped atomically (ALTER TABLE ... REPLACE PARTITION 1 FROM staging) and
-- resolved rows are never rewritten; tests, benchmark and demo also create production's
-- unpartitioned shape (empty partition clause) to exercise the DELETE-mutation publish.
CREATE TABLE IF NOT EXISTS {unified}
(
    {column_defs}
)
ENGINE = MergeTree
{partition_by}
ORDER BY ({order_by})
