"""Connection helpers: embedded ClickHouse lock, clear errors for unreachable databases."""
from __future__ import annotations

import json
import threading
import time

import pytest

from dupguard.connections import clickhouse_client, clickhouse_is_embedded, pg_connect


def test_embedded_clickhouse_creates_database_and_releases_lock(chdb_dir):
    assert clickhouse_is_embedded("polymarket_clickhouse")
    with clickhouse_client("polymarket_clickhouse") as ch:
        assert ch.command("SELECT currentDatabase()") == "polymarket"
    # released: a second open succeeds at once
    t0 = time.monotonic()
    with clickhouse_client("polymarket_clickhouse") as ch:
        assert ch.command("SELECT 1") == 1
    assert time.monotonic() - t0 < 5


def test_embedded_clickhouse_is_exclusive(monkeypatch, chdb_dir):
    """A second opener waits for the first (the file lock) and times out clearly."""
    conn = json.loads(__import__("os").environ["AIRFLOW_CONN_POLYMARKET_CLICKHOUSE"])
    conn["extra"]["lock_timeout_seconds"] = 1
    monkeypatch.setenv("AIRFLOW_CONN_POLYMARKET_CLICKHOUSE", json.dumps(conn))
    errors = []
    with clickhouse_client("polymarket_clickhouse"):
        def other():
            try:
                with clickhouse_client("polymarket_clickhouse"):
                    pass
            except TimeoutError as exc:
                errors.append(str(exc))
        th = threading.Thread(target=other)
        th.start()
        th.join(10)
    assert errors and "locked by another process" in errors[0]


def test_clickhouse_server_that_is_not_there(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_POLYMARKET_CLICKHOUSE", json.dumps(
        {"conn_type": "generic", "host": "127.0.0.1", "port": 1, "schema": "default",
         "extra": {"connect_timeout": 2}}))
    assert not clickhouse_is_embedded("polymarket_clickhouse")
    with pytest.raises(Exception, match="(?i)connect|refused|1"):
        with clickhouse_client("polymarket_clickhouse") as ch:
            ch.command("SELECT 1")


def test_unreachable_postgres_names_the_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TELEMETRY_POSTGRES", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "schema": "telemetry"}))
    with pytest.raises(ConnectionError, match="telemetry_postgres"):
        with pg_connect("telemetry_postgres", connect_timeout=2):
            pass
