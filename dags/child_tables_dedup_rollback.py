"""
### child_tables_dedup_rollback

Undoes `child_tables_dedup_migration` on `breezeway_postgres`: drops the six
`<table>_natural_key` constraints it added (never `task_tags_unique`), puts every row
it removed back from `dupguard.bw_backup_<table>` (same ids, same values), keeps every
row written since, then marks the ledger rolled back. A new migration run works after it.

**Schedule:** none (manual). The ETL may keep writing; switch the ETL back to the old
statement first if the new upsert is deployed (it needs the constraints).

**Gate:** every backed-up row is in its table byte for byte; rows now = rows before the
migration + rows written since; no migration constraint left. On failure the backups are
kept: fix the cause and trigger again (every step is idempotent).

**Locks:** `ALTER TABLE ... DROP CONSTRAINT` takes ACCESS EXCLUSIVE for milliseconds
(lock_timeout 1 s, retried); the restore inserts in short page-range transactions.
"""
from __future__ import annotations

from airflow.sdk import dag, task

from dupguard.common.dagkit import dag_kwargs


@dag(
    dag_id="child_tables_dedup_rollback",
    **dag_kwargs(doc_md=__doc__, tags=["breezeway", "postgres", "migration", "rollback"], schedule=None),
)
def child_tables_dedup_rollback():
    @task.short_circuit
    def claim_rollback(run_id=None):
        """Take the ledger for the rollback; a no-op when nothing was migrated or it was
        already rolled back; refused while a migration run is alive."""
        from dupguard.breezeway import tasks

        return tasks.claim_rollback(run_id)

    @task
    def drop_constraints(run_id=None):
        """Drop the constraints, indexes, triggers and copies the migration created."""
        from dupguard.breezeway import tasks

        return tasks.drop_constraints(run_id)

    @task
    def restore_rows(run_id=None):
        """Insert every backed-up row that is not in its table (same id and values)."""
        from dupguard.breezeway import tasks

        return tasks.restore_rows(run_id)

    @task
    def quality_gate(run_id=None):
        """Every removed row back byte for byte; counts = original + rows written since.
        The ledger records the verdict."""
        from dupguard.breezeway import tasks

        return tasks.rollback_gate(run_id)

    @task
    def finish_rollback(run_id=None):
        """Drop the restored backups and snapshots; mark the ledger rolled back."""
        from dupguard.breezeway import tasks

        return tasks.finish_rollback(run_id)

    claim_rollback() >> drop_constraints() >> restore_rows() >> quality_gate() >> finish_rollback()


child_tables_dedup_rollback()
