"""What every dupguard DAG shares: owner, retries, alerts, tags, policy, and the one adapter
shape between Airflow tasks and the library (:func:`fail_fast`, :func:`run_time`)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pendulum

from dupguard.common.deadline import LateWatch
from dupguard.common.notify import DupguardNotifier

START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
OWNER = "dupguard"

#: The closed tag vocabulary (checked by the DAG policy test), so on-call can filter by
#: system, engine and kind of work.
TAGS = {
    "system": ("telemetry", "positions", "breezeway", "health"),
    "engine": ("postgres", "clickhouse"),
    "kind": ("cleanup", "migration", "rollback", "refresh", "dedupe", "check"),
}
ALL_TAGS = frozenset({"dupguard", *(t for group in TAGS.values() for t in group)})

NOTIFIER = DupguardNotifier()
RECOVERY = DupguardNotifier("success")


def default_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": NOTIFIER,
        "on_success_callback": RECOVERY,
    }
    args.update(overrides)
    return args


def dag_kwargs(*, doc_md: str, tags: list[str], schedule: Any = None, max_active_runs: int = 1,
               dagrun_timeout: timedelta | None = None, default_args_overrides: dict[str, Any] | None = None,
               late_watch: LateWatch | None = None, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``@dag`` with the project's policy applied. ``late_watch``: a run still
    going past the limit its param sets sends one ``[dupguard] LATE`` alert (:mod:`deadline`), an
    incident closed by the run's last task succeeding."""
    overrides = dict(default_args_overrides or {})
    if late_watch is not None:
        overrides.setdefault("on_execute_callback", late_watch)
    unknown = set(tags) - ALL_TAGS
    if unknown:
        raise ValueError(f"tags {sorted(unknown)} are not in dupguard's vocabulary {sorted(ALL_TAGS)}")
    return {
        "schedule": schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": max_active_runs,
        "doc_md": doc_md,
        "tags": ["dupguard", *tags],
        "default_args": default_args(**overrides),
        "on_failure_callback": NOTIFIER,
        "dagrun_timeout": dagrun_timeout,
        **extra,
    }


def run_time(logical_date: datetime | None = None, data_interval_end: datetime | None = None,
             run_after: datetime | None = None) -> datetime:
    """The moment a run works as of: its logical date, or for a manual run triggered without one
    (``"logical_date": null`` through the REST API) the time the run was due (``run_after``).
    A property of the run, never the worker's wall clock, so a re-run computes the same thing."""
    for value in (logical_date, data_interval_end, run_after):
        value = getattr(value, "__wrapped__", value)  # the context may hold lazy proxies
        if isinstance(value, datetime):
            return value
    raise ValueError("the run has neither a logical date nor a run_after time")


F = TypeVar("F", bound=Callable[..., Any])


def fail_fast(fn: F) -> F:
    """Wrap a task function: a :class:`~dupguard.common.errors.ConfigError` (a precondition a retry
    cannot change) fails the task at once; a failed gate (already an ``AirflowFailException``)
    passes through unchanged; everything else keeps Airflow's retry."""
    from dupguard.common.errors import ConfigError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]
