"""What the dupguard view knows about the DAGs: which system each belongs to, its gate tasks,
and the metrics read from the reports its tasks return (their XCom ``return_value``).

A metric is read per run. Its name may end with ``.<table>`` (``rows_deleted.blocks``): the
table comes from the system's configuration. ``gate.<task_id>`` is 1 when that gate task
succeeded in the run, 0 when it failed (read from the task's state: a failed gate returns nothing).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Reports = dict[str, Any]  # task_id -> the task's return value


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    tasks: tuple[str, ...]  # the task reports it is computed from
    get: Callable[[Reports], float | None]
    unit: str = ""


@dataclass(frozen=True)
class Chart:
    """A dashboard chart: one line per metric, one point per run."""

    title: str
    dag_id: str
    metrics: tuple[str, ...]
    unit: str = ""


@dataclass(frozen=True)
class System:
    key: str
    title: str
    dags: tuple[str, ...]
    charts: tuple[Chart, ...] = ()


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def dig(report: Any, *path: Any) -> Any:
    """``report[path[0]][path[1]]...``; a ``("table", name)`` step picks the list item whose
    ``table`` is ``name``; None when any step is missing."""
    cur = report
    for step in path:
        if isinstance(step, tuple) and isinstance(cur, list):
            cur = next((x for x in cur if isinstance(x, dict) and x.get(step[0]) == step[1]), None)
        elif isinstance(cur, dict):
            cur = cur.get(step)
        else:
            return None
        if cur is None:
            return None
    return cur


@dataclass(frozen=True)
class Field:
    """``reports[task][path...]`` as a number; a path of keys only is read in SQL (``value #>> path``)."""

    task: str
    path: tuple[Any, ...]

    def __call__(self, reports: Reports) -> float | None:
        return number(dig(reports.get(self.task), *self.path))

    @property
    def in_sql(self) -> bool:
        return all(isinstance(step, str) for step in self.path)


def field(task_id: str, *path: Any) -> Field:
    return Field(task_id, path)


def _difference(a: Callable[[Reports], float | None], b: Callable[[Reports], float | None]):
    def get(reports: Reports) -> float | None:
        x, y = a(reports), b(reports)
        return None if x is None or y is None else x - y

    return get


def telemetry_tables() -> tuple[str, ...]:
    from dupguard.telemetry.config import TABLE_KEYS

    return tuple(TABLE_KEYS)


def breezeway_tables() -> tuple[str, ...]:
    from dupguard.breezeway.config import CHILD_TABLES

    return tuple(t.name for t in CHILD_TABLES)


def _telemetry_cleanup() -> list[Metric]:
    out = []
    for t in telemetry_tables():
        task = f"delete_duplicate_{t}"
        out += [Metric(f"rows_deleted.{t}", f"rows deleted ({t})", (task,), field(task, "rows_deleted"), "rows"),
                Metric(f"ids_affected.{t}", f"ids affected ({t})", (task,), field(task, "ids_affected"), "ids"),
                Metric(f"window_ids.{t}", f"ids in the window ({t})", (task,), field(task, "window_ids"), "ids"),
                Metric(f"delete_seconds.{t}", f"delete seconds ({t})", (task,), field(task, "seconds"), "s")]
    return out


def _telemetry_unique() -> list[Metric]:
    out = []
    for t in telemetry_tables():
        dedup, build = f"dedup_{t}", f"build_unique_index_{t}"
        out += [Metric(f"rows_deleted.{t}", f"rows deleted ({t})", (dedup,), field(dedup, "rows_deleted"), "rows"),
                Metric(f"build_seconds.{t}", f"index build seconds ({t})", (build,), field(build, "seconds"), "s")]
    return out


def _positions_refresh() -> list[Metric]:
    return [
        Metric("open_lots_published", "open lots published", ("publish",), field("publish", "open_rows_published"),
               "lots"),
        Metric("lots_moved_to_resolved", "lots moved to resolved", ("publish",),
               field("publish", "newly_resolved_inserted"), "lots"),
        Metric("staging_rows", "staging rows", ("build",), field("build", "staged_rows"), "rows"),
        Metric("build_seconds", "build seconds", ("build",), field("build", "seconds"), "s"),
        Metric("publish_seconds", "publish seconds", ("publish",), field("publish", "seconds"), "s"),
        Metric("open_lots_after", "open lots after the run", ("report",), field("report", "after", "unresolved"),
               "lots"),
        Metric("duration_seconds", "run duration", ("report",), field("report", "duration_seconds"), "s"),
    ]


def _positions_dedupe() -> list[Metric]:
    before, after = field("report", "before", "total"), field("report", "after", "total")
    return [Metric("rows_before", "rows before", ("report",), before, "rows"),
            Metric("rows_after", "rows after", ("report",), after, "rows"),
            Metric("rows_removed", "rows removed", ("report",), _difference(before, after), "rows"),
            Metric("duration_seconds", "run duration", ("report",), field("report", "duration_seconds"), "s")]


def _breezeway_migration() -> list[Metric]:
    out = []
    for t in breezeway_tables():
        size_before = field("preflight", "tables", ("table", t), "size_bytes")
        size_after = field("reclaim", "tables", t, "size_after")
        out += [
            Metric(f"rows_before.{t}", f"rows before ({t})", ("preflight",),
                   field("preflight", "tables", ("table", t), "rows"), "rows"),
            Metric(f"rows_after.{t}", f"rows after ({t})", ("reclaim",), field("reclaim", "tables", t, "live_rows"),
                   "rows"),
            Metric(f"rows_removed.{t}", f"rows removed ({t})", ("dedup",), field("dedup", "tables", t, "removed"),
                   "rows"),
            Metric(f"bytes_before.{t}", f"bytes before ({t})", ("preflight",), size_before, "bytes"),
            Metric(f"bytes_after.{t}", f"bytes after ({t})", ("reclaim",), size_after, "bytes"),
            Metric(f"bytes_reclaimed.{t}", f"bytes reclaimed ({t})", ("preflight", "reclaim"),
                   _difference(size_before, size_after), "bytes"),
        ]
    return out


def _breezeway_rollback() -> list[Metric]:
    return [Metric(f"rows_restored.{t}", f"rows restored ({t})", ("restore_rows",),
                   field("restore_rows", "tables", t, "restored"), "rows") for t in breezeway_tables()]


#: dag_id -> its gate tasks (a failed gate fails the run and alerts).
GATES: dict[str, tuple[str, ...]] = {
    "blocks_duplicate_cleanup": ("quality_gate",),
    "telemetry_unique_indexes": ("quality_gate",),
    "unified_positions_refresh": ("quality_gate_staging", "quality_gate_health"),
    "unified_positions_deduplicate": ("quality_gate",),
    "unified_positions_rollback": ("quality_gate_health",),
    "child_tables_dedup_migration": ("quality_gate",),
    "child_tables_dedup_rollback": ("quality_gate",),
    "dedup_health_daily": ("gate_telemetry", "gate_breezeway", "gate_positions"),
}

_METRICS: dict[str, Callable[[], list[Metric]]] = {
    "blocks_duplicate_cleanup": _telemetry_cleanup,
    "telemetry_unique_indexes": _telemetry_unique,
    "unified_positions_refresh": _positions_refresh,
    "unified_positions_deduplicate": _positions_dedupe,
    "unified_positions_rollback": lambda: [
        Metric("open_lots_restored", "open lots restored", ("rollback_open",),
               field("rollback_open", "restored_open_rows"), "lots")],
    "child_tables_dedup_migration": _breezeway_migration,
    "child_tables_dedup_rollback": _breezeway_rollback,
    "dedup_health_daily": list,
}

DAG_IDS: tuple[str, ...] = tuple(GATES)
MIGRATION_DAG_ID = "child_tables_dedup_migration"
ROLLBACK_DAG_ID = "child_tables_dedup_rollback"


def gate_metric(task_id: str) -> Metric:
    return Metric(f"gate.{task_id}", f"{task_id} passed", (), lambda _r: None, "1 = pass, 0 = fail")


def metrics(dag_id: str) -> dict[str, Metric]:
    """Every metric of ``dag_id`` by name, gate pass/fail included (``gate.<task>`` is accepted
    for any task: a DAG this catalog does not know still has its gates' series)."""
    out = {m.name: m for m in _METRICS.get(dag_id, list)()}
    for task in GATES.get(dag_id, ()):
        out[f"gate.{task}"] = gate_metric(task)
    return out


def metric(dag_id: str, name: str) -> Metric | None:
    return metrics(dag_id).get(name) or (gate_metric(name.removeprefix("gate.")) if is_gate(name) else None)


def is_gate(metric: str) -> bool:
    return metric.startswith("gate.") and len(metric) > 5


#: A DAG tagged ``dupguard`` and one of these shows under that system (``health`` first: the
#: daily check is tagged with the systems it checks too).
SYSTEM_TAGS = ("health", "telemetry", "positions", "breezeway")


def system_of(tags: set[str]) -> str | None:
    return next((t for t in SYSTEM_TAGS if t in tags), None) if "dupguard" in tags else None


def systems() -> tuple[System, ...]:
    tel = telemetry_tables()
    cleanup = "blocks_duplicate_cleanup"
    refresh = "unified_positions_refresh"
    return (
        System("telemetry", "Telemetry: per-minute duplicate cleanup (PostgreSQL)",
               (cleanup, "telemetry_unique_indexes"),
               (Chart("Rows deleted per run", cleanup, tuple(f"rows_deleted.{t}" for t in tel), "rows"),
                Chart("Ids affected per run", cleanup, tuple(f"ids_affected.{t}" for t in tel), "ids"))),
        System("positions", "Unified positions: open-lot refresh (ClickHouse)",
               (refresh, "unified_positions_deduplicate", "unified_positions_rollback"),
               (Chart("Open lots published", refresh, ("open_lots_published",), "lots"),
                Chart("Lots moved to resolved", refresh, ("lots_moved_to_resolved",), "lots"),
                Chart("Staging rows", refresh, ("staging_rows",), "rows"),
                Chart("Build seconds", refresh, ("build_seconds",), "s"))),
        System("breezeway", "Breezeway child tables: dedup migration (PostgreSQL)", (MIGRATION_DAG_ID, ROLLBACK_DAG_ID)),
        System("health", "Daily health of all three systems", ("dedup_health_daily",)),
    )
