"""The positions DAGs as Airflow sees them: ClickHouse pool and queue on every task, trigger-form
params (title, description, null admitted where there is no default), params parsed strictly."""
from __future__ import annotations

import pytest

from dupguard.common import settings
from dupguard.positions import config, tasks
from dupguard.positions.tables import PositionsError
from tests.airflow_helpers import get_dag

DAG_IDS = ("unified_positions_refresh", "unified_positions_deduplicate", "unified_positions_rollback",
           "unified_positions_adopt_partitioning")


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_runs_in_the_clickhouse_pool_and_queue(dag_id):
    dag = get_dag(dag_id)
    assert dag.tasks
    for t in dag.tasks:
        assert (t.pool, t.queue) == (settings.CLICKHOUSE_POOL, settings.CLICKHOUSE_QUEUE), t.task_id


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_params_fill_the_trigger_form(dag_id):
    params = get_dag(dag_id).params
    assert "database" in params
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("title") and param.description, name
        if params[name] is None:   # the form treats a param as required unless null is allowed
            assert "null" in param.schema["type"], name
    assert params["database"] is None


def test_rollback_dag_runs_its_gate_after_the_rollback():
    dag = get_dag("unified_positions_rollback")
    assert [t.task_id for t in dag.topological_sort()] == ["rollback_open", "quality_gate_health"]


def test_run_params_defaults_and_refusals():
    p = tasks.run_params({"database": "", "max_drop_ratio": None, "build_buckets": "4"})
    assert p["database"] is None and p["max_drop_ratio"] == config.DEFAULTS["max_drop_ratio"]
    assert p["build_buckets"] == 4
    with pytest.raises(PositionsError, match="max_drop_ratio must be within"):
        tasks.run_params({"max_drop_ratio": 1.5})
    with pytest.raises(PositionsError, match="min_unresolved_rows must be an integer"):
        tasks.run_params({"min_unresolved_rows": "many"})
