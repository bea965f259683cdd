"""A real ``airflow standalone`` for the end-to-end tests, on a free port.

It shares the session's PostgreSQL cluster (its own metadata database ``airflow_e2e``), chDB directory and
SMTP sink. Everything it starts runs in one process group and is stopped at the end, pass or fail.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tools.airflow_api import AirflowApi

USER, PASSWORD = "admin", "admin"


@pytest.fixture(scope="session")
def airflow_server(pg_cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_e2e")
    pg_cluster.create_database("airflow_e2e")
    port = free_port()
    pw_file = home / "passwords.json"
    pw_file.write_text(json.dumps({USER: PASSWORD}))
    env = os.environ.copy()
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
            f"postgresql+psycopg2://postgres@127.0.0.1:{pg_cluster.port}/airflow_e2e",
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
    })
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*airflow, "pools", "set", "clickhouse_embedded", "1", "embedded chDB"], env=env, check=True,
                   capture_output=True)
    log = open(home / "standalone.log", "w")
    proc = subprocess.Popen([*airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(ROOT))
    api = AirflowApi(f"http://localhost:{port}", USER, PASSWORD)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                h = api.health()
                if all(h.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"airflow standalone did not come up:\n{(home / 'standalone.log').read_text()[-3000:]}")
            time.sleep(1)
        api.login()
        api.home = home  # type: ignore[attr-defined]
        yield api
    finally:
        api.close()
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
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


def chromium_driver(window=(1400, 900)):
    """Selenium driving Debian's chromium with its chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("Debian chromium and chromium-driver are not installed (scripts/test.sh installs them as root)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--window-size={window[0]},{window[1]}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


@pytest.fixture(scope="module")
def demo_data(pg_cluster):
    """Fresh demo data in the session's databases (other test modules leave their own tables)."""
    import psycopg

    from dupguard.common.connections import clickhouse_client
    from tools import demo_breezeway, demo_polymarket, demo_telemetry

    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
        c.execute("DROP TYPE IF EXISTS micromegas_property CASCADE")
    with psycopg.connect(pg_cluster.dsn("breezeway"), autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS breezeway, dupguard CASCADE")
    with clickhouse_client("polymarket_clickhouse") as ch:
        for t in ch.query("SHOW TABLES").result_rows:
            ch.command(f"DROP TABLE IF EXISTS `{t[0]}`")
    demo_telemetry.setup()
    demo_breezeway.setup()
    demo_polymarket.setup()
    return pg_cluster


def login(driver, base_url: str):
    """Log ``driver`` into the UI at ``base_url``; returns the 60 s waiter it used."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.get(f"{base_url}/")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/login" not in d.current_url)
    return wait


@pytest.fixture(scope="module")
def browser(airflow_server):
    """Headless Chromium logged into the UI (module-scoped: one login for a module's tests)."""
    driver = chromium_driver(window=(1400, 1000))
    try:
        login(driver, airflow_server.base_url)
        yield driver
    finally:
        driver.quit()
