"""
### unified_positions_rollback

Manual (no schedule). Puts back the **open part of `pm_trade_fifo_roi_v3_mat_unified` as it
was before the last publish** of `unified_positions_refresh`: the newest good generation
`<table>__open_gen_<run token>` the refresh saved before it replaced the open part.

**When**: a publish went through its gates but readers must get the previous open
positions back (a wrong build noticed afterwards, `quality_gate_health` failed on
`unresolved` after a publish). Pause `unified_positions_refresh` first, or its next run
publishes a fresh build again.

1. **rollback_open** - copies the saved open part, minus the lots published as resolved
   since (a lot is never both open and resolved), into `<table>__rollback` and swaps it in
   the way publish does: `REPLACE PARTITION` on the partitioned table, else a `DELETE`
   mutation waited on by its own id, then insert. Resolved rows are untouched. Refuses
   (fails without retry) when there is no good generation. Safe to trigger twice: the
   saved generations only change with the next publish.
2. **quality_gate_health** - the refresh's post-publish gate: no duplicate open key, no lot
   both open and resolved, newest entry at most `max_hours_stale` before the logical date,
   at least `min_unresolved_rows` open lots.

On failure: `rollback_open` names what is missing (nothing was changed when it refused);
a mutation timeout is retried (see `system.mutations`). If `quality_gate_health` fails,
the saved open part itself was stale or small: unpause the refresh to rebuild from the
fills instead. Runbook: `docs/positions.md`.
"""
from __future__ import annotations

from airflow.sdk import dag, task

from dupguard.common import dagkit, settings
from dupguard.positions import tasks


@dag(dag_id="unified_positions_rollback",
     params=tasks.params("mutation_timeout_minutes", "max_hours_stale", "min_unresolved_rows", "database"),
     **dagkit.dag_kwargs(doc_md=__doc__, tags=["positions", "clickhouse", "rollback"], schedule=None))
def unified_positions_rollback():
    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def rollback_open(params=None) -> dict:
        """Swap the open part saved by the last publish (minus lots resolved since) back in."""
        return tasks.rollback_open(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def quality_gate_health(params=None, logical_date=None, data_interval_end=None, dag_run=None) -> dict:
        """Gate the restored table: no duplicate open key, nothing in both parts, fresh, enough open rows."""
        return tasks.gate_health(params, logical_date, data_interval_end, dag_run)

    rollback_open() >> quality_gate_health()


unified_positions_rollback()
