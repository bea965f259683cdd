-- BENCHMARK ONLY: the original plan's approximate positions, for comparison with the exact
-- FIFO (bench/bench_positions.py). Per lot: sold = least(tokens, greatest(0, total sold -
-- tokens bought by earlier lots)), proceeds at the key's average sell price. It counts
-- oversells as sales and ignores when each sell happened. Never used by a DAG.
INSERT INTO {staging} ({columns})
WITH
    resolved AS (
        SELECT condition_id, resolved_at, nums, 1 AS is_resolved
        FROM (SELECT condition_id, resolved_at, is_deleted,
                     arrayMap(x -> toFloat64OrZero(trim(BOTH '"' FROM x)), JSONExtractArrayRaw(payout_numerators)) AS nums
              FROM {resolutions} FINAL)
        WHERE is_deleted = 0 AND length(nums) > 0 AND arraySum(nums) > 0
    ),
    f AS (SELECT * FROM {fills} FINAL),
    lots AS (
        SELECT wallet, condition_id, outcome_index, tx_hash, min(event_time) AS entry_time,
               sum(tokens_delta) AS tokens, sum(-usdc_delta) AS cost_usd, max(is_maker) AS is_maker
        FROM f WHERE tokens_delta > 0
        GROUP BY wallet, condition_id, outcome_index, tx_hash
        HAVING tokens >= 0.01
    ),
    sells AS (
        SELECT wallet, condition_id, outcome_index, sum(-tokens_delta) AS sold, sum(usdc_delta) AS proceeds
        FROM f WHERE tokens_delta < 0
        GROUP BY wallet, condition_id, outcome_index
    ),
    ranked AS (
        SELECT *, sum(tokens) OVER (PARTITION BY wallet, condition_id, outcome_index ORDER BY entry_time, tx_hash
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS bought_before
        FROM lots
    ),
    approx AS (
        SELECT r.wallet AS wallet, r.condition_id AS condition_id, r.outcome_index AS outcome_index,
               r.tx_hash AS tx_hash, r.entry_time AS entry_time, r.tokens AS tokens, r.cost_usd AS cost_usd,
               r.is_maker AS is_maker,
               least(r.tokens, greatest(0., s.sold - r.bought_before)) AS sold_early,
               if(s.sold > 0, sold_early * s.proceeds / s.sold, 0.) AS proceeds
        FROM ranked AS r LEFT JOIN sells AS s
            ON s.wallet = r.wallet AND s.condition_id = r.condition_id AND s.outcome_index = r.outcome_index
    )
SELECT a.tx_hash, a.wallet, a.condition_id, a.outcome_index, a.entry_time,
       if(x.is_resolved = 1, CAST(x.resolved_at AS Nullable(DateTime)), CAST(NULL AS Nullable(DateTime))),
       a.cost_usd, a.tokens, a.sold_early, a.tokens - a.sold_early,
       if(x.is_resolved = 1, a.proceeds + (a.tokens - a.sold_early) * x.nums[a.outcome_index + 1] / arraySum(x.nums), a.proceeds) AS ev,
       if(x.is_resolved = 1, ev - a.cost_usd, a.proceeds - a.cost_usd * a.sold_early / a.tokens) AS pnl,
       if(a.cost_usd = 0, 0., pnl / a.cost_usd), a.sold_early / a.tokens, a.is_maker, 0,
       toUInt8(x.is_resolved = 1 OR a.tokens - a.sold_early < 0.01)
FROM approx AS a LEFT JOIN resolved AS x ON x.condition_id = a.condition_id
