"""Demo, once the UI is up: unpause the DAGs and start the one-shot workflows once."""
from __future__ import annotations

import os

from tools.airflow_api import AirflowApi

# manual DAGs that repair or undo: left paused in the demo, trigger them on purpose
KEEP_PAUSED = {"telemetry_unique_indexes", "child_tables_dedup_rollback", "unified_positions_deduplicate"}
# triggered once when the demo starts, so the UI shows their runs within minutes
TRIGGER_ON_START = ("child_tables_dedup_migration", "unified_positions_refresh")


def after_start() -> None:
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    api = AirflowApi(f"http://localhost:{port}", os.environ.get("DUPGUARD_DEMO_USER", "admin"),
                     os.environ.get("DUPGUARD_DEMO_PASSWORD", "admin"))
    try:
        dag_ids = sorted(d for d in _project_dag_ids())
        api.wait_for_dags(dag_ids, timeout=180)
        for dag_id in dag_ids:
            api.set_paused(dag_id, dag_id in KEEP_PAUSED)
        unpaused = [d for d in dag_ids if d not in KEEP_PAUSED]
        print(f"==> unpaused: {', '.join(unpaused)}; paused (trigger by hand): {', '.join(sorted(KEEP_PAUSED & set(dag_ids)))}")
        for dag_id in TRIGGER_ON_START:
            if dag_id in dag_ids and not _already_ran(api, dag_id):
                print(f"==> triggered {dag_id}: run {api.trigger(dag_id)}")
    finally:
        api.close()


def _already_ran(api: AirflowApi, dag_id: str) -> bool:
    runs = api._request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1})
    return bool(runs.get("total_entries"))


def _project_dag_ids() -> list[str]:
    import ast
    from pathlib import Path

    ids = []
    for path in (Path(__file__).resolve().parents[1] / "dags").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "dag_id" and isinstance(node.value, ast.Constant):
                ids.append(node.value.value)
    return ids
