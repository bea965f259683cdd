"""The Airflow adapter of ``dedup_health_daily``: the only health module that knows about
Airflow. A system that is not set up yet (:class:`~dupguard.health.checks.NotSetUp`) becomes a
skipped task, before ``dagkit.fail_fast`` would fail it; a breach is the gate's own
``GateFailed``; a database error keeps Airflow's retry."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from dupguard.common import dagkit, settings
from dupguard.health import checks
from dupguard.health.config import POSITIONS_PARAMS

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def params() -> dict[str, Any]:
    """The DAG's params: the positions thresholds exactly as the refresh DAG declares them."""
    from airflow.sdk import Param

    return {name: Param(checks.POSITIONS_DEFAULTS[name], **checks.POSITIONS_PARAM_SPECS[name])
            for name in POSITIONS_PARAMS}


def _skip_when_not_set_up(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except checks.NotSetUp as exc:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"not set up: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def _as_of(logical_date: datetime | None, data_interval_end: datetime | None, dag_run: Any) -> datetime:
    return dagkit.run_time(logical_date, data_interval_end, getattr(dag_run, "run_after", None))


@dagkit.fail_fast
@_skip_when_not_set_up
def gate_telemetry(logical_date: datetime | None = None, data_interval_end: datetime | None = None,
                   dag_run: Any = None) -> dict[str, Any]:
    return checks.telemetry_health(settings.TELEMETRY_CONN_ID, _as_of(logical_date, data_interval_end, dag_run))


@dagkit.fail_fast
@_skip_when_not_set_up
def gate_breezeway() -> dict[str, Any]:
    return checks.breezeway_health(settings.BREEZEWAY_CONN_ID)


@dagkit.fail_fast
@_skip_when_not_set_up
def gate_positions(params: dict[str, Any], logical_date: datetime | None = None,
                   data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
    return checks.positions_health(settings.CLICKHOUSE_CONN_ID, _as_of(logical_date, data_interval_end, dag_run),
                                   max_hours_stale=float(params["max_hours_stale"]),
                                   min_unresolved_rows=int(params["min_unresolved_rows"]))


def open_incidents() -> dict[str, Any]:
    """The alert incidents open now (first failure, failures counted since, latest error)."""
    from dupguard.common import incidents
    from dupguard.health.config import watched_tasks

    pairs = [(dag_id, task_id) for dag_id, tasks_ in watched_tasks().items() for task_id in tasks_]
    found = incidents.open_incidents(incidents.VariableStore(), pairs)
    for inc in found:
        log.warning("open incident %s.%s since %s: %s failed run(s); latest: %s", inc["dag_id"], inc["task_id"],
                    inc["opened_at"], inc["failures"], str(inc["latest_error"]).splitlines()[0][:200])
    return {"open_incidents": len(found), "incidents": found, "watched_tasks": len(pairs)}
