"""Demo, once the UI is up: unpause the DAGs and start the one-shot workflows once.

``dedup_health_daily`` is unpaused only after the workflows it checks have had a successful run
in this demo (a background waiter), so its first run checks the repaired state instead of racing
the repairs and alerting on the demo's planted duplicates.
"""
from __future__ import annotations

import os
import sys
import time

from tools.airflow_api import AirflowApi

# manual DAGs that repair or undo: left paused in the demo, trigger them on purpose
KEEP_PAUSED = {"telemetry_unique_indexes", "child_tables_dedup_rollback", "unified_positions_deduplicate",
               "unified_positions_rollback", "unified_positions_adopt_partitioning"}
# triggered once when the demo starts, so the UI shows their runs within minutes
TRIGGER_ON_START = ("child_tables_dedup_migration", "unified_positions_refresh")
# unpaused once these have succeeded
HEALTH_DAG = "dedup_health_daily"
HEALTH_WAITS_FOR = ("blocks_duplicate_cleanup", *TRIGGER_ON_START)


def _api() -> AirflowApi:
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    return AirflowApi(f"http://localhost:{port}", os.environ.get("DUPGUARD_DEMO_USER", "admin"),
                      os.environ.get("DUPGUARD_DEMO_PASSWORD", "admin"))


def after_start() -> None:
    api = _api()
    try:
        dag_ids = sorted(_project_dag_ids())
        api.wait_for_dags(dag_ids, timeout=180)
        for dag_id in dag_ids:
            if dag_id != HEALTH_DAG:
                api.set_paused(dag_id, dag_id in KEEP_PAUSED)
        unpaused = [d for d in dag_ids if d not in KEEP_PAUSED and d != HEALTH_DAG]
        print(f"==> unpaused: {', '.join(unpaused)}; {HEALTH_DAG} follows once they have run; "
              f"paused (trigger by hand): {', '.join(sorted(KEEP_PAUSED & set(dag_ids)))}")
        for dag_id in TRIGGER_ON_START:
            if dag_id in dag_ids and not api.runs(dag_id, limit=1):
                print(f"==> triggered {dag_id}: run {api.trigger(dag_id)}")
    finally:
        api.close()


def background() -> list[tuple[str, str]]:
    return [("demo-health-unpause", f"{sys.executable} -m tools.demo_airflow unpause-health")]


def unpause_health(timeout: float = 1800) -> None:
    """Wait until each of HEALTH_WAITS_FOR has a successful run started in this demo, then unpause."""
    started = time.time()
    deadline = time.monotonic() + timeout
    api = _api()
    try:
        while time.monotonic() < deadline:
            try:
                done = all(any(r["state"] == "success" and _ts(r.get("start_date")) >= started
                                   for r in api.runs(d, limit=20)) for d in HEALTH_WAITS_FOR)
                if done:
                    api.set_paused(HEALTH_DAG, False)
                    print(f"{HEALTH_DAG} unpaused after {time.time() - started:.0f}s", flush=True)
                    return
            except Exception as exc:  # noqa: BLE001 - the API is not up yet
                print(f"waiting for the API: {exc}", flush=True)
            time.sleep(10)
        print(f"gave up waiting; unpause {HEALTH_DAG} in the UI", flush=True)
    finally:
        api.close()


def _ts(iso: str | None) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else 0.0


def _project_dag_ids() -> list[str]:
    import ast
    from pathlib import Path

    ids = []
    for path in (Path(__file__).resolve().parents[1] / "dags").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "dag_id" and isinstance(node.value, ast.Constant):
                ids.append(node.value.value)
    return ids


if __name__ == "__main__":
    if sys.argv[1:] == ["unpause-health"]:
        unpause_health()
    else:
        after_start()
