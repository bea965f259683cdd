"""A real ``airflow standalone`` for the end-to-end tests, on a free port.

It shares the session's PostgreSQL cluster (its own metadata database ``airflow_e2e``), chDB directory and
SMTP sink. Everything it starts runs in one process group and is stopped at the end, pass or fail.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.standalone import PASSWORD, USER, airflow_standalone


@pytest.fixture(scope="session")
def airflow_server(pg_cluster, tmp_path_factory):
    with airflow_standalone(pg_cluster, tmp_path_factory.mktemp("airflow_e2e"), "airflow_e2e") as api:
        yield api


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
