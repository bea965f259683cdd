"""Database clients from Airflow connections, through the providers' hooks.

PostgreSQL: ``PostgresHook`` (postgres provider, psycopg 3); values bound, identifiers composed
with ``psycopg.sql``. ClickHouse: ``ClickHouseHook`` (``apache-airflow-providers-clickhousedb``,
connection type ``clickhouse``) on clickhouse-connect; the embedded engine (chDB) is an option of
the same connection: ``extra.chdb_path`` names its data directory.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: libpq waits forever for an unreachable host unless told otherwise; a connection's own
#: ``extra.connect_timeout`` wins.
DEFAULT_CONNECT_TIMEOUT_S = 10


def get_connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


# --- PostgreSQL -----------------------------------------------------------
def postgres_hook(conn_id: str, *, application_name: str = "dupguard"):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id, options=f"-c application_name={application_name}")


def sqlalchemy_url(conn_id: str) -> str:
    """SQLAlchemy URL of ``conn_id`` for great-expectations' SQL datasource (psycopg2 driver, which
    is what GX's SQLAlchemy dialect is tested with)."""
    url = postgres_hook(conn_id).sqlalchemy_url.set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def pg_connect(conn_id: str, *, autocommit: bool = False, application_name: str = "dupguard") -> Iterator[Any]:
    """A psycopg 3 connection from ``PostgresHook``, always closed; a clear error naming the
    connection when the database cannot be reached."""
    import psycopg

    hook = postgres_hook(conn_id, application_name=application_name)
    conn_obj = hook.connection
    if "connect_timeout" not in (conn_obj.extra_dejson or {}):
        conn_obj.extra = _with_extra(conn_obj, connect_timeout=DEFAULT_CONNECT_TIMEOUT_S)
    try:
        conn = hook.get_conn()
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot reach PostgreSQL for connection '{conn_id}' at "
                              f"{conn_obj.host}:{conn_obj.port}/{conn_obj.schema}: {exc}") from exc
    if not isinstance(conn, psycopg.Connection):  # pragma: no cover - psycopg2 fallback of the provider
        conn.close()
        raise RuntimeError("PostgresHook returned a psycopg2 connection; dupguard needs psycopg 3 "
                           "(install psycopg[binary] and SQLAlchemy 2)")
    try:
        conn.autocommit = autocommit
        yield conn
    finally:
        conn.close()


def _with_extra(conn_obj, **values: Any) -> str:
    import json

    return json.dumps({**(conn_obj.extra_dejson or {}), **values})


# --- ClickHouse -----------------------------------------------------------
def _clickhouse_hook_class():
    from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook

    class DupguardClickHouseHook(ClickHouseHook):
        """``ClickHouseHook`` whose client is the embedded engine when ``extra.chdb_path`` is set."""

        def get_client(self):
            import clickhouse_connect

            conn = self.get_connection(self.get_conn_id())
            path = (conn.extra_dejson or {}).get("chdb_path")
            if not path:
                return super().get_client()
            database = self.database or conn.schema or "default"
            boot = clickhouse_connect.get_client(interface="chdb", path=str(path))
            try:
                boot.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            finally:
                boot.close()
            return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)

    return DupguardClickHouseHook


def clickhouse_hook(conn_id: str):
    """The ClickHouse hook for ``conn_id``; refuses a connection of another type with the fix."""
    conn = get_connection(conn_id)
    if conn.conn_type != "clickhouse":
        raise ValueError(
            f"connection '{conn_id}' has conn_type '{conn.conn_type}'; dupguard needs conn_type 'clickhouse' "
            f"(apache-airflow-providers-clickhousedb). Change it, e.g. AIRFLOW_CONN_{conn_id.upper()}="
            '\'{"conn_type": "clickhouse", "host": ..., "port": 8123, "login": ..., "password": ..., '
            '"schema": "<database>"}\' (or "extra": {"chdb_path": "<dir>"} for the embedded engine)')
    return _clickhouse_hook_class()(clickhouse_conn_id=conn_id)


def clickhouse_is_embedded(conn_id: str) -> bool:
    try:
        return bool((get_connection(conn_id).extra_dejson or {}).get("chdb_path"))
    except Exception:  # connection not defined: not embedded as far as we know
        return False


@contextlib.contextmanager
def clickhouse_client(conn_id: str) -> Iterator[Any]:
    """clickhouse-connect client of ``conn_id`` from the hook; always closed on exit.

    The embedded engine lets one process at a time open a data directory: Airflow serialises its
    tasks (the ``clickhouse_embedded`` pool, one Celery queue served by one worker), and an
    exclusive file lock next to the directory guards any other process (a test, a CLI) as well.
    """
    hook = clickhouse_hook(conn_id)
    extra = hook.get_connection(conn_id).extra_dejson or {}
    with contextlib.ExitStack() as stack:
        chdb_path = extra.get("chdb_path")
        if chdb_path:
            stack.enter_context(_dir_lock(Path(chdb_path), float(extra.get("lock_timeout_seconds", 600))))
        client = hook.get_client()
        stack.callback(client.close)
        yield client


@contextlib.contextmanager
def _dir_lock(path: Path, timeout: float) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as lock_file:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"embedded ClickHouse directory {path} is locked by another process "
                                       f"for more than {timeout:.0f}s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
