"""
### child_tables_dedup_migration

One-shot migration of the Breezeway child tables (`breezeway_postgres`): removes the
duplicate rows the old ETL inserted (`ON CONFLICT DO NOTHING` without a conflict target),
keeps every removed row in `dupguard.bw_backup_<table>`, adds `UNIQUE (<natural key>)`
to the six tables and returns the space to the OS. **The ETL may keep writing.**

**Schedule:** none (trigger it by hand). A trigger after completion is a no-op that says
so in the `claim` log; `force=true` re-checks and repairs; a run that died resumes when
triggered again (the `dupguard.migration_ledger` row tells where it stopped).

**Steps:** claim (ledger `INSERT ... ON CONFLICT DO NOTHING`) -> preflight (tables and
columns exist; rows, distinct keys, duplicates, NULL-key rows, size per table) -> backup
-> dedup (keep the oldest `created_at`, ties by smallest `id`, NULL `created_at` newest;
NULL keys untouched; copy-swap or short id-range batches) -> reclaim (online copy +
short TRUNCATE/reload swap, or VACUUM) -> constraints (`CREATE UNIQUE INDEX
CONCURRENTLY` + `ADD CONSTRAINT USING INDEX`, bounded clean-and-retry) -> quality_gate -> finish.

**Gate:** zero duplicate keys; six valid constraints; every key of the preflight snapshot
present; NULL-key rows unchanged; every removed row's key kept; `task_tags_unique` intact.
The ledger records the verdict, a failed one too. On failure: see docs/breezeway.md
(runbook); `child_tables_dedup_rollback` restores.

**Params:** `force` (bool), `stop_after` (step name: stop there, a crash drill),
`batch_ids` (ids per dedup transaction), `max_hours` (default 4: a run still going this
long after it started sends one `[dupguard] LATE` alert; the migration itself goes on).
"""
from __future__ import annotations

from airflow.sdk import Param, dag, task

from dupguard.breezeway.config import BATCH_IDS, MAX_HOURS, MIGRATION_STEPS
from dupguard.common.dagkit import LateWatch, dag_kwargs


@dag(
    dag_id="child_tables_dedup_migration",
    **dag_kwargs(
        doc_md=__doc__,
        tags=["breezeway", "postgres", "migration"],
        schedule=None,
        late_watch=LateWatch("max_hours", 3600, MAX_HOURS),
        params={
            "force": Param(False, type="boolean", title="Force",
                           description="Re-check and repair a completed migration: every step runs again "
                                       "(removes duplicates written since, re-adds a dropped constraint)."),
            "stop_after": Param(None, type=["null", "string"], enum=[None, *MIGRATION_STEPS[:-1]],
                                values_display={None: "(normal run)"}, title="Stop after step (drill)",
                                description="Fail the run right after this step, as if the worker died; the "
                                            "next trigger resumes where it stopped. Leave empty for a normal run."),
            "max_hours": Param(MAX_HOURS, type="number", minimum=0.001, title="Late after (hours)",
                               description="A run still going this long after it started sends one LATE alert "
                                           "(the migration goes on; it is not stopped)."),
            "batch_ids": Param(BATCH_IDS, type="integer", minimum=1_000, title="Ids per dedup batch",
                               description="Id range per dedup DELETE transaction (row locks only, ~0.1-0.3 s)."),
        },
    ),
)
def child_tables_dedup_migration():
    @task.short_circuit
    def claim(params=None, run_id=None):
        """Claim the migration in `dupguard.migration_ledger` (`INSERT ... ON CONFLICT DO NOTHING`).
        Refuses while another run is alive; resumes a dead run; skips everything (success)
        when the migration is already complete and `force` is false."""
        from dupguard.breezeway import tasks

        return tasks.claim(run_id, force=params["force"], stop_after=params["stop_after"])

    @task
    def preflight(params=None, run_id=None):
        """Check every configured table and key column; snapshot the key sets (once); log and
        return rows, distinct keys, duplicates, NULL-key rows and size per table."""
        from dupguard.breezeway import tasks

        return tasks.preflight(run_id, stop_after=params["stop_after"])

    @task
    def backup(params=None, run_id=None):
        """Create `dupguard.bw_backup_<table>`: the dedup writes each removed row there in
        the same transaction that removes it."""
        from dupguard.breezeway import tasks

        return tasks.backup(run_id, stop_after=params["stop_after"])

    @task
    def dedup(params=None, run_id=None):
        """Keep one row per natural key (oldest created_at, then smallest id; NULL created_at
        newest); heavily duplicated tables by copy-swap (exclusive lock of 0.1-0.3 s), others by
        id-range transactions with row locks only; NULL keys untouched."""
        from dupguard.breezeway import tasks

        return tasks.dedup(run_id, batch_ids=params["batch_ids"], stop_after=params["stop_after"])

    @task
    def reclaim(params=None, run_id=None):
        """Give the removed rows' space back to the OS: copy the live rows online, then swap
        under ACCESS EXCLUSIVE for 0.1-0.3 s (TRUNCATE + reload; lock_timeout 100 ms, retried).
        Lightly deduplicated tables get a plain VACUUM; copy-swapped ones need nothing."""
        from dupguard.breezeway import tasks

        return tasks.reclaim(run_id, stop_after=params["stop_after"])

    @task
    def constraints(params=None, run_id=None):
        """CREATE UNIQUE INDEX CONCURRENTLY + ADD CONSTRAINT ... USING INDEX per table; cleans
        duplicates that writers slipped in and retries (bounded); drops INVALID leftovers."""
        from dupguard.breezeway import tasks

        return tasks.constraints(run_id, stop_after=params["stop_after"])

    @task
    def quality_gate(params=None, run_id=None):
        """Great-expectations gate: no duplicate key, six valid constraints, every key kept,
        NULL-key rows unchanged, task_tags_unique intact. The ledger records the verdict."""
        from dupguard.breezeway import tasks

        return tasks.quality_gate(run_id, stop_after=params["stop_after"])

    @task
    def finish(run_id=None):
        """Mark the ledger complete with the figures."""
        from dupguard.breezeway import tasks

        return tasks.finish(run_id)

    claim() >> preflight() >> backup() >> dedup() >> reclaim() >> constraints() >> quality_gate() >> finish()


child_tables_dedup_migration()
