-- A step completed: its figures under steps.<step> (a retried step overwrites its own entry).
UPDATE dupguard.migration_ledger
   SET steps = jsonb_set(steps, ARRAY[%(step)s], %(figures)s::jsonb), heartbeat_at = now()
 WHERE migration_id = %(migration_id)s AND run_id = %(run_id)s
