"""The task bodies of the telemetry DAGs: the only telemetry module that knows Airflow.

The DAG's ``@task`` functions receive the run's values by name (``params``, ``logical_date``,
``prev_data_interval_end_success``, ...) and pass them here; these functions turn them into
plain values and call the library. Errors a retry cannot fix (a missing table or column, a
refused step) fail the task at once (:func:`dupguard.common.dagkit.fail_fast`); a failed gate
is a verdict and fails without retry; transient errors (lock or statement timeout, unreachable
database) are retried by Airflow.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from dupguard.common import dagkit, settings
from dupguard.telemetry import config
from dupguard.telemetry.window import Window, compute_window

log = logging.getLogger(__name__)

CONN_ID = settings.TELEMETRY_CONN_ID


def _param(params: Mapping[str, Any] | None, name: str, default: Any) -> Any:
    value = (params or {}).get(name)
    return default if value is None else value


def _resolved(name: str, value: Any) -> datetime | None:
    """A context date that may be a lazy proxy, or None when there is none (no previous
    successful run: resolving the proxy fails)."""
    try:
        value = getattr(value, "__wrapped__", value)
    except Exception:  # noqa: BLE001 - a proxy that cannot be resolved: no such run
        log.info("%s unavailable (no previous successful run); using the plain lookback", name)
        return None
    return value if isinstance(value, datetime) else None


@dagkit.fail_fast
def run_window(params: Mapping[str, Any] | None, logical_date: datetime | None = None,
               data_interval_end: datetime | None = None, dag_run: Any = None,
               prev_data_interval_end_success: Any = None, prev_start_date_success: Any = None) -> Window:
    """The run's cleanup window (params ``lookback_minutes``, ``max_catchup_hours``).

    It ends at the run's logical date (:func:`dagkit.run_time`); the last successful run is
    ``prev_data_interval_end_success`` (for this cron schedule the interval ends at the run's
    logical date), or ``prev_start_date_success`` when the former is unknown.
    """
    end = dagkit.run_time(logical_date, data_interval_end, getattr(dag_run, "run_after", None))
    last = (_resolved("prev_data_interval_end_success", prev_data_interval_end_success)
            or _resolved("prev_start_date_success", prev_start_date_success))
    lookback = float(_param(params, "lookback_minutes", config.DEFAULT_LOOKBACK_MINUTES))
    max_catchup = float(_param(params, "max_catchup_hours", config.DEFAULT_MAX_CATCHUP_HOURS))
    return compute_window(end, last, lookback=timedelta(minutes=lookback), max_catchup=timedelta(hours=max_catchup))


@dagkit.fail_fast
def delete_duplicates(table_key: str, params: Mapping[str, Any] | None, window: Window) -> dict[str, Any]:
    from dupguard.telemetry.cleanup import cleanup_table

    return cleanup_table(
        CONN_ID, config.table_config(table_key), window,
        lock_timeout_ms=int(_param(params, "lock_timeout_ms", config.DEFAULT_LOCK_TIMEOUT_MS)),
        statement_timeout_ms=int(_param(params, "statement_timeout_ms", config.DEFAULT_STATEMENT_TIMEOUT_MS)))


@dagkit.fail_fast
def window_gate(window: Window) -> dict[str, Any]:
    from dupguard.telemetry.gates import window_gate as run

    return run(CONN_ID, window)


def _batch_size(params: Mapping[str, Any] | None) -> int:
    return int(_param(params, "batch_size", config.DEFAULT_BATCH_SIZE))


@dagkit.fail_fast
def dedup(table_key: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    from dupguard.telemetry.unique_index import dedup_table

    return dedup_table(CONN_ID, config.table_config(table_key), batch_size=_batch_size(params))


@dagkit.fail_fast
def build_unique_index(table_key: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    from dupguard.telemetry.unique_index import build_unique_index as build

    return build(CONN_ID, config.table_config(table_key), batch_size=_batch_size(params),
                 max_attempts=int(_param(params, "max_build_attempts", config.DEFAULT_MAX_BUILD_ATTEMPTS)))


@dagkit.fail_fast
def drop_old_index(table_key: str) -> dict[str, Any]:
    from dupguard.telemetry.unique_index import drop_old_index as drop

    return drop(CONN_ID, config.table_config(table_key))


@dagkit.fail_fast
def unique_gate() -> dict[str, Any]:
    from dupguard.telemetry.gates import unique_gate as run

    return run(CONN_ID)
