"""A real ``airflow standalone`` (LocalExecutor) on a free port, for the end-to-end and the chaos
tests: its own metadata database on the session's PostgreSQL cluster, the session's chDB
directory, connections and SMTP sink. Everything it starts runs in one process group, stopped
at the end, pass or fail."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT, free_port
from tools.airflow_api import AirflowApi

USER, PASSWORD = "admin", "admin"


def standalone_env(pg_port: int, home: Path, database: str, port: int,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    """The session's environment turned into a standalone's (``extra`` last: it wins)."""
    pw_file = home / "passwords.json"
    pw_file.write_text(json.dumps({USER: PASSWORD}))
    env = os.environ.copy()
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/{database}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "DUPGUARD_UI_BASE_URL": f"http://localhost:{port}",
        "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        **(extra or {}),
    })
    return env


class Standalone:
    """``airflow standalone`` on metadata database ``database`` (created by :meth:`boot`).
    :meth:`boot` may run in a background thread while a test loads its data; :meth:`wait_ready`
    returns the logged-in REST client (``.home``: the Airflow home, ``standalone.log`` in it)."""

    def __init__(self, pg_cluster, home: Path, database: str, extra_env: dict[str, str] | None = None):
        self.pg_cluster, self.home, self.database = pg_cluster, home, database
        self.port = free_port()
        self.env = standalone_env(pg_cluster.port, home, database, self.port, extra_env)
        self.proc: subprocess.Popen | None = None
        # a loaded 2-core machine can keep the api-server busy for a while: be patient
        self.api = AirflowApi(f"http://localhost:{self.port}", USER, PASSWORD, timeout=90)
        self._log = None

    def boot(self) -> None:
        self.pg_cluster.create_database(self.database)
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=self.env, check=True, capture_output=True)
        subprocess.run([*airflow, "pools", "set", "clickhouse_embedded", "1", "embedded chDB"], env=self.env,
                       check=True, capture_output=True)
        self._log = open(self.home / "standalone.log", "w")
        self.proc = subprocess.Popen([*airflow, "standalone"], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=str(ROOT))

    def wait_ready(self, timeout: float = 180) -> AirflowApi:
        assert self.proc is not None, "boot() first"
        deadline = time.monotonic() + timeout
        while True:
            try:
                h = self.api.health()
                if all(h.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("airflow standalone did not come up:\n"
                                   f"{(self.home / 'standalone.log').read_text()[-3000:]}")
            time.sleep(1)
        self.api.login()
        self.api.home = self.home  # type: ignore[attr-defined]
        return self.api

    def stop(self) -> None:
        self.api.close()
        if self.proc is not None:
            stop_group(self.proc)
        if self._log is not None:
            self._log.close()


@contextlib.contextmanager
def airflow_standalone(pg_cluster, home: Path, database: str, extra_env: dict[str, str] | None = None,
                       timeout: float = 180) -> Iterator[AirflowApi]:
    """A booted, healthy standalone's REST client; everything it started is stopped on exit."""
    standalone = Standalone(pg_cluster, home, database, extra_env)
    try:
        standalone.boot()
        yield standalone.wait_ready(timeout)
    finally:
        standalone.stop()


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL what is left after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
