"""Database clients built from Airflow connections.

PostgreSQL: psycopg 3 connections (values bound, identifiers composed with
``psycopg.sql``). ClickHouse: a clickhouse-connect client, embedded chDB when the
connection's extra names ``chdb_path``, HTTP(S) otherwise.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)


def get_connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


# --- PostgreSQL -----------------------------------------------------------
def pg_conninfo(conn_id: str) -> str:
    c = get_connection(conn_id)
    user = quote(c.login or "postgres", safe="")
    pw = f":{quote(c.password, safe='')}" if c.password else ""
    host = c.host or "localhost"
    port = c.port or 5432
    db = c.schema or "postgres"
    extra = c.extra_dejson or {}
    params = {k: v for k, v in extra.items() if k in ("sslmode", "sslrootcert", "sslcert", "sslkey", "options")}
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return f"postgresql://{user}{pw}@{host}:{port}/{quote(db, safe='')}" + (f"?{query}" if query else "")


def sqlalchemy_url(conn_id: str) -> str:
    """SQLAlchemy URL (psycopg2 driver) for great-expectations' SQL datasource."""
    return pg_conninfo(conn_id).replace("postgresql://", "postgresql+psycopg2://", 1)


@contextlib.contextmanager
def pg_connect(conn_id: str, *, autocommit: bool = False, application_name: str = "dupguard",
               connect_timeout: int = 10) -> Iterator[Any]:
    """A psycopg connection; a clear error when the database cannot be reached."""
    import psycopg

    info = pg_conninfo(conn_id)
    try:
        conn = psycopg.connect(info, autocommit=autocommit, application_name=application_name,
                               connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        c = get_connection(conn_id)
        raise ConnectionError(
            f"cannot reach PostgreSQL for connection '{conn_id}' at {c.host}:{c.port}/{c.schema}: {exc}"
        ) from exc
    try:
        yield conn
    finally:
        conn.close()


# --- ClickHouse -----------------------------------------------------------
def clickhouse_is_embedded(conn_id: str) -> bool:
    try:
        return bool((get_connection(conn_id).extra_dejson or {}).get("chdb_path"))
    except Exception:  # connection not defined: not embedded as far as we know
        return False


@contextlib.contextmanager
def clickhouse_client(conn_id: str) -> Iterator[Any]:
    """clickhouse-connect client for ``conn_id``; always closed on exit.

    Embedded mode opens chDB at ``extra.chdb_path``. chDB lets one process at a time
    open a data directory: the Airflow pool serialises tasks, and an exclusive file
    lock next to the directory guards any other process (a test, a CLI) as well.
    """
    import clickhouse_connect

    c = get_connection(conn_id)
    extra = c.extra_dejson or {}
    database = c.schema or "default"
    chdb_path = extra.get("chdb_path")
    if chdb_path:
        path = Path(chdb_path)
        path.mkdir(parents=True, exist_ok=True)
        lock_file = open(str(path) + ".lock", "w")
        timeout = float(extra.get("lock_timeout_seconds", 600))
        _lock(lock_file, timeout, path)
        try:
            boot = clickhouse_connect.get_client(interface="chdb", path=str(path))
            try:
                boot.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            finally:
                boot.close()
            client = clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)
            try:
                yield client
            finally:
                client.close()
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()
        return
    secure = str(extra.get("secure", "false")).lower() in ("1", "true", "yes")
    client = clickhouse_connect.get_client(
        host=c.host or "localhost",
        port=c.port or (8443 if secure else 8123),
        username=c.login or "default",
        password=c.password or "",
        database=database,
        secure=secure,
        connect_timeout=int(extra.get("connect_timeout", 10)),
        send_receive_timeout=int(extra.get("send_receive_timeout", 3600)),
    )
    try:
        yield client
    finally:
        client.close()


def _lock(lock_file, timeout: float, path: Path) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"embedded ClickHouse directory {path} is locked by another process "
                                   f"for more than {timeout:.0f}s")
            time.sleep(0.2)
