"""Every DAG file imports, and every DAG follows the project's policy."""
from __future__ import annotations

import ast

import pytest

from dupguard.common.dagkit import ALL_TAGS, TAGS
from dupguard.common.notify import DupguardNotifier
from tests.airflow_helpers import ROOT, dagbag

DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


def _declared_dag_ids() -> list[str]:
    """dag_id strings written in the DAG files (the files are thin, ids are literal)."""
    ids = []
    for path in DAG_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "dag_id" and isinstance(node.value, ast.Constant):
                ids.append(node.value.value)
    return ids


def _notifiers(callbacks, event: str) -> list:
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    return [c for c in callbacks if isinstance(c, DupguardNotifier) and c.event == event]


def check_policy(dag) -> None:
    """The project's DAG policy; raises AssertionError naming what is missing."""
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, "doc_md must explain the DAG"
    assert dag.tags and "dupguard" in dag.tags, "tags: dupguard"
    unknown = set(dag.tags) - ALL_TAGS
    assert not unknown, f"tags outside the vocabulary: {sorted(unknown)}"
    for group in ("system", "engine", "kind"):
        assert set(dag.tags) & set(TAGS[group]), f"tags: one {group} tag of {TAGS[group]}"
    assert dag.catchup is False, "catchup False"
    assert dag.max_active_runs is not None and dag.max_active_runs >= 1, "max_active_runs"
    assert _notifiers(dag.on_failure_callback, "failure"), "DAG failure notifier"
    for t in dag.tasks:
        assert t.owner and t.owner != "airflow", f"{t.task_id}: owner"
        assert t.retries >= 1, f"{t.task_id}: retries"
        assert _notifiers(t.on_failure_callback, "failure"), f"{t.task_id}: failure notifier"
        assert _notifiers(t.on_success_callback, "success"), f"{t.task_id}: recovery notifier"
        assert t.doc_md or t.doc, f"{t.task_id}: docstring"


def test_dag_files_import_without_errors():
    bag = dagbag()
    assert bag.import_errors == {}, bag.import_errors
    assert sorted(bag.dag_ids) == sorted(set(_declared_dag_ids()))


@pytest.mark.parametrize("dag_id", sorted(set(_declared_dag_ids())))
def test_dag_policy(dag_id):
    dag = dagbag().get_dag(dag_id)
    assert dag is not None
    check_policy(dag)
    assert dag.fileloc.endswith(f"/{dag_id}.py"), "file name, dag_id and function share one name"


def test_policy_check_rejects_a_dag_without_notifier():
    """The policy check itself can fail: a DAG built without dag_kwargs breaks it."""
    import pendulum
    from airflow.sdk import DAG, task

    with DAG("bare", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, max_active_runs=1,
             doc_md="A DAG that skipped dagkit.dag_kwargs and so has no alerts at all.",
             tags=["dupguard", "telemetry", "postgres", "cleanup"], default_args={"owner": "x", "retries": 1}) as bare:
        @task
        def step():
            """Does nothing."""

        step()
    with pytest.raises(AssertionError, match="DAG failure notifier"):
        check_policy(bare)


def test_policy_check_rejects_a_tag_outside_the_vocabulary():
    from dupguard.common.dagkit import dag_kwargs

    with pytest.raises(ValueError, match="vocabulary"):
        dag_kwargs(doc_md="x", tags=["misc"])


def test_dag_files_stay_thin():
    """Logic lives in plugins/dupguard and SQL in include/sql: DAG files stay short."""
    for path in DAG_FILES:
        assert len(path.read_text().splitlines()) < 200, f"{path.name} is not thin"


def test_health_report_watches_every_task_that_can_hold_an_incident():
    """The daily report finds open incidents by key: its registry must name every real task."""
    from dupguard.health.config import watched_tasks

    bag = dagbag()
    real = {dag_id: {*bag.get_dag(dag_id).task_ids, "<run>", "<late>"} for dag_id in bag.dag_ids}
    assert {dag_id: set(tasks) for dag_id, tasks in watched_tasks().items()} == real
