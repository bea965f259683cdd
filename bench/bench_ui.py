"""The dupguard view against a week of the per-minute DAG: 10,000 runs in Airflow's metadata.

    make bench BENCH_ARGS=ui        (about 2 minutes)

A throw-away PostgreSQL holds a migrated Airflow metadata database with 10,000 runs of
``blocks_duplicate_cleanup`` (one a minute, ending now), each with the four task instances and
the reports its tasks return (XCom ``return_value``), plus 2,000 runs of another DAG so the
filters have something to skip. The dupguard app is called in-process (FastAPI's TestClient,
a real JWT from Airflow's auth manager), each request repeated; the table gives the median and
the slowest time. Target: ``runs?limit=50`` and a 24 h ``series`` under 0.5 s.

The measuring part runs in a child process: Airflow reads its configuration (the metadata
database) once, at import.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from bench.common import ROOT, pg_cluster, print_table

RUNS = int(os.environ.get("DUPGUARD_BENCH_UI_RUNS", "10000"))
OTHER_RUNS = RUNS // 5
REPEAT = 7
CLEANUP_DAG = "blocks_duplicate_cleanup"
TABLES = ("blocks", "streams", "processes")


def seed_cleanup_runs(session, n: int, *, end: datetime, dag_id: str = CLEANUP_DAG, seed: int = 7,
                      failed_gate_every: int = 0) -> list[str]:
    """Insert ``n`` finished runs of the per-minute cleanup (one a minute up to ``end``) with the
    task instances and reports a real run leaves; returns their run ids, oldest first."""
    from sqlalchemy import insert, select

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    rnd = random.Random(seed)
    tasks = [f"delete_duplicate_{t}" for t in TABLES] + ["quality_gate"]
    runs, run_ids = [], []
    for i in range(n):
        at = end - timedelta(minutes=n - 1 - i)
        run_id = f"scheduled__{at.isoformat()}"
        run_ids.append(run_id)
        runs.append({"dag_id": dag_id, "run_id": run_id, "run_type": "scheduled", "state": "success",
                     "run_after": at, "logical_date": at, "data_interval_start": at - timedelta(minutes=1),
                     "data_interval_end": at, "queued_at": at, "start_date": at, "end_date": at + timedelta(seconds=4),
                     "clear_number": 0, "span_status": "not_started"})
    for chunk in range(0, n, 2000):
        session.execute(insert(DagRun.__table__), runs[chunk:chunk + 2000])
    ids = dict(session.execute(select(DagRun.run_id, DagRun.id).where(DagRun.dag_id == dag_id,
                                                                        DagRun.run_id.in_(run_ids))).all())
    tis, xcoms = [], []
    for i, run in enumerate(runs):
        gate_failed = bool(failed_gate_every) and i % failed_gate_every == failed_gate_every - 1
        for task in tasks:
            failed = gate_failed and task == "quality_gate"
            tis.append({"task_id": task, "dag_id": dag_id, "run_id": run["run_id"], "map_index": -1,
                        "state": "failed" if failed else "success", "try_number": 1, "max_tries": 1,
                        "pool": "default_pool", "pool_slots": 1, "queue": "default", "priority_weight": 1,
                        "start_date": run["start_date"], "end_date": run["end_date"], "span_status": "not_started"})
            if failed:
                continue
            if task == "quality_gate":
                value = {"gate": "telemetry_window_duplicates", "success": True, "evaluated": 3, "failed": 0,
                         "results": [], "data_docs": None}
            else:
                deleted = rnd.choice((0, 0, 1, 2, 3, 5, 8, 13))
                value = {"table": f"public.{task.removeprefix('delete_duplicate_')}", "id_column": "id",
                         "window": {"start": (run["run_after"] - timedelta(minutes=5)).isoformat(),
                                    "end": run["run_after"].isoformat(), "reason": "lookback", "minutes": 5.0},
                         "skipped": False, "window_ids": 400 + rnd.randrange(100), "rows_deleted": deleted,
                         "ids_affected": (deleted + 1) // 2, "seconds": round(rnd.uniform(0.005, 0.05), 3)}
            xcoms.append({"dag_run_id": ids[run["run_id"]], "task_id": task, "map_index": -1, "key": "return_value",
                          "dag_id": dag_id, "run_id": run["run_id"], "value": value, "timestamp": run["end_date"]})
    for chunk in range(0, len(tis), 5000):
        session.execute(insert(TaskInstance.__table__), tis[chunk:chunk + 5000])
    for chunk in range(0, len(xcoms), 5000):
        session.execute(insert(XComModel.__table__), xcoms[chunk:chunk + 5000])
    session.commit()
    return run_ids


def client_and_token():
    """A TestClient on an app that mounts dupguard's at /dupguard as the api-server does, and a
    JWT the auth manager signed for an admin."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from dupguard.ui.app import create_app

    am = create_auth_manager()
    am.init()
    parent = FastAPI()
    parent.state.auth_manager = am
    parent.mount("/dupguard", create_app())
    token = am.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    return TestClient(parent), token


def _register_dags() -> None:
    """Parse dags/ and write the DAGs to the metadata database, as the dag-processor does (the
    dashboard shows the DAGs the user may read, which the auth manager looks up there)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    folder = str(ROOT / "dags")
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dags-folder"), "dags-folder", None)


def _measure() -> None:
    from sqlalchemy import text

    from airflow.utils.session import create_session

    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    t0 = time.monotonic()
    _register_dags()
    with create_session() as session:
        seed_cleanup_runs(session, RUNS, end=end, failed_gate_every=500)
        seed_cleanup_runs(session, OTHER_RUNS, end=end, dag_id="other_dag", seed=8)
    with create_session() as session:  # what autovacuum does after a week of inserts
        session.execute(text("ANALYZE dag_run, task_instance, xcom"))
    seeded = time.monotonic() - t0
    client, token = client_and_token()
    auth = {"Authorization": f"Bearer {token}"}
    day = (end - timedelta(hours=24)).isoformat()
    week = (end - timedelta(days=7)).isoformat()
    cases = [
        ("runs?limit=50", "/dupguard/api/runs", {"dag_id": CLEANUP_DAG, "limit": 50}),
        ("series rows_deleted.blocks, 24 h", "/dupguard/api/series",
         {"dag_id": CLEANUP_DAG, "metric": "rows_deleted.blocks", "since": day}),
        ("series gate.quality_gate, 24 h", "/dupguard/api/series",
         {"dag_id": CLEANUP_DAG, "metric": "gate.quality_gate", "since": day}),
        ("series rows_deleted.blocks, 7 days", "/dupguard/api/series",
         {"dag_id": CLEANUP_DAG, "metric": "rows_deleted.blocks", "since": week}),
        ("dashboard, 24 h", "/dupguard/", {"window": "24h"}),
        ("dashboard, 7 days", "/dupguard/", {"window": "7d"}),
    ]
    rows = []
    for name, path, params in cases:
        times, size, points = [], 0, "-"
        for _ in range(REPEAT):
            t = time.perf_counter()
            r = client.get(path, params=params, headers=auth)
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:300]}")
            size = len(r.content)
        if path.endswith("series"):
            points = len(r.json()["points"])
        elif path.endswith("runs"):
            points = len(r.json()["runs"])
        times.sort()
        rows.append((name, points, f"{size / 1024:.0f} kB", times[len(times) // 2], times[-1]))
    print(f"\nseeded {RUNS:,} runs of {CLEANUP_DAG} (+{OTHER_RUNS:,} of another DAG), "
          f"{RUNS * 4:,} task instances and ~{RUNS * 4:,} reports in {seeded:.0f} s")
    print_table(f"dupguard view on {RUNS:,} runs of the per-minute DAG ({REPEAT} requests each)",
                ["request", "points/runs", "response", "median s", "slowest s"], rows)


def main() -> None:
    with pg_cluster(("airflow",), synchronous_commit="off") as pg:
        env = {**os.environ,
               "AIRFLOW_HOME": str(pg.root.parent / "airflow"),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/airflow",
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
               "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
               "DUPGUARD_DATA_DOCS_DIR": str(pg.root.parent / "data_docs"),
               "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "bench.bench_ui", "--measure"], env=env, check=True, cwd=str(ROOT))


if __name__ == "__main__":
    if "--measure" in sys.argv:
        _measure()
    else:
        main()
