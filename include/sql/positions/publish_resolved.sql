-- Lots of markets that resolved since they were published as unresolved: insert their
-- resolved rows, skipping any lot already present as resolved (a retried publish inserts
-- nothing twice). The (wallet, condition_id) filter lets the primary index prune.
INSERT INTO {unified} ({columns})
SELECT {columns}
FROM {staging}
WHERE resolved_at IS NOT NULL
  AND ({key}) NOT IN (
        SELECT {key}
        FROM {unified}
        WHERE resolved_at IS NOT NULL
          AND (wallet, condition_id) IN (
                SELECT wallet, condition_id FROM {staging} WHERE resolved_at IS NOT NULL))
