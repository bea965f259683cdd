"""The docker-compose shape without Docker: Airflow with the CeleryExecutor as separate processes.

Redis (Debian's ``redis-server``) on a free port is the broker; the api-server (FAB auth
manager, admin created with ``airflow users create``), scheduler, dag-processor, triggerer and
two Celery workers run as processes on the session's PostgreSQL (their own metadata database
``airflow_dist``), chDB directory and SMTP sink:

- ``worker1`` serves ``default`` and ``clickhouse`` (chDB: one process per data directory, so
  exactly one worker may serve the ClickHouse queue);
- ``worker2`` serves ``default`` only.

The cluster boots in a background thread while a test loads its data (``wait_ready()`` joins
it). Every process leads its own process group; the package fixture stops every group it
started and those of their descendants (Airflow's task supervisor gives each task runner a
group of its own), pass or fail: SIGTERM, then SIGKILL. ``kill_worker`` SIGKILLs one worker's
whole process tree, as the loss of its machine or container would.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dupguard.common import settings
from tests.conftest import ROOT, free_port
from tools.airflow_api import AirflowApi

USER = "admin"
WORKERS = {"worker1": "default,clickhouse", "worker2": "default"}
WORKER_SLOTS = 2            # task slots per worker (celery --concurrency): a small worker on a 2-core box
HEARTBEAT_TIMEOUT_S = 15    # [scheduler] task_instance_heartbeat_timeout: a killed worker's task is
                            # failed (and retried) this long after its last heartbeat (default 300)
HEARTBEAT_EVERY_S = 3       # [workers] min_heartbeat_interval: a live task tells the api-server this
                            # often (default 5), so the short timeout still spans several heartbeats
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


class ProcessGroups:
    """Processes started as leaders of their own process group, logged to ``<dir>/<name>.log``."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def groups(self, name: str) -> set[int]:
        """The process group of ``name`` and those of its descendants: Airflow's task supervisor
        puts each task runner in a group of its own."""
        import psutil

        leader = self.procs[name].pid
        try:
            tree = psutil.Process(leader).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        out = {leader}
        for p in tree:
            try:
                out.add(os.getpgid(p.pid))
            except ProcessLookupError:
                pass
        return out - {os.getpgrp()}  # never our own group

    def signal(self, name: str, sig: int, groups: set[int] | None = None) -> None:
        for pgid in groups or {self.procs[name].pid}:
            try:
                os.killpg(pgid, sig)  # a group outlives its leader: always signal the group
            except ProcessLookupError:
                pass

    def stop(self, name: str, timeout: float = 20) -> None:
        """SIGTERM the group (Celery: warm shutdown), SIGKILL what is left after ``timeout``."""
        if name not in self.procs:
            return
        groups = self.groups(name)
        self.signal(name, signal.SIGTERM)
        try:
            self.procs[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal(name, signal.SIGKILL, groups | self.groups(name))
        self.procs.pop(name).wait(timeout=10)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name, timeout=10)

    def log(self, name: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class DistApi(AirflowApi):
    """The project's REST client plus the task-instance details the distributed tests read."""

    def tis(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t for t in rows}

    def set_pool(self, name: str, slots: int, description: str) -> None:
        self._request("POST", "/pools", json={"name": name, "slots": slots, "description": description})

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        rows = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
        return sorted(rows["task_instances"], key=lambda t: t["try_number"])


class CeleryCluster:
    """The deployment: ``boot()`` runs in a background thread (the tests load their data
    meanwhile); ``wait_ready()`` joins it and returns the logged-in REST client."""

    def __init__(self, procs: ProcessGroups, env: dict[str, str], api: DistApi, password: str):
        self.procs, self.env, self.api, self.password = procs, env, api, password
        self.airflow = [sys.executable, "-m", "airflow"]
        self._boot: threading.Thread | None = None
        self._boot_error: BaseException | None = None
        self._stopping = threading.Event()

    def boot(self, redis_server: str, redis_port: int) -> None:
        t0 = time.monotonic()
        self.procs.start("redis", [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.procs.log_dir)], self.env)
        subprocess.run([*self.airflow, "db", "migrate"], env=self.env, check=True, capture_output=True)
        migrated = time.monotonic() - t0
        if self._stopping.is_set():
            return
        admin = subprocess.Popen([*self.airflow, "users", "create", "--role", "Admin", "--username", USER,
                                  "--password", self.password, "--email", "admin@example.com",
                                  "--firstname", "dupguard", "--lastname", "admin"],
                                 env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for name, argv in (("api-server", ["api-server", "--port", self.env["AIRFLOW__API__PORT"]]),
                           ("scheduler", ["scheduler", "--skip-serve-logs"]),
                           ("dag-processor", ["dag-processor"]),
                           ("triggerer", ["triggerer", "--skip-serve-logs"])):
            self.procs.start(name, [*self.airflow, *argv], self.env)
        _wait_port(redis_port)
        self.start_workers(list(WORKERS))
        out = admin.communicate(timeout=120)[0].decode(errors="replace")
        assert admin.returncode == 0, out[-2000:]
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.api.health()["scheduler"]["status"] == "healthy":
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline or self._stopping.is_set():
                raise RuntimeError("api-server/scheduler not healthy:\n" + self.procs.log("api-server") +
                                   self.procs.log("scheduler"))
            time.sleep(1)
        self.api.login()
        self.api.set_pool(settings.CLICKHOUSE_POOL, 1, "embedded chDB: one task at a time")
        sys.__stdout__.write(f"\n[distributed] cluster up in {time.monotonic() - t0:.0f} s (metadata database "
                             f"migrated in {migrated:.0f} s; redis :{redis_port}, api-server "
                             f"{self.api.base_url}, logs in {self.procs.log_dir})\n")

    def boot_in_background(self, redis_server: str, redis_port: int) -> None:
        def run() -> None:
            try:
                self.boot(redis_server, redis_port)
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait_ready in the test's thread
                self._boot_error = exc
        self._boot = threading.Thread(target=run, name="celery-cluster-boot", daemon=True)
        self._boot.start()

    def wait_ready(self, timeout: float = 300) -> DistApi:
        if self._boot is not None:
            self._boot.join(timeout)
            if self._boot.is_alive():
                raise TimeoutError(f"the cluster did not boot in {timeout:.0f} s")
            self._boot = None
        if self._boot_error is not None:
            raise RuntimeError("the cluster did not boot") from self._boot_error
        return self.api

    def shutdown(self) -> None:
        """Stop every process this cluster started (after the boot thread, so none starts later)."""
        self._stopping.set()
        if self._boot is not None:
            self._boot.join(300)
        self.api.close()
        self.procs.stop_all()

    def start_workers(self, names: list[str], timeout: float = 120) -> None:
        """Start ``names`` (``airflow celery worker``) and wait until each says it is ready."""
        offsets = {}
        for name in names:
            log = self.procs.log_dir / f"{name}.log"
            offsets[name] = log.stat().st_size if log.exists() else 0
            env = {**self.env, "DUPGUARD_WORKER_NAME": name,
                   "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.hostname.worker_name"}
            self.procs.start(name, [*self.airflow, "celery", "worker", "--celery-hostname", f"{name}@%h",
                                    "--queues", WORKERS[name], "--concurrency", str(WORKER_SLOTS),
                                    "--skip-serve-logs", "--without-mingle", "--without-gossip"], env)
        deadline = time.monotonic() + timeout
        for name in names:
            log = self.procs.log_dir / f"{name}.log"
            while " ready." not in log.read_text(errors="replace")[offsets[name]:]:
                if not self.procs.alive(name) or time.monotonic() > deadline:
                    raise RuntimeError(f"celery worker {name} did not start:\n{self.procs.log(name)}")
                time.sleep(0.5)

    def stop_worker(self, name: str) -> None:
        self.procs.stop(name, timeout=60)

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker as a lost machine or container would: its process group (Celery
        parent, pool, task supervisor) and the group of the task runner it supervises."""
        self.procs.signal(name, signal.SIGKILL, self.procs.groups(name))
        self.procs.procs.pop(name).wait(timeout=10)

    def ensure_workers(self, names: list[str]) -> None:
        """Exactly the workers ``names`` running (started or stopped as needed)."""
        for name in WORKERS:
            if name not in names and self.procs.alive(name):
                self.stop_worker(name)
        missing = [n for n in names if not self.procs.alive(n)]
        for name in missing:
            self.procs.procs.pop(name, None)
        if missing:
            self.start_workers(missing)


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def cluster_env(pg_port: int, home: Path, redis_port: int, api_port: int) -> dict[str, str]:
    """The session's environment (connections, DAG folder, ...) turned into a Celery deployment."""
    from cryptography.fernet import Fernet

    db = f"postgres@127.0.0.1:{pg_port}/airflow_dist"
    env = os.environ.copy()
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": FAB,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{db}",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(48),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs the tests trigger
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(HEARTBEAT_EVERY_S),
        # a task a lost worker had received but not started sends no heartbeat: re-queue it after this
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",  # parse once: 2 cores are shared
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "DUPGUARD_UI_BASE_URL": f"http://localhost:{api_port}",
        "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    })
    return env


@pytest.fixture(scope="package")
def celery_cluster(pg_cluster, chdb_dir, tmp_path_factory):
    """The cluster, booting in the background: call ``wait_ready()`` for the REST client."""
    redis_server = shutil.which("redis-server")
    if not redis_server:
        pytest.skip("redis-server is not installed (Debian package redis-server; scripts/test.sh installs it "
                    "when run as root)")
    base = tmp_path_factory.mktemp("distributed")
    home = base / "airflow"
    home.mkdir()
    pg_cluster.create_database("airflow_dist")
    redis_port, api_port = free_port(), free_port()
    password = secrets.token_urlsafe(16)
    cluster = CeleryCluster(ProcessGroups(base), cluster_env(pg_cluster.port, home, redis_port, api_port),
                            DistApi(f"http://localhost:{api_port}", USER, password), password)
    try:
        cluster.boot_in_background(redis_server, redis_port)
        yield cluster
    finally:
        cluster.shutdown()
