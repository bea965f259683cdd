"""Task bodies of the telemetry DAGs: read the run's context and params, call the library.

Errors that a retry cannot fix (a missing table or column, a failed gate) fail the task at
once (``AirflowFailException``); transient ones (lock or statement timeout, unreachable
database) are retried by Airflow.
"""
from __future__ import annotations

import logging
from typing import Any

from dupguard import settings, telemetry, telemetry_unique

log = logging.getLogger(__name__)


def _fail_fast(exc: Exception):
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def run_cleanup(context: dict[str, Any], table_key: str) -> dict[str, Any]:
    params = context.get("params") or {}
    window = telemetry.window_from_context(context)
    try:
        tbl = telemetry.table_config(table_key)
        return telemetry.cleanup_table(
            settings.TELEMETRY_CONN_ID, tbl, window,
            lock_timeout_ms=int(params.get("lock_timeout_ms", telemetry.DEFAULT_LOCK_TIMEOUT_MS)),
            statement_timeout_ms=int(params.get("statement_timeout_ms", telemetry.DEFAULT_STATEMENT_TIMEOUT_MS)))
    except telemetry.TelemetryConfigError as exc:
        raise _fail_fast(exc) from exc


def run_window_gate(context: dict[str, Any]) -> dict[str, Any]:
    from dupguard.gate import GateFailed

    window = telemetry.window_from_context(context)
    try:
        return telemetry.window_gate(settings.TELEMETRY_CONN_ID, list(telemetry.TABLES), window)
    except (GateFailed, telemetry.TelemetryConfigError) as exc:
        raise _fail_fast(exc) from exc


def _table(table_key: str) -> telemetry.TelemetryTable:
    try:
        return telemetry.table_config(table_key)
    except telemetry.TelemetryConfigError as exc:
        raise _fail_fast(exc) from exc


def run_dedup(context: dict[str, Any], table_key: str) -> dict[str, Any]:
    params = context.get("params") or {}
    try:
        return telemetry_unique.dedup_table(settings.TELEMETRY_CONN_ID, _table(table_key),
                                            batch_size=int(params.get("batch_size", telemetry_unique.DEFAULT_BATCH_SIZE)))
    except telemetry.TelemetryConfigError as exc:
        raise _fail_fast(exc) from exc


def run_build(context: dict[str, Any], table_key: str) -> dict[str, Any]:
    params = context.get("params") or {}
    try:
        return telemetry_unique.build_unique_index(
            settings.TELEMETRY_CONN_ID, _table(table_key),
            batch_size=int(params.get("batch_size", telemetry_unique.DEFAULT_BATCH_SIZE)),
            max_attempts=int(params.get("max_build_attempts", telemetry_unique.DEFAULT_MAX_BUILD_ATTEMPTS)))
    except telemetry.TelemetryConfigError as exc:
        raise _fail_fast(exc) from exc


def run_drop_old(context: dict[str, Any], table_key: str) -> dict[str, Any]:
    try:
        return telemetry_unique.drop_old_index(settings.TELEMETRY_CONN_ID, _table(table_key))
    except telemetry.TelemetryConfigError as exc:
        raise _fail_fast(exc) from exc


def run_unique_gate(context: dict[str, Any]) -> dict[str, Any]:
    from dupguard.gate import GateFailed

    try:
        return telemetry_unique.unique_gate(settings.TELEMETRY_CONN_ID, list(telemetry.TABLES))
    except (GateFailed, telemetry.TelemetryConfigError) as exc:
        raise _fail_fast(exc) from exc
