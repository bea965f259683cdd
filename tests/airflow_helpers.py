"""Run DAGs in-process with ``dag.test()`` and read back task states and return values."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=4)
def dagbag(folder: str | None = None):
    """Parse ``folder`` (default ``dags/``) and serialise its DAGs to the metadata DB, as
    ``airflow dags test`` does, so ``dag.test()`` can create runs."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    folder = folder or str(ROOT / "dags")
    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dags-folder")
    sync_bag_to_db(bag, "dags-folder", None)
    return bag


def get_dag(dag_id: str, folder: str | None = None):
    bag = dagbag(folder)
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise KeyError(f"DAG {dag_id} not found; import errors: {bag.import_errors}")
    return dag


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str] = field(default_factory=dict)
    returns: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def run_dag(dag_id: str, logical_date: datetime | None = None, conf: dict[str, Any] | None = None,
            folder: str | None = None, conns: dict[str, dict[str, Any] | str] | None = None) -> DagRunResult:
    """Run ``dag_id`` once with ``dag.test()`` and collect its task states and XCom return values.

    ``conns`` overrides connections for this run only: ``{"telemetry_postgres": {...json...}}``.
    """
    if conns:
        import json
        import os

        saved = {}
        for conn_id, value in conns.items():
            var = f"AIRFLOW_CONN_{conn_id.upper()}"
            saved[var] = os.environ.get(var)
            os.environ[var] = value if isinstance(value, str) else json.dumps(value)
        try:
            return run_dag(dag_id, logical_date, conf, folder)
        finally:
            for var, old in saved.items():
                if old is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = old
    import pendulum
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    import copy

    dag = get_dag(dag_id, folder)
    logical_date = logical_date or pendulum.now("UTC")
    # In-process runs write the run's conf into the Param objects the DAG and its tasks share
    # (process_params), so the next run of the cached DAG would inherit it: restore them.
    saved = copy.deepcopy((dag.params, {t.task_id: t.params for t in dag.tasks}))
    try:
        dr = dag.test(logical_date=logical_date, run_conf=conf or None)
    finally:
        dag.params = saved[0]
        for t in dag.tasks:
            t.params = saved[1][t.task_id]
    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id).all()
        states = {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
                  for ti in tis}
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == dr.run_id, XComModel.key == "return_value").all()
        returns = {}
        for r in rows:
            key = r.task_id if r.map_index < 0 else f"{r.task_id}[{r.map_index}]"
            returns[key] = XComModel.deserialize_value(r)
    return DagRunResult(dag_id, dr.run_id, str(dr.state), states, returns)
