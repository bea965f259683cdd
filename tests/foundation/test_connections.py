"""Connections through the providers' hooks: embedded ClickHouse lock, clear errors for unreachable
databases and for a ClickHouse connection of the wrong type."""
from __future__ import annotations

import json
import threading
import time

import pytest

from dupguard.common.connections import clickhouse_client, clickhouse_is_embedded, pg_connect


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
    from clickhouse_connect.driver.exceptions import OperationalError

    monkeypatch.setenv("AIRFLOW_CONN_POLYMARKET_CLICKHOUSE", json.dumps(
        {"conn_type": "clickhouse", "host": "127.0.0.1", "port": 1, "schema": "default",
         "extra": {"connect_timeout": 2}}))
    assert not clickhouse_is_embedded("polymarket_clickhouse")
    with pytest.raises(OperationalError, match=r"(?i)127\.0\.0\.1:1\b.*(refused|connect)|(refused|connect).*127\.0\.0\.1:1\b"):
        with clickhouse_client("polymarket_clickhouse") as ch:
            ch.command("SELECT 1")


def test_clickhouse_connection_of_the_old_generic_type_says_what_to_change(monkeypatch, chdb_dir):
    monkeypatch.setenv("AIRFLOW_CONN_POLYMARKET_CLICKHOUSE", json.dumps(
        {"conn_type": "generic", "schema": "polymarket", "extra": {"chdb_path": str(chdb_dir)}}))
    with pytest.raises(ValueError, match="conn_type 'generic'.*needs conn_type 'clickhouse'"):
        with clickhouse_client("polymarket_clickhouse"):
            pass


def test_unreachable_postgres_names_the_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TELEMETRY_POSTGRES", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "schema": "telemetry",
         "extra": {"connect_timeout": 2}}))
    with pytest.raises(ConnectionError, match="telemetry_postgres.*127.0.0.1:1/telemetry"):
        with pg_connect("telemetry_postgres"):
            pass


def test_postgres_connection_comes_from_the_provider_hook_with_psycopg3(pg_cluster):
    import psycopg

    with pg_connect("telemetry_postgres", application_name="dupguard:probe") as conn:
        assert isinstance(conn, psycopg.Connection)
        assert conn.execute("SELECT current_setting('application_name'), current_database()").fetchone() == (
            "dupguard:probe", "telemetry")
