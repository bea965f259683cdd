-- The open part a rollback restores: the backup of the previous open part, minus the lots
-- published as resolved since (a lot is never both open and resolved).
INSERT INTO {rollback} ({columns})
SELECT {columns}
FROM {backup}
WHERE resolved_at IS NULL
  AND ({key}) NOT IN (
        SELECT {key}
        FROM {unified}
        WHERE resolved_at IS NOT NULL
          AND (wallet, condition_id) IN (SELECT wallet, condition_id FROM {backup} WHERE resolved_at IS NULL))
