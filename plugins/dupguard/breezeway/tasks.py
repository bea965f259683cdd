"""The Airflow adapter of the child-table migration and its rollback: the only Breezeway module
that knows about Airflow. The DAGs' tasks pass the run id and params as plain values.

* a :class:`~dupguard.common.errors.ConfigError` (a refused claim, a failed preflight) fails
  the task without a retry (``dagkit.fail_fast``); a failed gate is already an
  ``AirflowFailException``; anything else (a lost connection, a lock not granted) keeps
  Airflow's retry;
* ``stop_after`` (a crash drill): the run fails right after the named step; the next trigger
  resumes where it stopped.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dupguard.breezeway import constraints as _constraints
from dupguard.breezeway import dedup as _dedup
from dupguard.breezeway import gates, ledger, rollback
from dupguard.breezeway import preflight as _preflight
from dupguard.common import dagkit, settings

log = logging.getLogger(__name__)

CONN = settings.BREEZEWAY_CONN_ID


def airflow_run_state(dag_id: str, run_id: str) -> str | None:
    """State of an Airflow DAG run as the running task sees it; None when unknown."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)
        return str(getattr(state, "value", state)) if state else None
    except Exception as exc:  # noqa: BLE001 - unknown run, or not inside a task
        log.info("state of run %s/%s unknown (%s)", dag_id, run_id, exc)
        return None


def _stop_if_asked(step: str, stop_after: str | None) -> None:
    if stop_after and stop_after == step:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"stopped after step '{step}' as requested (stop_after param): "
                                   "trigger the DAG again to resume")


def _step(step: str, fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The task body of ``step``: ``fn(CONN, run_id, **kwargs)``, then stop if ``stop_after`` says so."""

    @dagkit.fail_fast
    @functools.wraps(fn)
    def run(run_id: str, *, stop_after: str | None = None, **kwargs: Any) -> dict[str, Any]:
        result = fn(CONN, run_id, **kwargs)
        _stop_if_asked(step, stop_after)
        return result

    return run


# --- child_tables_dedup_migration -------------------------------------------------------
@dagkit.fail_fast
def claim(run_id: str, *, force: bool = False, stop_after: str | None = None) -> dict[str, Any] | bool:
    """The claim's report, or False (skip the rest) when the migration is already complete."""
    res = ledger.claim(CONN, run_id, force=bool(force), run_state=airflow_run_state)
    _stop_if_asked("claim", stop_after)
    return False if res["action"] == "noop" else res


preflight = _step("preflight", _preflight.preflight)
backup = _step("backup", _preflight.backup)
dedup = _step("dedup", _dedup.dedup)  # kwargs: batch_ids
reclaim = _step("reclaim", _dedup.reclaim)
constraints = _step("constraints", _constraints.constraints)
quality_gate = _step("quality_gate", gates.quality_gate)
finish = _step("finish", ledger.finish)


# --- child_tables_dedup_rollback --------------------------------------------------------
@dagkit.fail_fast
def claim_rollback(run_id: str) -> dict[str, Any] | bool:
    """The claim's report, or False (skip the rest) when there is nothing to roll back."""
    res = ledger.claim_rollback(CONN, run_id, run_state=airflow_run_state)
    return False if res["action"] == "noop" else res


drop_constraints = _step("drop_constraints", rollback.drop_constraints)
restore_rows = _step("restore_rows", rollback.restore_rows)
rollback_gate = _step("rollback_gate", gates.rollback_gate)
finish_rollback = _step("finish_rollback", rollback.finish_rollback)
