-- Claim the one-shot migration: the first run to insert its row holds it; a second insert
-- does nothing (and returns no row), and the caller reads who holds it.
INSERT INTO dupguard.migration_ledger (migration_id, status, run_id, dag_id, history)
VALUES (%(migration_id)s, 'running', %(run_id)s, %(dag_id)s, %(event)s::jsonb)
ON CONFLICT (migration_id) DO NOTHING
RETURNING run_id
