-- The preflight figures of the first run (rows, max id, size per table), kept for the gates and
-- the rollback: a resumed or forced run never overwrites them.
UPDATE dupguard.migration_ledger
   SET steps = jsonb_set(steps, ARRAY['baseline'], %(baseline)s::jsonb)
 WHERE migration_id = %(migration_id)s AND NOT steps ? 'baseline'
