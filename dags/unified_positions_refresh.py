"""
### unified_positions_refresh

Every six hours (`0 */6 * * *`, UTC) rebuilds the **open (unresolved) positions** of
`pm_trade_fifo_roi_v3_mat_unified` (ClickHouse, connection `polymarket_clickhouse`) from
the fills, with exact FIFO matching, and publishes them without ever showing readers an
empty or half-built table.

1. **preflight** - source tables and columns exist; the newest fill is at most
   `max_source_lag_hours` before the run's logical date; mutations of the unified table
   pending longer than `stuck_mutation_minutes` are killed by id and reported. Creates the
   unified table (partitioned by open/resolved) when it is missing.
2. **build** - every open lot of every wallet (not only recently active ones), and the
   lots of markets resolved since they were published as open (rebuilt as resolved rows),
   into `<table>__staging`.
3. **quality_gate_staging** - staging has no duplicate key, no negative `tokens_held`,
   no `tokens_sold_early > tokens`, at least `min_unresolved_rows` open lots and at least
   `max_drop_ratio` x the published open lots. A failure publishes nothing.
4. **publish** - `REPLACE PARTITION` of the open part (table partitioned by
   `isNull(resolved_at)`), else `DELETE WHERE resolved_at IS NULL` waited on by its own
   mutation id, then insert. The open part it replaces is saved first as a generation
   `<table>__open_gen_<run token>` (the last 3, and always the newest good one, are kept), and
   each step is logged in `<table>__publish_log`, so a killed publish is completed by the next
   attempt (retry, cleared task, or the next run's preflight).
5. **quality_gate_health** - published table: no duplicate open key, no lot both open and
   resolved, newest entry at most `max_hours_stale` before the logical date, enough open rows.
6. **report** - counts before/after, rows per partition, duration.

A run still going `late_after_minutes` (default 90) after it started sends one
`[dupguard] LATE` alert, closed when the run's last task succeeds.

On failure: see the runbook in `docs/positions.md` (each gate's meaning, what to check,
how to re-run). A bad publish is undone by triggering `unified_positions_rollback`.
Trigger by hand with the params below (UI form or
`airflow dags test unified_positions_refresh --conf '{"min_unresolved_rows": 1000}'`).
"""
from __future__ import annotations

from airflow.sdk import dag, task

from dupguard.common import dagkit, settings
from dupguard.positions import tasks


@dag(dag_id="unified_positions_refresh",
     params=tasks.params("min_unresolved_rows", "max_drop_ratio", "max_hours_stale", "max_source_lag_hours",
                         "stuck_mutation_minutes", "mutation_timeout_minutes", "build_buckets", "max_bucket_fills",
                         "late_after_minutes", "database"),
     **dagkit.dag_kwargs(doc_md=__doc__, tags=["positions", "clickhouse", "refresh"], schedule="0 */6 * * *",
                         late_watch=tasks.LATE_WATCH))
def unified_positions_refresh():
    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def preflight(params=None, logical_date=None, data_interval_end=None, dag_run=None) -> dict:
        """Check source tables, columns and freshness; kill stuck mutations of the unified table by id."""
        return tasks.refresh_preflight(params, logical_date, data_interval_end, dag_run)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def build(params=None) -> dict:
        """Rebuild every open lot (exact FIFO, set-based in ClickHouse) into the staging table."""
        return tasks.build_staging(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def quality_gate_staging(params=None) -> dict:
        """Gate the staging table before anything is published; a failure leaves the live table untouched."""
        return tasks.gate_staging(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def publish(params=None) -> dict:
        """Swap the open part in (REPLACE PARTITION, or DELETE mutation waited by id then insert)."""
        return tasks.publish_open(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def quality_gate_health(params=None, logical_date=None, data_interval_end=None, dag_run=None) -> dict:
        """Gate the published table: no duplicate open key, nothing in both parts, fresh, enough open rows."""
        return tasks.gate_health(params, logical_date, data_interval_end, dag_run)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def report(pre: dict, built: dict, published: dict, health: dict, params=None) -> dict:
        """Log and return counts before/after, rows per partition and the run's duration."""
        return tasks.report(params, pre, {"killed_mutations": pre["killed_mutations"], "build": built,
                                          "publish": published, "health": health})

    pre = preflight()
    built = build()
    gated = quality_gate_staging()
    published = publish()
    health = quality_gate_health()
    pre >> built >> gated >> published >> health
    report(pre, built, published, health)


unified_positions_refresh()
