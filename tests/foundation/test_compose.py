"""docker-compose.yaml cannot run here (no Docker engine): check it as a file.

The same shape runs without Docker in ``tests/distributed`` (Redis, api-server, scheduler,
dag-processor, triggerer and two Celery workers as processes).
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from dupguard.common import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
AIRFLOW = [n for n, s in SERVICES.items() if s.get("image", "").startswith("dupguard-airflow")]
LONG_RUNNING_AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                        "airflow-worker", "airflow-worker-clickhouse"]
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
SECRET = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
VAR = re.compile(r"\$\{(\w+)(:?[-?])?([^}]*)\}")


def _env(name: str) -> dict[str, str]:
    return SERVICES[name].get("environment", {})


def _command(name: str) -> list[str]:
    cmd = SERVICES[name].get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _worker_queues() -> dict[str, set[str]]:
    """Celery worker service -> the queues it serves (``--queues a,b``; Airflow's default queue
    when the option is absent)."""
    out = {}
    for name in SERVICES:
        cmd = _command(name)
        if cmd[:2] == ["celery", "worker"]:
            q = cmd[cmd.index("--queues") + 1] if "--queues" in cmd else "default"
            out[name] = set(q.split(","))
    return out


def _interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` with ``values``;
    raises KeyError for a required variable that is missing or empty, as compose does."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if values.get(name):
            return values[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""
    return VAR.sub(sub, text.replace("$$", "\x00")).replace("\x00", "$")


def test_services_of_airflows_official_shape_are_present():
    expected = {"postgres", "redis", "clickhouse", "mailcatcher", "airflow-init", *LONG_RUNNING_AIRFLOW}
    assert expected <= set(SERVICES), sorted(expected - set(SERVICES))
    assert "x-airflow-common" in COMPOSE
    assert set(LONG_RUNNING_AIRFLOW) | {"airflow-init"} <= set(AIRFLOW)
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert _command("airflow-scheduler") == ["scheduler"]
    assert _command("airflow-apiserver") == ["api-server"]
    assert _command("airflow-dag-processor") == ["dag-processor"]
    assert _command("airflow-triggerer") == ["triggerer"]


def test_celery_executor_with_the_redis_broker_and_fab_logins():
    for name in AIRFLOW:
        env = _env(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB, name
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/\d+", env["AIRFLOW__CELERY__BROKER_URL"])
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert "SIMPLE_AUTH_MANAGER" not in " ".join(env), f"{name}: simple auth manager is development only"
    assert "--requirepass" in _command("redis")
    required = (ROOT / "requirements.in").read_text()
    assert "apache-airflow-providers-fab" in required and "apache-airflow-providers-celery" in required


def test_the_lock_installs_a_working_celery_executor_and_fab():
    """The image installs the same lock as .venv: the executor and auth manager must import
    (celery 5.7 dropped a name the celery provider 3.26 imports)."""
    from airflow.providers.celery.executors import celery_executor
    from airflow.providers.fab.auth_manager import fab_auth_manager

    assert celery_executor.CeleryExecutor and fab_auth_manager.FabAuthManager


def test_default_workers_scale_and_one_worker_serves_the_clickhouse_queue():
    queues = _worker_queues()
    assert queues.get("airflow-worker") == {"default"}, queues
    serving_ch = [n for n, q in queues.items() if settings.CLICKHOUSE_QUEUE in q]
    assert serving_ch == ["airflow-worker-clickhouse"], serving_ch
    scalable = SERVICES["airflow-worker"]
    for key in ("container_name", "hostname", "ports"):
        assert key not in scalable, f"airflow-worker: {key} prevents --scale"
    assert scalable.get("deploy", {}).get("replicas", 1) >= 1
    single = SERVICES["airflow-worker-clickhouse"]
    assert single.get("deploy", {}).get("replicas", 1) == 1 and "ports" not in single
    # the node name its healthcheck pings is the one the worker takes
    cmd = _command("airflow-worker-clickhouse")
    node = cmd[cmd.index("--celery-hostname") + 1].split("@")[0]
    assert f'"{node}@$${{HOSTNAME}}"' in single["healthcheck"]["test"][1]
    assert '"celery@$${HOSTNAME}"' in scalable["healthcheck"]["test"][1]
    for name in queues:
        assert _env(name).get("DUMB_INIT_SETSID") == "0", f"{name}: warm shutdown needs DUMB_INIT_SETSID=0"


def test_every_task_queue_is_served_by_a_worker():
    """The DAGs' side of the queue wiring: ClickHouse tasks (the pool) go to the clickhouse
    queue, every other task to a queue the scalable workers serve."""
    from tests.airflow_helpers import dagbag

    bag = dagbag()
    assert not bag.import_errors, bag.import_errors
    served = set().union(*_worker_queues().values())
    clickhouse_tasks = 0
    for dag in bag.dags.values():
        for t in dag.tasks:
            where = f"{dag.dag_id}.{t.task_id}"
            assert t.queue in served, f"{where}: queue {t.queue!r} has no worker"
            if t.pool == settings.CLICKHOUSE_POOL:
                clickhouse_tasks += 1
                assert t.queue == settings.CLICKHOUSE_QUEUE, f"{where}: ClickHouse task outside the queue"
            else:
                assert t.queue != settings.CLICKHOUSE_QUEUE, f"{where}: not a ClickHouse task"
    assert clickhouse_tasks >= 6  # unified_positions_refresh alone has six


def test_healthchecks_gate_the_start_order():
    for name in ["postgres", "redis", "clickhouse", *LONG_RUNNING_AIRFLOW]:
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name}: healthcheck"
    for name in LONG_RUNNING_AIRFLOW:
        deps = SERVICES[name]["depends_on"]
        for dep in ("postgres", "redis", "clickhouse"):
            assert deps[dep]["condition"] == "service_healthy", (name, dep)
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert SERVICES["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_every_image_is_pinned():
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        repo, _, tag = image.rpartition(":")
        assert repo and re.match(r"v?\d+\.\d+", tag), f"{name}: image {image!r} is not pinned to a version"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    base = re.search(r"(?m)^FROM\s+(\S+)", dockerfile).group(1)
    airflow = re.search(r"(?m)^apache-airflow==(\S+)", (ROOT / "requirements.in").read_text()).group(1)
    assert base.startswith(f"apache/airflow:{airflow}-python3."), (base, airflow)
    assert SERVICES["airflow-scheduler"]["image"] == f"dupguard-airflow:{airflow}"
    assert "requirements.txt" in dockerfile and "--require-hashes" in dockerfile


def test_no_secret_has_a_default():
    refs = [(m.group(1), m.group(2)) for m in VAR.finditer(COMPOSE_TEXT)]
    secrets = {name for name, _ in refs if SECRET.search(name) and name != "AIRFLOW_CONN_ALERTS_SLACK"}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "CLICKHOUSE_PASSWORD", "AIRFLOW_ADMIN_PASSWORD",
            "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_FERNET_KEY"} <= secrets
    for name in secrets:
        ops = {op for n, op in refs if n == name}
        assert ":?" in ops, f"{name}: compose must refuse to start without it (${{{name}:?...}})"
        assert not ops & {":-", "-"}, f"{name} has a default value"
    # nothing literal: every password/secret/key setting takes its value from a variable
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET.search(key) and not key.startswith("AIRFLOW_CONN_"):
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"
    every_var = {name: "x" for name, _ in refs}
    for name in secrets:  # compose stops when this one alone is missing
        with pytest.raises(KeyError, match=name):
            _interpolate(COMPOSE_TEXT, {k: v for k, v in every_var.items() if k != name})
    # .env.example ships the secrets empty (so an unedited copy refuses to start too)
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert all(example.get(s, "") == "" for s in secrets), {s: example.get(s) for s in secrets}
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_connections_have_the_types_the_code_needs():
    env = yaml.safe_load(_interpolate(COMPOSE_TEXT, {m.group(1): "x" for m in VAR.finditer(COMPOSE_TEXT)}))
    env = env["x-airflow-common"]["environment"]
    conn_ids = {v for k, v in vars(settings).items() if k.endswith("_CONN_ID")}
    assert set(settings.ALL_CONN_IDS) <= conn_ids
    expected_type = {settings.TELEMETRY_CONN_ID: "postgres", settings.BREEZEWAY_CONN_ID: "postgres",
                     settings.CLICKHOUSE_CONN_ID: "clickhouse", settings.SMTP_CONN_ID: "smtp"}
    assert set(expected_type) == set(settings.ALL_CONN_IDS)
    databases = set(re.findall(r"CREATE DATABASE (\w+)", (ROOT / "docker" / "init-databases.sql").read_text()))
    for conn_id, conn_type in expected_type.items():
        conn = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        assert conn["conn_type"] == conn_type, conn_id
        assert conn["host"] in SERVICES, f"{conn_id}: host {conn['host']} is not a service"
        if conn_type == "postgres":
            assert conn["schema"] in databases, f"{conn_id}: database {conn['schema']} is never created"
        if conn_type == "clickhouse":
            assert conn["schema"] == _env("clickhouse")["CLICKHOUSE_DB"]
            assert "chdb_path" not in conn.get("extra", {}), "the compose stack uses the ClickHouse server"
    # the optional Slack channel passes through from .env (empty = off)
    assert env[f"AIRFLOW_CONN_{settings.SLACK_CONN_ID.upper()}"] in ("", "x")
    assert f"AIRFLOW_CONN_{settings.SLACK_CONN_ID.upper()}=" in (ROOT / ".env.example").read_text()


def test_init_migrates_creates_the_admin_from_env_and_the_clickhouse_pool():
    script = _command("airflow-init")[-1]
    steps = [line.strip() for line in script.splitlines()]
    assert any("airflow db migrate" in s for s in steps)
    create = script[script.index("airflow users create"):]
    assert "--role Admin" in create and '"$${AIRFLOW_ADMIN_PASSWORD}"' in create
    assert _env("airflow-init")["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")
    assert f"airflow pools set {settings.CLICKHOUSE_POOL} " in script
    assert SERVICES["airflow-init"].get("restart") == "no"


def test_airflow_services_mount_the_project():
    for name in AIRFLOW:
        mounts = {m.split(":")[1] for m in SERVICES[name]["volumes"] if m.startswith("./")}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts, name
        assert (ROOT / SERVICES[name]["build"]["dockerfile"]).exists()
