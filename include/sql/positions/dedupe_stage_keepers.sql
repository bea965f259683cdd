-- One copy of every duplicated lot key of one wallet range, kept aside before the copies
-- are deleted. Preference: the resolved copy (a lot is never both open and resolved), then
-- the copy with the most FIFO progress.
INSERT INTO {keep} ({columns})
SELECT {columns}
FROM {unified}
WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
  AND ({key}) IN (
        SELECT {key}
        FROM {unified}
        WHERE wallet >= {wallet_lo:String} AND ({wallet_hi:String} = '' OR wallet < {wallet_hi:String})
        GROUP BY {key}
        HAVING count() > 1)
ORDER BY {key}, isNull(resolved_at), tokens_sold_early DESC, exit_value DESC
LIMIT 1 BY {key}
