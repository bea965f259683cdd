"""``airflow dags test`` in a fresh Airflow home where only the AIRFLOW_CONN_* variables are set:
no pool, Variable or table has to be created by hand first."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from dupguard.common import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fresh_home(tmp_path, pg_cluster):
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "dags").symlink_to(ROOT / "dags")
    (home / "plugins").symlink_to(ROOT / "plugins")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DUPGUARD"))}
    env.update({k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")})
    env["AIRFLOW_HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    # a known state whatever other test modules left: telemetry set up and clean, the other
    # systems not set up (their health gates are skipped)
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
        c.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
    with psycopg.connect(pg_cluster.dsn("breezeway"), autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS breezeway, dupguard CASCADE")
    from dupguard.common.connections import clickhouse_client

    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        ch.command("DROP TABLE IF EXISTS pm_trade_fifo_roi_v3_mat_unified")
    return env


@pytest.mark.parametrize("dag_id", ["blocks_duplicate_cleanup", "dedup_health_daily"])
def test_dags_test_in_a_fresh_home(fresh_home, dag_id):
    res = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id, "2026-02-01T00:00:00+00:00"],
                         env=fresh_home, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "state=success" in out, out[-3000:]
