-- The publish ledger, oldest first.
SELECT at, token, action, step, generation, generation_open, good, source, source_uuid, source_open, outcome
FROM {publish_log}
ORDER BY at, step = 'done'
