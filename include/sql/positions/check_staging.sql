-- One-row audit of the staging table before anything is published (quality_gate input).
SELECT
    (SELECT count() FROM {db:Identifier}.{staging:Identifier}) AS staged_rows,
    (SELECT countIf(resolved_at IS NULL) FROM {db:Identifier}.{staging:Identifier}) AS staged_unresolved,
    (SELECT countIf(resolved_at IS NOT NULL) FROM {db:Identifier}.{staging:Identifier}) AS staged_resolved,
    (SELECT count() - uniqExact(tx_hash, wallet, condition_id, outcome_index)
       FROM {db:Identifier}.{staging:Identifier}) AS duplicate_keys,
    (SELECT countIf(tokens_held < 0) FROM {db:Identifier}.{staging:Identifier}) AS negative_tokens_held,
    (SELECT countIf(tokens_sold_early > tokens) FROM {db:Identifier}.{staging:Identifier}) AS oversold_lots,
    (SELECT countIf(wallet = '' OR condition_id = '' OR tx_hash = '') FROM {db:Identifier}.{staging:Identifier}) AS empty_keys,
    (SELECT countIf(resolved_at IS NULL) FROM {db:Identifier}.{unified:Identifier}) AS published_unresolved
