"""
### dedup_health_daily: daily duplicate health of every maintained system

One gate task per system; any breach fails the run and sends the alert.

| gate | checks |
|---|---|
| `gate_telemetry` | per table (`blocks`, `streams`, `processes`): ids with a row inserted in the last day (ending 10 min before the run's logical date) that have more than one row — must be 0; whether the unique index exists (reported) |
| `gate_breezeway` | per child table: duplicate natural keys (must be 0), the migration's unique constraint present and valid, table size |
| `gate_positions` | unified table: total, unresolved, wallets, newest entry, hours stale (<= `max_hours_stale`), unresolved duplicates (must be 0), lots in both open and resolved (must be 0), unresolved >= `min_unresolved_rows`; the refresh DAG's own post-publish gate and thresholds |

`open_incidents` lists the alert incidents open now (see the README's Alerts section).

A system that is not set up yet (a missing table, the child-table migration not run) is reported in the
task log and its gate is **skipped**, not failed. On failure: see docs/health.md (runbook).
"""
from __future__ import annotations

from airflow.sdk import dag, task

from dupguard.common import settings
from dupguard.common.dagkit import dag_kwargs
from dupguard.health import tasks


@dag(
    dag_id="dedup_health_daily",
    **dag_kwargs(doc_md=__doc__, schedule="@daily", params=tasks.params(),
                 tags=["health", "telemetry", "breezeway", "positions", "postgres", "clickhouse", "check"]),
)
def dedup_health_daily():
    @task
    def gate_telemetry(logical_date=None, data_interval_end=None, dag_run=None):
        """Telemetry: no id with a row inserted in the day (ending 10 min before the logical date)
        has a second row; skipped while a telemetry table is missing."""
        return tasks.gate_telemetry(logical_date, data_interval_end, dag_run)

    @task
    def gate_breezeway():
        """Breezeway: no duplicate natural key and the six unique constraints valid; skipped until
        the child-table migration has completed."""
        return tasks.gate_breezeway()

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def gate_positions(params=None, logical_date=None, data_interval_end=None, dag_run=None):
        """Unified positions: the refresh's post-publish health gate with this run's thresholds;
        skipped until the first refresh has created the table."""
        return tasks.gate_positions(params, logical_date, data_interval_end, dag_run)

    @task
    def open_incidents():
        """The alert incidents open now, each with its first failure, the failures counted since and
        the latest error (also logged); the report of on-call's day."""
        return tasks.open_incidents()

    gate_telemetry()
    gate_breezeway()
    gate_positions()
    open_incidents()


dedup_health_daily()
