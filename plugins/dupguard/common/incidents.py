"""Alert incidents: the first failure opens one and alerts, later failures are counted, a reminder
at most every ``DUPGUARD_ALERT_REPEAT_MINUTES``, the first success closes it with one alert.

An incident is keyed by (dag_id, task_id); a run that fails without a failed task uses task id
``<run>``, a run past its deadline ``<late>``. Its state is one Airflow Variable per incident
(``dupguard_incident__<dag_id>__<task_id>``), read and written through the Task SDK, so it lives
in Airflow's metadata database, works with every executor and worker, and two workers updating
different incidents never touch the same row.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

log = logging.getLogger(__name__)

KEY_PREFIX = "dupguard_incident__"
DEFAULT_REPEAT_MINUTES = 60.0


def repeat_interval() -> timedelta:
    raw = os.environ.get("DUPGUARD_ALERT_REPEAT_MINUTES", "").strip()
    try:
        minutes = float(raw) if raw else DEFAULT_REPEAT_MINUTES
    except ValueError:
        log.warning("DUPGUARD_ALERT_REPEAT_MINUTES=%r is not a number; using %s", raw, DEFAULT_REPEAT_MINUTES)
        minutes = DEFAULT_REPEAT_MINUTES
    return timedelta(minutes=max(minutes, 0.0))


def key(dag_id: str, task_id: str) -> str:
    return KEY_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dag_id}__{task_id}")


class Store(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def set(self, key: str, value: dict[str, Any]) -> None: ...
    def delete(self, key: str) -> None: ...


def _variable_class():
    """The Task SDK's ``Variable`` inside a task, a DAG callback or a deadline callback (it talks to the
    API server through the process's supervisor); Airflow's own model where there is no supervisor
    (a callback run by a core component or a test in the scheduler's environment)."""
    from airflow.sdk.execution_time import task_runner

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        from airflow.sdk import Variable

        return Variable
    from airflow.models.variable import Variable

    return Variable


class VariableStore:
    """Incident state in Airflow Variables."""

    def get(self, key: str) -> dict[str, Any] | None:
        cls = _variable_class()
        none = {"default" if cls.__module__.startswith("airflow.sdk") else "default_var": None}
        value = cls.get(key, deserialize_json=True, **none)
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        _variable_class().set(key, value, description="dupguard alert incident (deleted when it recovers)",
                              serialize_json=True)

    def delete(self, key: str) -> None:
        _variable_class().delete(key)


@dataclass
class Decision:
    """What to send: ``FAILED``, ``STILL FAILING``, ``RECOVERED`` or nothing (``None``)."""

    send: str | None
    incident: dict[str, Any]


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s)


def on_failure(store: Store, *, dag_id: str, task_id: str, run_id: str, error: str, kind: str,
               now: datetime, details: dict[str, Any] | None = None, once_per_run: bool = False) -> Decision:
    """Record a failure; decide whether it opens an incident (FAILED), is due a reminder
    (STILL FAILING) or is only counted. ``once_per_run``: a second report from the run the open
    incident already counted (a late run seen by two of its tasks) changes nothing."""
    k = key(dag_id, task_id)
    inc = store.get(k)
    details = details or {}
    if once_per_run and inc is not None and inc.get("latest_run_id") == run_id:
        return Decision(None, dict(inc))
    if inc is None:
        inc = {"dag_id": dag_id, "task_id": task_id, "opened_at": _iso(now), "first_run_id": run_id,
               "failures": 1, "last_failure_at": _iso(now), "last_notified_at": _iso(now), "kind": kind,
               "new_kinds": [], "latest_error": error, "latest_run_id": run_id, "details": details}
        store.set(k, inc)
        return Decision("FAILED", inc)
    inc["failures"] = int(inc.get("failures", 0)) + 1
    inc.update(last_failure_at=_iso(now), latest_error=error, latest_run_id=run_id, details=details)
    if kind != inc.get("kind") and kind not in inc.setdefault("new_kinds", []):
        inc["new_kinds"].append(kind)
    send = None
    if now - _parse(inc["last_notified_at"]) >= repeat_interval():
        send = "STILL FAILING"
    decision = Decision(send, dict(inc))
    if send:
        inc.update(last_notified_at=_iso(now), new_kinds=[])
    store.set(k, inc)
    return decision


def on_success(store: Store, *, dag_id: str, task_id: str, now: datetime) -> Decision:
    """Close the incident of (dag_id, task_id) if one is open (RECOVERED)."""
    k = key(dag_id, task_id)
    inc = store.get(k)
    if inc is None:
        return Decision(None, {})
    store.delete(k)
    inc["closed_at"] = _iso(now)
    inc["duration_s"] = round((now - _parse(inc["opened_at"])).total_seconds())
    return Decision("RECOVERED", inc)


def open_incidents(store: Store, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The open incidents among ``pairs`` of (dag_id, task_id)."""
    out = []
    for dag_id, task_id in pairs:
        inc = store.get(key(dag_id, task_id))
        if inc:
            out.append({k: inc.get(k) for k in ("dag_id", "task_id", "opened_at", "failures", "kind",
                                                 "latest_error", "latest_run_id")})
    return out


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"
