-- One-row audit of the staging table before anything is published (quality_gate input).
SELECT
    (SELECT count() FROM {staging}) AS staged_rows,
    (SELECT countIf(resolved_at IS NULL) FROM {staging}) AS staged_unresolved,
    (SELECT countIf(resolved_at IS NOT NULL) FROM {staging}) AS staged_resolved,
    (SELECT count() - uniqExact({key})
       FROM {staging}) AS duplicate_keys,
    (SELECT countIf(tokens_held < 0) FROM {staging}) AS negative_tokens_held,
    (SELECT countIf(tokens_sold_early > tokens) FROM {staging}) AS oversold_lots,
    (SELECT countIf(wallet = '' OR condition_id = '' OR tx_hash = '') FROM {staging}) AS empty_keys,
    (SELECT countIf(resolved_at IS NULL) FROM {unified}) AS published_unresolved
