"""Session fixtures: real engines the suite starts for itself, never the demo's.

- a PostgreSQL cluster (machine binaries, run as ``postgres``) on a free port, with the
  databases ``airflow`` (metadata), ``telemetry`` and ``breezeway``;
- an embedded ClickHouse (chDB) directory;
- an SMTP sink that keeps every message it receives;
- an Airflow home with a migrated metadata database and every ``AIRFLOW_CONN_*`` set.

The environment is prepared in ``pytest_configure`` because Airflow reads it at import.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))

from tools.embedded_pg import Cluster  # noqa: E402
from tools.smtp_sink import SmtpSink  # noqa: E402

_STATE: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_conn_json(port: int, db: str) -> str:
    return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port,
                       "login": "postgres", "schema": db})


def pytest_configure(config):
    if _STATE or hasattr(config, "workerinput"):
        return
    base = Path(tempfile.mkdtemp(prefix="dupguard-test-"))
    os.chmod(base, 0o755)
    pg = Cluster(base / "pg", free_port())
    pg.start(extra_conf={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    pg.wait_ready()
    for db in ("airflow", "telemetry", "breezeway"):
        pg.create_database(db)
    sink = SmtpSink(base / "mail", port=free_port())
    sink.start()
    chdb_dir = base / "chdb"
    home = base / "airflow"
    home.mkdir()
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/airflow",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW_CONN_TELEMETRY_POSTGRES": pg_conn_json(pg.port, "telemetry"),
        "AIRFLOW_CONN_BREEZEWAY_POSTGRES": pg_conn_json(pg.port, "breezeway"),
        "AIRFLOW_CONN_POLYMARKET_CLICKHOUSE": json.dumps(
            {"conn_type": "clickhouse", "schema": "polymarket", "extra": {"chdb_path": str(chdb_dir)}}),
        "AIRFLOW_CONN_ALERTS_SMTP": sink.conn_json(),
        "DUPGUARD_ALERT_EMAILS": "oncall@example.com",
        "DUPGUARD_UI_BASE_URL": "http://localhost:8080",
        "DUPGUARD_DATA_DOCS_DIR": str(base / "data_docs"),
        "GX_ANALYTICS_ENABLED": "false",
    }
    os.environ.update(env)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    _STATE.update(base=base, pg=pg, sink=sink, chdb_dir=chdb_dir, home=home, env=env)


def pytest_unconfigure(config):
    if not _STATE:
        return
    _STATE["sink"].stop()
    _STATE["pg"].stop(mode="immediate")
    if not os.environ.get("DUPGUARD_KEEP_TEST_DIRS"):
        shutil.rmtree(_STATE["base"], ignore_errors=True)
    _STATE.clear()


@pytest.fixture(scope="session")
def pg_cluster() -> Cluster:
    """The session's PostgreSQL cluster (``.dsn(db)``, ``.create_database(name)``)."""
    return _STATE["pg"]


@pytest.fixture(scope="session")
def chdb_dir() -> Path:
    """The session's embedded ClickHouse directory (connection ``polymarket_clickhouse``)."""
    return _STATE["chdb_dir"]


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """Airflow home with a migrated metadata database."""
    return _STATE["home"]


@pytest.fixture()
def smtp_sink() -> SmtpSink:
    """The session's SMTP server, emptied for this test; ``.messages`` are parsed emails."""
    sink = _STATE["sink"]
    sink.clear()
    return sink


@pytest.fixture(scope="session")
def output_dir() -> Path:
    d = ROOT / "tests" / "output"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(autouse=True)
def no_incidents():
    """Every test starts and ends with no open alert incident (Airflow Variables
    ``dupguard_incident__*``): a failure in one test must not silence the next test's alert."""
    def clear():
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        with create_session() as s:
            s.query(Variable).filter(Variable.key.like("dupguard_incident__%")).delete(synchronize_session=False)

    clear()
    yield
    clear()


@pytest.fixture(scope="session")
def run_dag():
    """Run a DAG of ``dags/`` with ``dag.test()``; returns a :class:`tests.airflow_helpers.DagRunResult`."""
    from tests.airflow_helpers import run_dag as _run

    return _run
