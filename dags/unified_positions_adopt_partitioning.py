"""
### unified_positions_adopt_partitioning

Manual, one-shot (no schedule): moves production's **unpartitioned**
`pm_trade_fifo_roi_v3_mat_unified` to the `PARTITION BY isNull(resolved_at)` shape online,
so that every later `unified_positions_refresh` publishes its open part by an atomic
`REPLACE PARTITION` (readers never see a gap) instead of a `DELETE` mutation + insert.
Pause `unified_positions_refresh` (and any other writer of the table) while it runs.

1. **preflight** - columns; state: `to_adopt`, `exchanged` (rename left) or `adopted`
   (then every step below changes nothing); ranges copied by an earlier run.
2. **copy** - `<table>__partitioned` (partitioned shape) filled wallet range by wallet range
   (planned once in `<table>__adopt_ledger`, each marked done after its insert: a killed run
   resumes at the first range not done; a range begun but not marked is cleared first).
3. **catch_up** - ranges whose rows changed since their copy (checksum of every column) are
   cleared and copied again, until none differs.
4. **quality_gate** - the copy holds the same rows (count and checksum of every column) and
   the same lot keys as the table, open rows in partition 1.
5. **exchange** - `EXCHANGE TABLES` (atomic); the original becomes
   `<table>__pre_partitioning` (refused if the table changed since the gate: re-run).
6. **cleanup** - drops `<table>__pre_partitioning` only with `drop_old`; reports partitions.

Idempotent: a re-run (or a task retry) continues from where the last one stopped; after the
exchange it changes nothing but, with `drop_old`, the old table. Runbook: `docs/positions.md`.
"""
from __future__ import annotations

from airflow.sdk import dag, task

from dupguard.common import dagkit, settings
from dupguard.positions import tasks


@dag(dag_id="unified_positions_adopt_partitioning",
     params=tasks.params("max_bucket_fills", "mutation_timeout_minutes", "drop_old", "database"),
     **dagkit.dag_kwargs(doc_md=__doc__, tags=["positions", "clickhouse", "migration"], schedule=None))
def unified_positions_adopt_partitioning():
    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def preflight(params=None) -> dict:
        """Check the columns; find the state (to adopt, exchanged, adopted) and the ranges already copied."""
        return tasks.adopt_preflight(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def copy(params=None) -> dict:
        """Create the partitioned copy and copy the wallet ranges not done yet (resumable)."""
        return tasks.adopt_copy(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def catch_up(params=None) -> dict:
        """Copy again the wallet ranges written since their copy, until none differs."""
        return tasks.adopt_catch_up(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def quality_gate(params=None) -> dict:
        """Same rows (every column) and same lot keys in the copy as in the table."""
        return tasks.gate_adopt(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def exchange(gated: dict, params=None) -> dict:
        """EXCHANGE TABLES (atomic); keep the original as <table>__pre_partitioning."""
        return tasks.adopt_exchange(params, gated)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def cleanup(pre: dict, copied: dict, caught_up: dict, swapped: dict, params=None) -> dict:
        """Drop <table>__pre_partitioning when drop_old is set; report the partitions and the duration."""
        return tasks.adopt_cleanup(params, pre, {"copy": copied, "catch_up": caught_up, "exchange": swapped})

    pre = preflight()
    copied = copy()
    caught_up = catch_up()
    gated = quality_gate()
    swapped = exchange(gated)
    pre >> copied >> caught_up >> gated
    cleanup(pre, copied, caught_up, swapped)


unified_positions_adopt_partitioning()
