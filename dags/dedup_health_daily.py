"""dedup_health_daily: one gated health check per maintained system, every day."""
from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from dupguard import health, positions, settings
from dupguard.dagkit import dag_kwargs, run_time

DOC = """
### Daily duplicate health of every maintained system

One gate task per system; any breach fails the run and sends the alert.

| gate | checks |
|---|---|
| `gate_telemetry` | per table (`blocks`, `streams`, `processes`): ids with a row inserted in the last day (ending 10 min before the run's logical date) that have more than one row — must be 0; whether the unique index exists (reported) |
| `gate_breezeway` | per child table: duplicate natural keys (must be 0), the migration's unique constraint present and valid, table size |
| `gate_positions` | unified table: total, unresolved, wallets, newest entry, hours stale (<= `max_hours_stale`), unresolved duplicates (must be 0), lots in both open and resolved (must be 0), unresolved >= `min_unresolved_rows`; the refresh DAG's own post-publish gate and thresholds |

A system that is not set up yet (a missing table, the child-table migration not run) is reported in the
task log and return value and its gate is **skipped**, not failed.
"""


def _skip_if_not_set_up(fn, *args, **kwargs):
    from airflow.sdk.exceptions import AirflowSkipException

    try:
        return fn(*args, **kwargs)
    except health.NotSetUp as exc:
        raise AirflowSkipException(f"not set up: {exc}") from exc


@dag(
    dag_id="dedup_health_daily",
    **dag_kwargs(
        doc_md=DOC, tags=["health", "telemetry", "breezeway", "clickhouse"], schedule="@daily",
        params={
            "max_hours_stale": Param(positions.DEFAULTS["max_hours_stale"], type="number", minimum=0,
                                     description="newest unified entry may be at most this old (hours)"),
            "min_unresolved_rows": Param(positions.DEFAULTS["min_unresolved_rows"], type="integer", minimum=0,
                                         description="at least this many unresolved rows must be published"),
        },
    ),
)
def dedup_health_daily():
    @task
    def gate_telemetry():
        ctx = get_current_context()
        return _skip_if_not_set_up(health.telemetry_health, settings.TELEMETRY_CONN_ID, run_time(ctx))

    @task
    def gate_breezeway():
        return _skip_if_not_set_up(health.breezeway_health, settings.BREEZEWAY_CONN_ID)

    @task(pool=settings.CLICKHOUSE_POOL)
    def gate_positions():
        ctx = get_current_context()
        p = ctx["params"]
        return _skip_if_not_set_up(health.positions_health, settings.CLICKHOUSE_CONN_ID, run_time(ctx),
                                   max_hours_stale=float(p["max_hours_stale"]),
                                   min_unresolved_rows=int(p["min_unresolved_rows"]))

    gate_telemetry()
    gate_breezeway()
    gate_positions()


dedup_health_daily()
