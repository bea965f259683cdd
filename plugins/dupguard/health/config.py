"""The facts of the daily health check (``dedup_health_daily``), with the reason for each."""
from __future__ import annotations

from datetime import timedelta

#: The telemetry check looks at the ids inserted in one day ...
TELEMETRY_DAY = timedelta(days=1)
#: ... ending this long before the run's logical date, so the copies the per-minute cleanup has
#: not reached yet do not count as a breach.
TELEMETRY_SETTLE = timedelta(minutes=10)
#: Each PostgreSQL check scans its tables once (aggregates only); one that runs longer than this
#: is cut short and retried instead of holding a connection all day.
STATEMENT_TIMEOUT_MS = 600_000
#: The positions thresholds the daily check shares with ``unified_positions_refresh``'s
#: post-publish gate (same params, same defaults).
POSITIONS_PARAMS = ("max_hours_stale", "min_unresolved_rows")


def watched_tasks() -> dict[str, tuple[str, ...]]:
    """Every dupguard task that can hold an alert incident, per DAG (plus the run-level ``<run>``
    and ``<late>`` incidents): the daily report lists the open ones. Incidents are Airflow
    Variables that a task can read by key but not list, hence this registry; a DAG policy test
    keeps it equal to the DAGs' real task ids."""
    from dupguard.telemetry.config import TABLE_KEYS

    per_dag = {
        "blocks_duplicate_cleanup": (*(f"delete_duplicate_{k}" for k in TABLE_KEYS), "quality_gate"),
        "telemetry_unique_indexes": (*(f"{step}_{k}" for step in ("dedup", "build_unique_index", "drop_old_index")
                                       for k in TABLE_KEYS), "quality_gate"),
        "unified_positions_refresh": ("preflight", "build", "quality_gate_staging", "publish",
                                      "quality_gate_health", "report"),
        "unified_positions_deduplicate": ("preflight", "deduplicate", "quality_gate", "report"),
        "unified_positions_rollback": ("rollback_open", "quality_gate_health"),
        "unified_positions_adopt_partitioning": ("preflight", "copy", "catch_up", "quality_gate", "exchange",
                                                 "cleanup"),
        "child_tables_dedup_migration": ("claim", "preflight", "backup", "dedup", "reclaim", "constraints",
                                         "quality_gate", "finish"),
        "child_tables_dedup_rollback": ("claim_rollback", "drop_constraints", "restore_rows", "quality_gate",
                                        "finish_rollback"),
        "dedup_health_daily": ("gate_telemetry", "gate_breezeway", "gate_positions", "open_incidents"),
    }
    return {dag_id: (*tasks, "<run>", "<late>") for dag_id, tasks in per_dag.items()}
