"""What every dupguard DAG shares: owner, retries, alerts, tags, policy."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

from dupguard.notify import notify_failure

START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
OWNER = "dupguard"


def default_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": notify_failure,
    }
    args.update(overrides)
    return args


def dag_kwargs(*, doc_md: str, tags: list[str], schedule: Any = None, max_active_runs: int = 1,
               dagrun_timeout: timedelta | None = None, default_args_overrides: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``@dag``/``DAG`` with the project's policy applied."""
    return {
        "schedule": schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": max_active_runs,
        "doc_md": doc_md,
        "tags": ["dupguard", *tags],
        "default_args": default_args(**(default_args_overrides or {})),
        "on_failure_callback": notify_failure,
        "dagrun_timeout": dagrun_timeout,
        **extra,
    }


def run_time(context: dict[str, Any]):
    """The moment a run works as of: its logical date, or for a manual run triggered without one
    (``"logical_date": null`` through the REST API) the time the run was due (``run_after``).
    A property of the run, never the worker's wall clock, so a re-run computes the same thing."""
    for value in (context.get("logical_date"), context.get("data_interval_end"),
                  getattr(context.get("dag_run"), "run_after", None)):
        if value is not None:
            return value
    raise ValueError("the run has neither a logical date nor a run_after time")
