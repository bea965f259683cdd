"""LATE alerts: a run still going past its limit sends one ``[dupguard] LATE`` message.

Airflow 3.3.2's Deadline Alerts cannot be used here: a DAG that carries one fails under
``dag.test()`` / ``airflow dags test`` when its run succeeds (``DagRun.update_state`` looks the
alert up by the un-serialized DAG's encoded dict instead of its id), and their interval is fixed
when the DAG is parsed, so a per-run ``max_hours`` param cannot drive them.

So the watch lives in the task processes: every task of a watched DAG starts a timer
(``on_execute_callback``) that fires at run start + the run's limit (a param) while that task
still runs, and its own success/failure callback stops it. A task that starts after the limit
has passed (the run waited for a pool slot or a worker) reports at once, before it runs. Under
``dag.test()`` / ``airflow dags test`` only that start-of-task check runs (their in-process
supervisor cannot be used from a timer thread). The alert is a LATE
incident of ``(dag_id, "<late>")``: one message per late run, counted and reminded like the
others, closed (RECOVERED) by the run's last task succeeding. What it cannot see: a run in
which no task is running at all (every task queued with no worker); ``dedup_health_daily``
and the Airflow UI show those.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

log = logging.getLogger(__name__)

_TIMERS: dict[tuple[str, str, str], threading.Timer] = {}
_LOCK = threading.Lock()


def _key(context: dict[str, Any]) -> tuple[str, str, str]:
    ti = context.get("ti") or context.get("task_instance")
    run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(run, "dag_id", "?")
    run_id = getattr(ti, "run_id", None) or getattr(run, "run_id", "?")
    return dag_id, run_id, getattr(ti, "task_id", "?")


def run_started_at(dag_run: Any) -> datetime | None:
    """When the run started (its start date; else when it was queued or due)."""
    for name in ("start_date", "queued_at", "run_after"):
        value = getattr(dag_run, name, None)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


class LateWatch:
    """``on_execute_callback`` of a watched DAG's tasks: the run's limit is the param ``param``
    (in ``unit`` seconds), ``default`` when the run has none."""

    def __init__(self, param: str, unit: float, default: float):
        self.param, self.unit, self.default = param, unit, default

    def limit(self, params: Any) -> timedelta:
        raw = (params or {}).get(self.param, self.default) if hasattr(params, "get") else self.default
        try:
            value = float(raw if raw is not None else self.default)
        except (TypeError, ValueError):
            value = float(self.default)
        return timedelta(seconds=max(value, 0.0) * self.unit)

    def __call__(self, context: dict[str, Any]) -> None:
        try:
            self.start(context)
        except Exception:  # noqa: BLE001 - a watch must never fail the task it watches
            log.exception("dupguard deadline watch: not started")

    def start(self, context: dict[str, Any], now: datetime | None = None) -> threading.Timer | None:
        started = run_started_at(context.get("dag_run"))
        if started is None:
            return None
        limit = self.limit(context.get("params"))
        now = now or datetime.now(timezone.utc)
        delay = max((started + limit - now).total_seconds(), 0.0)
        key = _key(context)
        dag_id, run_id, task_id = key
        what = f"still running {self.param}={self._shown(limit)} after it started at {started:%Y-%m-%d %H:%M:%S} UTC"

        def report() -> None:
            try:
                from dupguard.common.notify import handle_late

                handle_late(dag_id, run_id, f"{what} (task {task_id} running)")
            except Exception:  # noqa: BLE001
                log.exception("dupguard deadline watch: LATE alert failed")

        def fire() -> None:
            with _LOCK:
                if _TIMERS.pop(key, None) is None:
                    return  # the task ended (stop()) meanwhile
            report()

        if delay <= 0:  # the run is already late when this task starts: say so now, in this thread
            report()
            return None
        if _in_process_comms():
            log.info("dupguard deadline watch: in-process test run; the limit is checked at each task's start only")
            return None
        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with _LOCK:
            old = _TIMERS.pop(key, None)
            if old is not None:
                old.cancel()
            _TIMERS[key] = timer
        log.info("dupguard deadline watch: %s run %s is LATE after %s (in %.0f s)", dag_id, run_id, limit, delay)
        timer.start()
        return timer

    def _shown(self, limit: timedelta) -> str:
        value = limit.total_seconds() / self.unit
        return f"{value:g}" + {3600: " h", 60: " min"}.get(int(self.unit), " s")


def _in_process_comms() -> bool:
    """True under ``dag.test()`` / ``airflow dags test``, whose in-process supervisor comms swap a
    module global on every request and so must not be used from a second thread (the real
    supervisor's comms take a lock, and a timer thread may use them)."""
    from airflow.sdk.execution_time import task_runner

    return type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms"


def stop(context: dict[str, Any]) -> None:
    """Called by the task's success/failure callback: the task ended, its timer goes."""
    with _LOCK:
        timer = _TIMERS.pop(_key(context), None)
    if timer is not None:
        timer.cancel()
