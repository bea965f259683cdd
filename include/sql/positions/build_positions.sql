-- Exact FIFO positions of every lot in scope, into the staging table.
-- Scope: every (wallet, condition_id, outcome_index) whose condition is unresolved now, plus
-- the conditions published as unresolved in the live table that have resolved since (they
-- are rebuilt as resolved rows). Wallet range [wallet_lo, wallet_hi) bounds one bucket
-- ('' = open end); ranges of the sort key are pruned by the primary index.
--
-- Per key the fills (deduplicated by FINAL: latest _version per fill) are sorted by
-- (event_time, block_number, fill_id) into one array and matched set-based:
--   h = held tokens after each fill   = running sum of tokens_delta clamped at 0
--   B = cumulative tokens bought      , S = B - h = cumulative tokens consumed by sells
-- A buy fill covers [B_prev, B) on the bought axis; sells consumed [0, S_total) of it, in
-- order, each at its own price, so the proceeds of a buy fill are P(min(B, S_total)) - P(B_prev)
-- with P the piecewise linear cumulative-proceeds curve over the consumed axis (breakpoints
-- at the consuming sells). Buy fills are then summed per lot (tx_hash).
INSERT INTO {db:Identifier}.{staging:Identifier}
    (tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, tokens,
     tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, is_short, is_closed)
WITH
    resolved AS (
        SELECT condition_id, resolved_at, nums, 1 AS is_resolved
        FROM (
            SELECT condition_id, resolved_at, is_deleted,
                   arrayMap(x -> toFloat64OrZero(trim(BOTH '"' FROM x)), JSONExtractArrayRaw(payout_numerators)) AS nums
            FROM {db:Identifier}.{resolutions:Identifier} FINAL
        )
        WHERE is_deleted = 0 AND length(nums) > 0 AND arraySum(nums) > 0
    ),
    moved AS (
        SELECT DISTINCT condition_id
        FROM {db:Identifier}.{unified:Identifier}
        WHERE resolved_at IS NULL AND condition_id IN (SELECT condition_id FROM resolved)
    ),
    per_key AS (
        SELECT wallet, condition_id, outcome_index,
               groupArray(event_time) AS a_time, groupArray(block_number) AS a_block, groupArray(fill_id) AS a_fill,
               groupArray(tx_hash) AS a_tx, groupArray(tokens_delta) AS a_tokens, groupArray(usdc_delta) AS a_usdc,
               groupArray(is_maker) AS a_maker
        FROM {db:Identifier}.{fills:Identifier} FINAL
        WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
          AND (condition_id NOT IN (SELECT condition_id FROM resolved) OR condition_id IN (SELECT condition_id FROM moved))
        GROUP BY wallet, condition_id, outcome_index
        HAVING max(tokens_delta) > 0
    ),
    matched AS (
        SELECT wallet, condition_id, outcome_index,
               -- fills of the key in (event_time, block_number, fill_id) order
               arraySort((i, t, b, f) -> (t, b, f), arrayEnumerate(a_time), a_time, a_block, a_fill) AS ord,
               arrayMap(i -> a_tokens[i], ord) AS d,
               arrayMap(i -> a_usdc[i], ord) AS u,
               arrayCumSum(arrayMap(x -> greatest(x, 0.), d)) AS B,
               arrayMap((b, h) -> b - h, B, arrayCumSumNonNegative(d)) AS S,
               S[-1] AS s_total,
               arrayDifference(S) AS cons,
               -- consuming sells: breakpoints of the cumulative-proceeds curve (0 first)
               arrayFilter((c, x) -> x < 0 AND c > 0, cons, d) AS sell_cons,
               arrayMap((x, y) -> x / -y, arrayFilter((x, y, c) -> y < 0 AND c > 0, u, d, cons), arrayFilter((y, c) -> y < 0 AND c > 0, d, cons)) AS sell_price,
               arrayPushFront(arrayFilter((s, c, x) -> x < 0 AND c > 0, S, cons, d), 0.) AS sv,
               arrayPushFront(arrayCumSum(arrayMap((c, p) -> c * p, sell_cons, sell_price)), 0.) AS pp,
               arrayPushBack(sell_price, 0.) AS np,
               -- buy fills: their interval [lo, B) on the bought axis, consumed up to s_total
               arrayFilter((i, x) -> x > 0, arrayEnumerate(d), d) AS bidx,
               arrayMap(i -> d[i], bidx) AS bq,
               arrayMap(i -> if(i = 1, 0., B[i - 1]), bidx) AS blo,
               arrayMap(i -> least(B[i], s_total), bidx) AS bhi,
               -- index of the last breakpoint <= x, for the sorted query points blo and bhi
               arraySort(arrayConcat(arrayMap(v -> (v, 0), sv), arrayMap(v -> (v, 1), blo))) AS mlo,
               arrayFilter((c, t) -> t.2 = 1, arrayCumSum(arrayMap(t -> t.2 = 0, mlo)), mlo) AS jlo,
               arraySort(arrayConcat(arrayMap(v -> (v, 0), sv), arrayMap(v -> (v, 1), bhi))) AS mhi,
               arrayFilter((c, t) -> t.2 = 1, arrayCumSum(arrayMap(t -> t.2 = 0, mhi)), mhi) AS jhi,
               arrayMap((lo, q) -> least(q, greatest(0., s_total - lo)), blo, bq) AS bsold,
               arrayMap((lo, hi, a, b) -> if(s_total > lo,
                            greatest(0., (pp[b] + (hi - sv[b]) * np[b]) - (pp[a] + (lo - sv[a]) * np[a])), 0.),
                        blo, bhi, jlo, jhi) AS bproceeds,
               -- buy fills grouped into lots (tx_hash), lots numbered by first fill
               arrayMap(i -> a_tx[ord[i]], bidx) AS btx,
               arrayEnumerateDense(btx) AS blot,
               -- lots are nearly always contiguous runs of buy fills: sort only when they are not
               if(arrayAll(x -> x >= 0, arrayDifference(blot)), arrayEnumerate(blot),
                  arraySort((k, l) -> (l, k), arrayEnumerate(blot), blot)) AS perm,
               arrayMap(k -> blot[k], perm) AS sl,
               arrayMap((a, b) -> a != b, sl, arrayPushFront(arrayPopBack(sl), 0)) AS lot_start,
               arrayMap(k -> btx[k], arrayFilter((k, f) -> f, perm, lot_start)) AS lot_tx,
               arrayMap(k -> a_time[ord[bidx[k]]], arrayFilter((k, f) -> f, perm, lot_start)) AS lot_time,
               arrayMap(x -> arraySum(x), arraySplit((x, f) -> f, arrayMap(k -> bq[k], perm), lot_start)) AS lot_tokens,
               arrayMap(x -> arraySum(x), arraySplit((x, f) -> f, arrayMap(k -> -u[bidx[k]], perm), lot_start)) AS lot_cost,
               arrayMap(x -> arraySum(x), arraySplit((x, f) -> f, arrayMap(k -> bsold[k], perm), lot_start)) AS lot_sold,
               arrayMap(x -> arraySum(x), arraySplit((x, f) -> f, arrayMap(k -> bproceeds[k], perm), lot_start)) AS lot_proceeds,
               arrayMap(x -> arrayMax(x), arraySplit((x, f) -> f, arrayMap(k -> a_maker[ord[bidx[k]]], perm), lot_start)) AS lot_maker
        FROM per_key
    ),
    lots AS (
        SELECT wallet, condition_id, outcome_index,
               tx_hash, entry_time, tokens, cost_usd, least(tokens, sold) AS tokens_sold_early, proceeds, is_maker
        FROM matched
        ARRAY JOIN lot_tx AS tx_hash, lot_time AS entry_time, lot_tokens AS tokens, lot_cost AS cost_usd,
                   lot_sold AS sold, lot_proceeds AS proceeds, lot_maker AS is_maker
        WHERE tokens >= 0.01
    )
SELECT
    l.tx_hash, l.wallet, l.condition_id, l.outcome_index, l.entry_time,
    if(r.is_resolved = 1, CAST(r.resolved_at AS Nullable(DateTime)), CAST(NULL AS Nullable(DateTime))) AS resolved_at,
    l.cost_usd, l.tokens, l.tokens_sold_early,
    l.tokens - l.tokens_sold_early AS tokens_held,
    if(r.is_resolved = 1, l.proceeds + (l.tokens - l.tokens_sold_early) * (r.nums[l.outcome_index + 1] / arraySum(r.nums)),
       l.proceeds) AS exit_value,
    if(r.is_resolved = 1, exit_value - l.cost_usd,
       l.proceeds - l.cost_usd * l.tokens_sold_early / l.tokens) AS pnl_usd,
    if(l.cost_usd = 0, 0., pnl_usd / l.cost_usd) AS roi,
    l.tokens_sold_early / l.tokens AS pct_sold_early,
    l.is_maker, toUInt8(0) AS is_short,
    toUInt8(r.is_resolved = 1 OR (l.tokens - l.tokens_sold_early) < 0.01) AS is_closed
FROM lots AS l
LEFT JOIN resolved AS r ON r.condition_id = l.condition_id
SETTINGS optimize_aggregation_in_order = 1, join_use_nulls = 0
