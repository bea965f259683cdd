"""
### blocks_duplicate_cleanup — per-minute removal of retried telemetry rows

**Schedule** `* * * * *` (catchup off, one run at a time). Connection `telemetry_postgres`.

Client HTTP retries resend the same row with the same UUID, so `blocks`, `streams` and
`processes` gain duplicate rows. Until the unique indexes exist (DAG `telemetry_unique_indexes`),
this DAG runs every minute, one task per table (one table's failure does not hide the others):

* **window**: `[logical date - lookback, logical date)`; when the last successful run is older
  (scheduler down, DAG paused, failed runs) it reaches back to it, capped at `max_catchup_hours`.
* **delete_duplicate_<table>**: for every id with a row inserted in the window, delete every row of
  that id but one, wherever the copies lie in time (probed through the id index): keep the oldest
  `insert_time`, NULL last, ties by `ctid`. One short transaction with `lock_timeout` and
  `statement_timeout`. Skipped (and logged) when a valid unique index exists on the id column.
  The task's return value (XCom, visible in the UI) reports the window, rows deleted and ids affected.
* **quality_gate**: no id with a row in the window has more than one row (great-expectations).

**When it fails**: see the runbook in `docs/telemetry.md`. A lock/statement timeout means a long
transaction holds the table: find it in `pg_stat_activity`; the next run reaches back over the gap.
A gate failure means duplicates survived the delete (writers racing the delete): re-run the run.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from dupguard.common.dagkit import dag_kwargs
from dupguard.telemetry import config


@dag(
    dag_id="blocks_duplicate_cleanup",
    **dag_kwargs(
        doc_md=__doc__,
        tags=["telemetry", "postgres", "cleanup"],
        schedule="* * * * *",
        dagrun_timeout=timedelta(minutes=5),
        default_args_overrides={"retry_delay": timedelta(seconds=10),
                                "execution_timeout": timedelta(minutes=2)},
        params={
            "lookback_minutes": Param(config.DEFAULT_LOOKBACK_MINUTES, type="number", minimum=1,
                                      title="Lookback (minutes)",
                                      description="The window reaches back this far from the run's logical date."),
            "max_catchup_hours": Param(config.DEFAULT_MAX_CATCHUP_HOURS, type="number", minimum=0.1,
                                       title="Max catch-up (hours)",
                                       description="After downtime the window reaches back to the last successful "
                                                   "run, at most this far."),
            "lock_timeout_ms": Param(config.DEFAULT_LOCK_TIMEOUT_MS, type="integer", minimum=1,
                                     title="Lock timeout (ms)",
                                     description="The delete gives up (and the task retries) when a lock is not "
                                                 "granted within this time."),
            "statement_timeout_ms": Param(config.DEFAULT_STATEMENT_TIMEOUT_MS, type="integer", minimum=1,
                                          title="Statement timeout (ms)",
                                          description="A delete running longer than this is cancelled."),
        },
    ),
)
def blocks_duplicate_cleanup():
    @task
    def delete_duplicates(table_key: str, params=None, logical_date=None, data_interval_end=None, dag_run=None,
                          prev_data_interval_end_success=None, prev_start_date_success=None) -> dict:
        """Delete every extra copy of the ids that have a row inserted in this run's window
        (keep the oldest insert_time, NULL last, ties by ctid) in one short transaction with
        lock_timeout and statement_timeout; skipped when a valid unique index exists. Returns
        the window, rows deleted and ids affected."""
        from dupguard.telemetry import tasks

        window = tasks.run_window(params, logical_date, data_interval_end, dag_run,
                                  prev_data_interval_end_success, prev_start_date_success)
        return tasks.delete_duplicates(table_key, params, window)

    @task
    def quality_gate(params=None, logical_date=None, data_interval_end=None, dag_run=None,
                     prev_data_interval_end_success=None, prev_start_date_success=None) -> dict:
        """great-expectations gate: no id with a row in this run's window has more than one row
        in any cleaned table. Fails the run (and alerts) otherwise."""
        from dupguard.telemetry import tasks

        return tasks.window_gate(tasks.run_window(params, logical_date, data_interval_end, dag_run,
                                                  prev_data_interval_end_success, prev_start_date_success))

    deletes = [delete_duplicates.override(task_id=f"delete_duplicate_{key}")(key) for key in config.TABLE_KEYS]
    deletes >> quality_gate()


blocks_duplicate_cleanup()
