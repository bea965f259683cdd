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
NULL keys untouched; short id-range batches) -> reclaim (online copy + millisecond
TRUNCATE/reload swap) -> constraints (`CREATE UNIQUE INDEX CONCURRENTLY` + `ADD CONSTRAINT
USING INDEX`, bounded clean-and-retry) -> quality_gate -> finish.

**Gate:** zero duplicate keys; six valid constraints; every key of the preflight snapshot
present; NULL-key rows unchanged; every removed row's key kept; `task_tags_unique` intact.
On failure: see docs/breezeway.md (runbook); `child_tables_dedup_rollback` restores.

**Params:** `force` (bool), `stop_after` (step name: stop there, a crash drill),
`batch_ids` (ids per dedup transaction).
"""
from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from dupguard import settings
from dupguard.dagkit import dag_kwargs

CONN = settings.BREEZEWAY_CONN_ID
STEPS = ["", "claim", "preflight", "backup", "dedup", "reclaim", "constraints", "quality_gate"]


def _run():
    ctx = get_current_context()
    return ctx["run_id"], ctx["params"]


@dag(
    dag_id="child_tables_dedup_migration",
    **dag_kwargs(
        doc_md=__doc__,
        tags=["breezeway", "postgres", "migration"],
        schedule=None,
        params={
            "force": Param(False, type="boolean", description="re-check and repair a completed migration"),
            "stop_after": Param("", type="string", enum=STEPS, description="stop the run after this step (drill)"),
            "batch_ids": Param(50_000, type="integer", minimum=1_000, description="ids per dedup transaction"),
        },
    ),
)
def child_tables_dedup_migration():
    @task.short_circuit
    def claim():
        """Claim the migration in `dupguard.migration_ledger` (`INSERT ... ON CONFLICT DO NOTHING`).
        Refuses while another run is alive; resumes a dead run; skips everything (success)
        when the migration is already complete and `force` is false."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        res = bw.task_step("claim", bw.claim, stop_after=params["stop_after"], conn_id=CONN, run_id=run_id,
                           force=params["force"], run_state=bw.airflow_run_state)
        return False if res["action"] == "noop" else res

    @task
    def preflight():
        """Check every configured table and key column; snapshot the key sets (once); log and
        return rows, distinct keys, duplicates, NULL-key rows and size per table."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        return bw.task_step("preflight", bw.preflight, stop_after=params["stop_after"], conn_id=CONN, run_id=run_id)

    @task
    def backup():
        """Create `dupguard.bw_backup_<table>`: the dedup writes each removed row there in
        the same statement that deletes it."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        return bw.task_step("backup", bw.backup, stop_after=params["stop_after"], conn_id=CONN, run_id=run_id)

    @task
    def dedup():
        """Keep one row per natural key (oldest created_at, then smallest id; NULL created_at
        newest); id-range transactions with row locks only; NULL keys untouched."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        return bw.task_step("dedup", bw.dedup, stop_after=params["stop_after"], conn_id=CONN, run_id=run_id,
                            batch_ids=params["batch_ids"])

    @task
    def reclaim():
        """Give the removed rows' space back to the OS: copy the live rows online, then swap
        under ACCESS EXCLUSIVE for milliseconds (TRUNCATE + reload; lock_timeout 1 s, retried).
        Lightly deduplicated tables get a plain VACUUM."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        return bw.task_step("reclaim", bw.reclaim, stop_after=params["stop_after"], conn_id=CONN, run_id=run_id)

    @task
    def constraints():
        """CREATE UNIQUE INDEX CONCURRENTLY + ADD CONSTRAINT ... USING INDEX per table; cleans
        duplicates that writers slipped in and retries (bounded); drops INVALID leftovers."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        return bw.task_step("constraints", bw.constraints, stop_after=params["stop_after"], conn_id=CONN,
                            run_id=run_id)

    @task
    def quality_gate():
        """Great-expectations gate: no duplicate key, six valid constraints, every key kept,
        NULL-key rows unchanged, task_tags_unique intact."""
        from dupguard import breezeway as bw

        run_id, params = _run()
        return bw.task_step("quality_gate", bw.quality_gate, stop_after=params["stop_after"], conn_id=CONN,
                            run_id=run_id)

    @task
    def finish():
        """Mark the ledger complete with the figures."""
        from dupguard import breezeway as bw

        run_id, _ = _run()
        return bw.task_step("finish", bw.finish, conn_id=CONN, run_id=run_id)

    claim() >> preflight() >> backup() >> dedup() >> reclaim() >> constraints() >> quality_gate() >> finish()


child_tables_dedup_migration()
