-- Whole-table audit for the deduplicate DAG's gates.
SELECT
    count() AS total_rows,
    uniqExact({key}) AS distinct_keys,
    count() - distinct_keys AS duplicate_rows,
    countIf(tokens_held < 0) AS negative_tokens_held,
    countIf(tokens_sold_early > tokens) AS oversold_lots,
    countIf(resolved_at IS NULL) AS unresolved
FROM {unified}
