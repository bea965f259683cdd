-- Exact FIFO positions of every lot in scope, into the staging table.
-- Scope: every (wallet, condition_id, outcome_index) whose condition is unresolved now, plus
-- the conditions published as unresolved in the live table that have resolved since (they
-- are rebuilt as resolved rows). Wallet range [wallet_lo, wallet_hi) bounds one bucket
-- ('' = open end); ranges of the sort key are pruned by the primary index.
--
-- One pass over the fills, aggregated in sort-key order (no FINAL): per key one array of
-- fill tuples, deduplicated in the array (latest _version per fill_id, as FINAL would),
-- sorted by (event_time, block_number, fill_id), and matched set-based:
--   h = held tokens after each fill   = running sum of tokens_delta clamped at 0
--   B = cumulative tokens bought      , S = B - h = cumulative tokens consumed by sells
-- Buy fill j covers [B_{j-1}, B_j) on the bought axis; sells consumed [0, S_total) of it,
-- in order, each at its own price: its proceeds are Q_j - Q_{j-1}, Q_j = P(min(B_j, S_total))
-- with P the piecewise-linear cumulative-proceeds curve over the consumed axis (one
-- segment per consuming sell). P is evaluated at the sorted points by one merge (arraySort
-- of segment starts and query points) and a forward fill (arrayFill) - no lambda captures
-- an array, so every step is linear in the key's fills (except the sorts). Buy fills are
-- then split into lots (tx_hash): runs of equal tx_hash, sorted by tx_hash first only for
-- the rare key whose lots interleave.
INSERT INTO {staging} ({columns})
WITH
    resolved AS (
        SELECT condition_id, resolved_at, nums, 1 AS is_resolved
        FROM (
            SELECT condition_id, resolved_at, is_deleted,
                   arrayMap(x -> toFloat64OrZero(trim(BOTH '"' FROM x)), JSONExtractArrayRaw(payout_numerators)) AS nums
            FROM {resolutions} FINAL
        )
        WHERE is_deleted = 0 AND length(nums) > 0 AND arraySum(nums) > 0
    ),
    moved AS (
        SELECT DISTINCT condition_id
        FROM {unified}
        WHERE resolved_at IS NULL AND condition_id IN (SELECT condition_id FROM resolved)
    ),
    per_key AS (
        SELECT wallet, condition_id, outcome_index,
               -- every copy of every fill: (fill_id, _version, event_time, block_number, tokens, usdc, tx_hash, is_maker)
               groupArray((fill_id, _version, event_time, block_number, tokens_delta, usdc_delta, tx_hash, is_maker)) AS z0
        FROM {fills}
        WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
          AND (condition_id NOT IN (SELECT condition_id FROM resolved) OR condition_id IN (SELECT condition_id FROM moved))
        GROUP BY wallet, condition_id, outcome_index
        HAVING max(tokens_delta) > 0
    ),
    deduped AS (
        SELECT wallet, condition_id, outcome_index,
               -- copies of a fill: keep the one with the highest _version (last in (fill_id, _version) order)
               arraySort(x -> (x.1, x.2), z0) AS z1,
               z1.1 AS f1,
               arrayFilter((x, k) -> k, z1, arrayPushBack(arrayMap((a, b) -> a != b, arrayPopBack(f1), arrayPopFront(f1)), 1)) AS z2,
               -- fills in (event_time, block_number, fill_id) order
               arraySort(x -> (x.3, x.4, x.1), z2) AS z
        FROM per_key
    ),
    matched AS (
        SELECT wallet, condition_id, outcome_index,
               z.5 AS d, z.6 AS u,
               arrayCumSum(arrayMap(x -> greatest(x, 0.), d)) AS B,
               arrayMap((b, h) -> b - h, B, arrayCumSumNonNegative(d)) AS S,
               S[-1] AS s_total,
               arrayDifference(S) AS cons,
               -- a sell consumes cons > 0 (buys leave S unchanged up to rounding: only sells count)
               arrayMap((c, x) -> c > 0 AND x < 0, cons, d) AS consuming,
               arrayMap((k, c, x, y) -> if(k, c * (y / -x), 0.), consuming, cons, d, u) AS sell_proceeds,
               arrayCumSum(sell_proceeds) AS P,
               -- segments of the proceeds curve: (start on the consumed axis, 0, P at start, price)
               arrayPushBack(
                   arrayFilter((t, k) -> k,
                       arrayMap((s, c, p, sp, x, y) -> (s - c, toUInt8(0), p - sp, y / -x), S, cons, P, sell_proceeds, d, u),
                       consuming),
                   (s_total, toUInt8(0), P[-1], 0.)) AS segs,
               -- buy fills in fill order
               arrayFilter(x -> x.5 > 0, z) AS bz,
               arrayFilter((b, x) -> x > 0, B, d) AS bB,
               arrayMap((b, x) -> least(b, s_total), bB, bz) AS bx,
               -- P at each buy fill's clamped end: merge with the segment starts, forward-fill the segment
               arraySort(arrayConcat(segs, arrayMap(x -> (x, toUInt8(1), 0., 0.), bx))) AS m,
               arrayFilter((v, tg) -> tg = 1,
                   arrayMap((v, s, p, pr) -> p + (v - s) * pr, m.1,
                            arrayFill((v, tg) -> tg = 0, m.1, m.2), arrayFill((v, tg) -> tg = 0, m.3, m.2),
                            arrayFill((v, tg) -> tg = 0, m.4, m.2)),
                   m.2) AS bQ,
               arrayMap((lo, x) -> least(x.5, greatest(0., s_total - lo)), arrayPushFront(arrayPopBack(bB), 0.), bz) AS bsold,
               arrayMap((q, qp) -> greatest(0., q - qp), bQ, arrayPushFront(arrayPopBack(bQ), 0.)) AS bproc,
               -- (tx_hash, index, event_time, tokens, cost, sold, proceeds, is_maker) per buy fill
               arrayMap((x, i, s, p) -> (x.7, i, x.3, x.5, -x.6, s, p, x.8), bz, arrayEnumerate(bz), bsold, bproc) AS rec,
               bz.7 AS btx,
               arrayPushFront(arrayMap((a, b) -> a != b, arrayPopFront(btx), arrayPopBack(btx)), 1) AS run_start,
               -- lots are nearly always contiguous runs of buy fills: sort by tx_hash only when not
               if(arraySum(run_start) = arrayUniq(btx), rec, arraySort(x -> (x.1, x.2), rec)) AS lrec,
               arraySplit((x, s) -> s, lrec,
                          arrayPushFront(arrayMap((a, b) -> a.1 != b.1, arrayPopFront(lrec), arrayPopBack(lrec)), 1)) AS lot_groups
        FROM deduped
    ),
    lots AS (
        SELECT wallet, condition_id, outcome_index,
               g[1].1 AS tx_hash, g[1].3 AS entry_time,
               arraySum(x -> x.4, g) AS tokens, arraySum(x -> x.5, g) AS cost_usd,
               least(tokens, arraySum(x -> x.6, g)) AS tokens_sold_early,
               arraySum(x -> x.7, g) AS proceeds, arrayMax(x -> x.8, g) AS is_maker
        FROM matched
        ARRAY JOIN lot_groups AS g
        WHERE tokens >= {dust_tokens:Float64}
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
    toUInt8(r.is_resolved = 1 OR (l.tokens - l.tokens_sold_early) < {dust_tokens:Float64}) AS is_closed
FROM lots AS l
LEFT JOIN resolved AS r ON r.condition_id = l.condition_id
SETTINGS optimize_aggregation_in_order = 1, join_use_nulls = 0
