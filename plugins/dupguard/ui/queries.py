"""Reads of Airflow's metadata for the dupguard view, always through indexed filters with a limit.

- runs: ``dag_run`` by ``dag_id`` (index ``idx_dag_run_dag_id``) ordered by ``run_after``;
- reports: ``xcom`` joined on ``dag_run_id`` (the leading column of ``xcom_pkey``) with
  ``key = 'return_value'`` and only the tasks a metric needs;
- gate states: ``task_instance`` by ``(dag_id, run_id)`` (index ``ti_dag_run``) and task id.

The ledger of the Breezeway migration is read from the migrated database (connection
``breezeway_postgres``) with a short deadline: the dashboard never waits on it.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, select

from dupguard.ui import catalog

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
#: One point per run: a week of the per-minute DAG is 10,080 runs.
MAX_SERIES_RUNS = 20_000
LEDGER_TIMEOUT_S = 3.0
LEDGER_CACHE_S = 15.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _value(raw: Any) -> Any:
    """An XCom value as the task returned it (Airflow stores JSON; older rows a JSON string)."""
    from airflow.models.xcom import XComModel

    return XComModel.deserialize_value(SimpleNamespace(value=raw))


def run_dict(run: Any, reports: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"run_id": run.run_id, "state": str(run.state) if run.state is not None else None,
           "run_type": str(run.run_type) if run.run_type is not None else None,
           "run_after": _iso(run.run_after), "logical_date": _iso(run.logical_date),
           "start_date": _iso(run.start_date), "end_date": _iso(run.end_date)}
    if reports is not None:
        out["reports"] = reports
    return out


def _run_columns():
    from airflow.models.dagrun import DagRun

    return (DagRun.id, DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_type, DagRun.run_after,
            DagRun.logical_date, DagRun.start_date, DagRun.end_date)


def runs(session, dag_id: str, *, limit: int = 50, since: datetime | None = None) -> list[Any]:
    """The newest ``limit`` runs of ``dag_id`` (run_after descending), or every run since ``since``."""
    from airflow.models.dagrun import DagRun

    q = select(*_run_columns()).where(DagRun.dag_id == dag_id)
    if since is not None:
        q = q.where(DagRun.run_after >= since)
    q = q.order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(max(1, min(limit, MAX_SERIES_RUNS)))
    return list(session.execute(q).all())


def run(session, dag_id: str, run_id: str) -> Any | None:
    from airflow.models.dagrun import DagRun

    return session.execute(select(*_run_columns()).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()


def reports(session, run_pks: list[int], task_ids: tuple[str, ...] | None = None) -> dict[int, dict[str, Any]]:
    """``{dag_run.id: {task_id: return value}}`` for the given runs (mapped tasks as ``task[i]``)."""
    from airflow.models.xcom import XComModel

    out: dict[int, dict[str, Any]] = {pk: {} for pk in run_pks}
    if not run_pks:
        return out
    q = select(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index, XComModel.value).where(
        XComModel.dag_run_id.in_(run_pks), XComModel.key == "return_value")
    if task_ids is not None:
        if not task_ids:
            return out
        q = q.where(XComModel.task_id.in_(task_ids))
    for pk, task_id, map_index, raw in session.execute(q):
        out[pk][task_id if map_index < 0 else f"{task_id}[{map_index}]"] = _value(raw)
    return out


def _window_runs(session, dag_id: str, since: datetime) -> list[Any]:
    """(id, run_id, run_after, state) of every run of ``dag_id`` since ``since``, oldest first."""
    from airflow.models.dagrun import DagRun

    dr = DagRun.__table__.c
    q = (select(dr.id, dr.run_id, dr.run_after, dr.state).where(dr.dag_id == dag_id, dr.run_after >= since)
         .order_by(dr.run_after, dr.id).limit(MAX_SERIES_RUNS))
    return list(session.execute(q).all())


def _xcom_rows(session, dag_id: str, since: datetime, task_ids, *value_columns) -> list[Any]:
    """``(dag_run_id, task_id, *value_columns)`` of the return values of ``task_ids`` in every run
    of ``dag_id`` since ``since``: one join on ``xcom_pkey``'s leading column, no id list."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel

    x, dr = XComModel.__table__.c, DagRun.__table__.c
    q = (select(x.dag_run_id, x.task_id, *(c(x.value) for c in value_columns))
         .select_from(XComModel.__table__.join(DagRun.__table__, dr.id == x.dag_run_id))
         .where(dr.dag_id == dag_id, dr.run_after >= since, x.key == "return_value", x.map_index == -1,
                x.task_id.in_(sorted(task_ids))))
    return list(session.execute(q).all())


def _window_values(session, dag_id: str, since: datetime,
                   fields: list[catalog.Field]) -> dict[catalog.Field, dict[int, float | None]]:
    """The fields read in SQL (``value #>> '{path}'``): no report is parsed, one row per run and task."""
    if not fields:
        return {}
    paths = sorted({f.path for f in fields})
    rows = _xcom_rows(session, dag_id, since, {f.task for f in fields},
                      *(lambda v, p=p: v[p].as_string() for p in paths))
    out: dict[catalog.Field, dict[int, float | None]] = {}
    for f in fields:
        i = paths.index(f.path) + 2
        out[f] = {row[0]: catalog.number(row[i]) for row in rows if row[1] == f.task}
    return out


def _window_reports(session, dag_id: str, since: datetime, task_ids: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    """Whole reports of ``task_ids`` for every run of ``dag_id`` since ``since``."""
    out: dict[int, dict[str, Any]] = {}
    for pk, task_id, raw in _xcom_rows(session, dag_id, since, task_ids, lambda v: v) if task_ids else ():
        out.setdefault(pk, {})[task_id] = _value(raw)
    return out


def _window_task_states(session, dag_id: str, since: datetime, task_ids: tuple[str, ...]) -> dict[str, dict[str, str]]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI

    out: dict[str, dict[str, str]] = {}
    if not task_ids:
        return out
    ti, dr = TI.__table__.c, DagRun.__table__.c
    q = (select(ti.run_id, ti.task_id, ti.state)
         .select_from(TI.__table__.join(DagRun.__table__, and_(dr.dag_id == ti.dag_id, dr.run_id == ti.run_id)))
         .where(dr.dag_id == dag_id, dr.run_after >= since, ti.dag_id == dag_id, ti.task_id.in_(task_ids),
                ti.map_index == -1))
    for run_id, task_id, state in session.execute(q):
        out.setdefault(run_id, {})[task_id] = str(state) if state is not None else None
    return out


def task_states(session, dag_id: str, run_id: str) -> dict[str, str | None]:
    from airflow.models.taskinstance import TaskInstance as TI

    rows = session.execute(select(TI.task_id, TI.map_index, TI.state).where(TI.dag_id == dag_id, TI.run_id == run_id))
    return {(t if m < 0 else f"{t}[{m}]"): (str(s) if s is not None else None) for t, m, s in rows}


def gate_value(state: str | None) -> float | None:
    return {"success": 1.0, "failed": 0.0}.get(state or "")


@dataclass
class Series:
    dag_id: str
    since: datetime
    runs: list[Any]  # oldest first
    values: dict[str, list[float | None]] = field(default_factory=dict)  # metric -> one value per run

    def points(self, metric: str) -> list[dict[str, Any]]:
        return [{"run_id": r.run_id, "run_after": _iso(r.run_after), "state": str(r.state) if r.state else None,
                 "value": v} for r, v in zip(self.runs, self.values[metric])]


def series(session, dag_id: str, metric_names: list[str], since: datetime) -> Series:
    """One value per run of ``dag_id`` since ``since`` for each metric (None where the run has no
    report yet, a skipped task, or the gate did not finish)."""
    chosen = [catalog.metric(dag_id, m) for m in metric_names]
    unknown = [n for n, m in zip(metric_names, chosen) if m is None]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown} for DAG {dag_id}; known: {sorted(catalog.metrics(dag_id))}")
    gates = [m for m in chosen if catalog.is_gate(m.name)]
    in_sql = [m for m in chosen if isinstance(m.get, catalog.Field) and m.get.in_sql]
    in_python = [m for m in chosen if m not in gates and m not in in_sql]
    window = _window_runs(session, dag_id, since)
    values = _window_values(session, dag_id, since, [m.get for m in in_sql])
    reps = _window_reports(session, dag_id, since, tuple(sorted({t for m in in_python for t in m.tasks})))
    states = _window_task_states(session, dag_id, since, tuple(m.name.removeprefix("gate.") for m in gates))
    out = Series(dag_id, since, window)
    for m in chosen:
        if m in gates:
            task = m.name.removeprefix("gate.")
            out.values[m.name] = [gate_value(states.get(r.run_id, {}).get(task)) for r in window]
        elif m in in_sql:
            by_run = values[m.get]
            out.values[m.name] = [by_run.get(r.id) for r in window]
        else:
            out.values[m.name] = [m.get(reps.get(r.id, {})) for r in window]
    return out


def latest_run(session, dag_id: str) -> Any | None:
    found = runs(session, dag_id, limit=1)
    return found[0] if found else None


def dag_flags(session, dag_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """is_paused (and whether Airflow knows the DAG at all) per dag_id."""
    from airflow.models.dag import DagModel

    rows = session.execute(select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(dag_ids)))
    return {d: {"is_paused": bool(p)} for d, p in rows}


def dupguard_dags(session) -> dict[str, str]:
    """dag_id -> system of every DAG Airflow knows tagged ``dupguard`` and a system."""
    from airflow.models.dag import DagTag

    tags: dict[str, set[str]] = {}
    for dag_id, name in session.execute(select(DagTag.dag_id, DagTag.name).where(
            DagTag.name.in_(("dupguard", *catalog.SYSTEM_TAGS)))):
        tags.setdefault(dag_id, set()).add(name)
    return {d: s for d, t in tags.items() if (s := catalog.system_of(t))}


def gate_tasks_seen(session, dag_id: str) -> tuple[str, ...]:
    """Task ids with ``gate`` in their name in the DAG's newest run (for a DAG the catalog does not list)."""
    from airflow.models.taskinstance import TaskInstance as TI

    last = latest_run(session, dag_id)
    if last is None:
        return ()
    return tuple(sorted(session.scalars(select(TI.task_id).where(
        TI.dag_id == dag_id, TI.run_id == last.run_id, TI.task_id.contains("gate"), TI.map_index == -1))))


def open_incidents(session) -> list[dict[str, Any]]:
    """Open alert incidents (one Airflow Variable each, see ``dupguard.common.incidents``)."""
    from airflow.models.variable import Variable

    try:
        from dupguard.common.incidents import KEY_PREFIX
    except ImportError:  # pragma: no cover - incidents not deployed
        return []
    out = []
    for var in session.scalars(select(Variable).where(Variable.key.startswith(KEY_PREFIX)).limit(200)):
        try:
            inc = json.loads(var.val)
        except (TypeError, ValueError):
            continue
        if isinstance(inc, dict):
            out.append(inc)
    return out


_ledger_cache: dict[str, Any] = {}


def migration_ledger() -> dict[str, Any]:
    """The Breezeway migration's ledger row (``{"row": ...}``), or ``{"error": ...}`` when the
    database cannot be read within :data:`LEDGER_TIMEOUT_S`; cached for :data:`LEDGER_CACHE_S`."""
    cached = _ledger_cache.get("value")
    if cached is not None and time.monotonic() - _ledger_cache["at"] < LEDGER_CACHE_S:
        return cached

    def read() -> dict[str, Any]:
        from dupguard.breezeway.ledger import ledger_row
        from dupguard.common import settings
        from dupguard.common.connections import pg_connect

        with pg_connect(settings.BREEZEWAY_CONN_ID, application_name="dupguard:ui") as conn:
            conn.execute("SET statement_timeout = 2000")
            return {"row": ledger_row(conn)}

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        value = pool.submit(read).result(timeout=LEDGER_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        value = {"error": f"the breezeway database did not answer within {LEDGER_TIMEOUT_S:.0f} s"}
    except Exception as exc:  # noqa: BLE001 - shown on the dashboard, never a failed page
        value = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    finally:
        pool.shutdown(wait=False)
    _ledger_cache.update(value=value, at=time.monotonic())
    return value
