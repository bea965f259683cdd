-- Demo resolutions: 30% of the markets (number % 10 < 3) resolved from the start time on, one a
-- minute; one in 40 with an empty payout array and one in 40 deleted (neither resolves).
INSERT INTO {resolutions} (condition_id, payout_numerators, payout_denominator, resolved_at, block_number, tx_hash,
                           is_deleted)
SELECT concat('0xc', leftPad(toString(number), 8, '0')),
       multiIf(number % 40 = 3, '[]', number % 2 = 0, '[1,0]', '["0","1"]'), 1,
       {start:DateTime} + number * 60, 1, '0xres', toUInt8(number % 40 = 7)
FROM numbers({n_conditions:UInt64})
WHERE number % 10 < 3
