-- Synthetic fills for the demo and the benchmark (never production). Fills come in pairs
-- sharing one tx_hash (multi-fill lots); wallets are skewed (a few trade a lot), each
-- wallet trades a skewed handful of conditions; about 60% of the pairs are buys.
-- Sells may exceed the holdings (the excess is ignored by the FIFO).
INSERT INTO {fills}
    (fill_id, event_time, block_number, tx_hash, wallet, condition_id, outcome_index,
     tokens_delta, usdc_delta, source, is_self_fill, is_maker, _version)
SELECT
    lower(hex(cityHash64(number, {seed:UInt64}))) AS fill_id,
    toDateTime({start:DateTime}) + toUInt32(u_time * {span_seconds:UInt32}) AS event_time,
    toUInt64(toUInt32(event_time) / 2) AS block_number,
    concat('0x', lower(hex(cityHash64(g, {seed:UInt64}, 'tx')))) AS tx_hash,
    concat('0x', leftPad(lower(hex(w)), 12, '0')) AS wallet,
    concat('0xc', leftPad(toString((w * 7919 + toUInt64(pow(u_cond, 2) * 40)) % {n_conditions:UInt64}), 8, '0')) AS condition_id,
    toUInt8(u_side_outcome < 0.5) AS outcome_index,
    if(is_buy, qty, -qty * 1.1) AS tokens_delta,
    if(is_buy, -qty * price, qty * 1.1 * price) AS usdc_delta,
    if(number % 10 = 0, 'amm', 'clob') AS source,
    toUInt8(0) AS is_self_fill,
    toUInt8(number % 3 = 0) AS is_maker,
    toUInt64(1) AS _version
FROM (
    SELECT number, intDiv(number, 2) AS g,
           toUInt64(pow(cityHash64(g, {seed:UInt64}, 'w') / 18446744073709551615., 2) * {n_wallets:UInt64}) AS w,
           cityHash64(g, {seed:UInt64}, 'c') / 18446744073709551615. AS u_cond,
           cityHash64(g, {seed:UInt64}, 'o') / 18446744073709551615. AS u_side_outcome,
           cityHash64(g, {seed:UInt64}, 't') / 18446744073709551615. AS u_time,
           cityHash64(g, {seed:UInt64}, 'b') / 18446744073709551615. < 0.6 AS is_buy,
           round(1 + 99 * (cityHash64(number, {seed:UInt64}, 'q') / 18446744073709551615.), 2) AS qty,
           round(0.02 + 0.96 * (cityHash64(g, {seed:UInt64}, 'p') / 18446744073709551615.), 3) AS price
    FROM numbers({n_fills:UInt64})
)
