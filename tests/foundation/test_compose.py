"""docker-compose.yaml cannot run here (no Docker engine): check it as a file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dupguard import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]


def test_services_present():
    for name in [*AIRFLOW, "postgres", "clickhouse", "mailcatcher"]:
        assert name in SERVICES, name
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")
    assert "healthcheck" in SERVICES["clickhouse"] and "healthcheck" in SERVICES["postgres"]


def test_airflow_services_built_from_the_lock_and_mount_the_project():
    dockerfile = (ROOT / SERVICES["airflow-scheduler"]["build"]["dockerfile"]).read_text()
    assert "apache/airflow:3.3" in dockerfile and "requirements.txt" in dockerfile and "--require-hashes" in dockerfile
    for name in AIRFLOW:
        svc = SERVICES[name]
        mounts = {m.split(":")[1] for m in svc["volumes"] if m.startswith("./")}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts, name
    assert SERVICES["airflow-scheduler"]["command"] == "scheduler"
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"


def test_every_connection_the_code_uses_is_defined():
    env = SERVICES["airflow-scheduler"]["environment"]
    used = set(settings.ALL_CONN_IDS)
    # connection ids written anywhere in dags/ and plugins/ as *_conn_id / settings constants
    for path in [*(ROOT / "dags").glob("*.py"), *(ROOT / "plugins" / "dupguard").glob("*.py")]:
        used |= set(re.findall(r'conn_id\s*=\s*"([a-z_]+)"', path.read_text()))
    used.discard(settings.SLACK_CONN_ID)  # optional channel, documented in .env.example
    for conn_id in used:
        var = f"AIRFLOW_CONN_{conn_id.upper()}"
        assert var in env, var
        json.loads(re.sub(r"\$\{[^}]+\}", "x", env[var]))  # valid JSON once interpolated
    assert "AIRFLOW_CONN_ALERTS_SLACK" in (ROOT / ".env.example").read_text()


def test_no_secret_in_the_file():
    text = (ROOT / "docker-compose.yaml").read_text()
    assert not re.search(r"(?m)^\s*\w*PASSWORD:\s*(?!\$\{)\S", text), "passwords come from .env"
    assert (ROOT / ".env.example").exists() and ".env" in (ROOT / ".gitignore").read_text().split()
