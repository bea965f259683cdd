-- The run ends the migration or its rollback: status complete / rolled_back, with the event
-- (and, for a migration, the figures under steps.finish).
UPDATE dupguard.migration_ledger
   SET status = %(status)s, finished_at = now(),
       steps = CASE WHEN %(figures)s::jsonb IS NULL THEN steps ELSE jsonb_set(steps, ARRAY['finish'], %(figures)s::jsonb) END,
       history = history || %(event)s::jsonb
 WHERE migration_id = %(migration_id)s AND run_id = %(run_id)s
