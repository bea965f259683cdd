"""Task bodies of the positions DAGs, the only module that knows Airflow: the DAG files'
tasks pass what Airflow injects (``params``, ``logical_date``, ``data_interval_end``,
``dag_run``) and get the library's report back.

Each opens the ClickHouse client of the ``polymarket_clickhouse`` connection, parses the
params, and calls the library with plain values. A precondition that a retry cannot change
(:class:`~dupguard.positions.tables.PositionsError`) fails the task at once
(:func:`dagkit.fail_fast`); a failed gate fails it as it is (``GateFailed``); a mutation
failure or a database error is retried.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from dupguard.common import dagkit, settings
from dupguard.positions import build, config, dedupe, gates, partitioning, publish, tables
from dupguard.positions.tables import PositionsError, Tables, tables_for

#: A refresh still running ``late_after_minutes`` after it started is LATE (one alert per run).
LATE_WATCH = dagkit.LateWatch("late_after_minutes", 60, config.DEFAULTS["late_after_minutes"])

_NUMBERS = {"integer": (int, "an integer"), "number": (float, "a number")}


def params(*names: str) -> dict[str, Any]:
    """The DAG params ``names`` (type, bounds, title, description from config.PARAMS)."""
    from airflow.sdk import Param

    return {name: Param(config.DEFAULTS[name], **config.PARAMS[name]) for name in names}


def run_params(given: dict[str, Any] | None) -> dict[str, Any]:
    """Params with defaults, type-checked and within bounds (a bad value fails the first task
    clearly). ``database`` None or empty means the connection's schema."""
    raw = {**config.DEFAULTS, **{k: v for k, v in (given or {}).items() if v is not None}}
    out: dict[str, Any] = {"database": str(raw["database"]) if raw["database"] else None}
    for name, spec in config.PARAMS.items():
        types = [spec["type"]] if isinstance(spec["type"], str) else spec["type"]
        if "boolean" in types:
            out[name] = raw[name] in (True, 1, "true", "True", "1")
            continue
        number = next((k for k in types if k in _NUMBERS), None)
        if number is None:
            continue  # database: a string or null
        if raw[name] is None:  # optional number not given (build_buckets: chosen from the budget)
            out[name] = None
            continue
        kind, words = _NUMBERS[number]
        try:
            value = kind(raw[name])
        except (TypeError, ValueError) as exc:
            raise PositionsError(f"param {name} must be {words}, got {raw[name]!r}") from exc
        if value < spec.get("minimum", value) or value > spec.get("maximum", value):
            raise PositionsError(f"param {name} must be within [{spec.get('minimum')}, {spec.get('maximum')}], "
                                 f"got {value}")
        out[name] = value
    return out


@contextlib.contextmanager
def _clickhouse(given: dict[str, Any] | None) -> Iterator[tuple[Any, dict[str, Any], Tables]]:
    """(client, params, tables) for one task; the client is closed on exit."""
    from dupguard.common.connections import clickhouse_client

    p = run_params(given)
    t = tables_for(settings.CLICKHOUSE_CONN_ID, p["database"])
    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as client:
        yield client, p, t


def _as_of(logical_date: datetime | None, data_interval_end: datetime | None, dag_run: Any) -> datetime:
    """The moment the run checks freshness against (its logical date; a manual run without one:
    the time it was due), never the worker's wall clock."""
    try:
        return dagkit.run_time(logical_date, data_interval_end, getattr(dag_run, "run_after", None))
    except ValueError as exc:
        raise PositionsError(str(exc)) from exc


def _run_token() -> str:
    """The generation token of the running DAG run (the same for every attempt of the run)."""
    from airflow.sdk import get_current_context

    return publish.run_token(get_current_context()["run_id"])


def _timeout_s(p: dict[str, Any]) -> float:
    return p["mutation_timeout_minutes"] * 60


# --- unified_positions_refresh ---------------------------------------------------------------
@dagkit.fail_fast
def refresh_preflight(params: dict | None, logical_date: datetime | None = None,
                      data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
    as_of = _as_of(logical_date, data_interval_end, dag_run)
    with _clickhouse(params) as (client, p, t):
        # a publish killed between its DELETE and its insert is completed before anything else
        resumed = publish.resume(client, t, mutation_timeout_s=_timeout_s(p))
        out = build.preflight(client, t, as_of=as_of, max_source_lag_hours=p["max_source_lag_hours"],
                              stuck_mutation_minutes=p["stuck_mutation_minutes"])
        return {**out, "resumed_publish": resumed}


@dagkit.fail_fast
def build_staging(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return build.build(client, t, buckets=p["build_buckets"], max_bucket_fills=p["max_bucket_fills"])


@dagkit.fail_fast
def gate_staging(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return gates.staging_gate(client, t, min_unresolved_rows=p["min_unresolved_rows"],
                                  max_drop_ratio=p["max_drop_ratio"])["metrics"]


@dagkit.fail_fast
def publish_open(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return publish.publish(client, t, mutation_timeout_s=_timeout_s(p), token=_run_token(),
                               min_unresolved_rows=p["min_unresolved_rows"], max_drop_ratio=p["max_drop_ratio"])


@dagkit.fail_fast
def gate_health(params: dict | None, logical_date: datetime | None = None,
                data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
    as_of = _as_of(logical_date, data_interval_end, dag_run)
    with _clickhouse(params) as (client, p, t):
        return gates.health_gate(client, t, as_of=as_of, max_hours_stale=p["max_hours_stale"],
                                 min_unresolved_rows=p["min_unresolved_rows"])["metrics"]


@dagkit.fail_fast
def report(params: dict | None, pre: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    with _clickhouse(params) as (client, _, t):
        return tables.report(client, t, before=pre["before"], started_at=pre["started_at"], extra=extra)


# --- unified_positions_deduplicate -----------------------------------------------------------
@dagkit.fail_fast
def dedupe_preflight(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return dedupe.preflight(client, t, stuck_mutation_minutes=p["stuck_mutation_minutes"])


@dagkit.fail_fast
def deduplicate(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return dedupe.deduplicate(client, t, buckets=p["dedupe_buckets"], max_bucket_fills=p["max_bucket_fills"],
                                  mutation_timeout_s=_timeout_s(p))


@dagkit.fail_fast
def gate_dedupe(params: dict | None, pre: dict[str, Any]) -> dict[str, Any]:
    with _clickhouse(params) as (client, _, t):
        return gates.dedupe_gate(client, t, expected_keys=pre["before"]["distinct_keys"])["metrics"]


# --- unified_positions_rollback --------------------------------------------------------------
@dagkit.fail_fast
def rollback_open(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return publish.rollback_open(client, t, mutation_timeout_s=_timeout_s(p), token=_run_token())


# --- unified_positions_adopt_partitioning ----------------------------------------------------
@dagkit.fail_fast
def adopt_preflight(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, _, t):
        return partitioning.preflight(client, t)


@dagkit.fail_fast
def adopt_copy(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return partitioning.copy(client, t, max_bucket_fills=p["max_bucket_fills"], mutation_timeout_s=_timeout_s(p))


@dagkit.fail_fast
def adopt_catch_up(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        return partitioning.catch_up(client, t, mutation_timeout_s=_timeout_s(p))


@dagkit.fail_fast
def gate_adopt(params: dict | None) -> dict[str, Any]:
    with _clickhouse(params) as (client, _, t):
        if partitioning.state(client, t) != partitioning.TO_ADOPT:
            return {"skipped": "already partitioned"}
        return gates.adopt_gate(client, t)["metrics"]


@dagkit.fail_fast
def adopt_exchange(params: dict | None, gated: dict[str, Any]) -> dict[str, Any]:
    with _clickhouse(params) as (client, _, t):
        return partitioning.exchange(client, t, gated=gated)


@dagkit.fail_fast
def adopt_cleanup(params: dict | None, pre: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    with _clickhouse(params) as (client, p, t):
        out = partitioning.cleanup(client, t, drop_old=p["drop_old"])
        return {**out, "before": {k: pre[k] for k in ("state", "rows")}, **extra,
                "duration_seconds": round(tables.now_epoch() - pre["started_at"], 1)}
