-- Hand the ledger to another run (takeover of a dead run, force, rollback, a new migration
-- after a rollback); the event is appended to the history.
UPDATE dupguard.migration_ledger
   SET status = %(status)s, run_id = %(run_id)s, dag_id = %(dag_id)s, heartbeat_at = now(), finished_at = NULL,
       steps = CASE WHEN %(reset_steps)s THEN jsonb_build_object() ELSE steps END,
       history = history || %(event)s::jsonb
 WHERE migration_id = %(migration_id)s
