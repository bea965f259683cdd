"""Telemetry fixtures: a fresh telemetry schema per test in the session's PostgreSQL."""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from dupguard.common import settings

TABLES = ("blocks", "streams", "processes")
_dates = itertools.count()


@pytest.fixture()
def tdb(pg_cluster):
    """Autocommit connection to the ``telemetry`` database with the tables freshly created."""
    conn = psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True)
    conn.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
    conn.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture()
def logical_date() -> datetime:
    """A logical date no earlier test used, and earlier than all of them: no previous
    successful run exists before it, so the window is the plain lookback."""
    return datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc) - timedelta(days=3 * next(_dates))


def add_block(conn, block_id=None, insert_time=None, *, nb_objects=1, payload_size=100, stream_id=None):
    block_id = block_id or uuid.uuid4()
    conn.execute(
        "INSERT INTO blocks (block_id, stream_id, process_id, begin_time, end_time, nb_objects, payload_size,"
        " insert_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (block_id, stream_id or uuid.UUID(int=1), uuid.UUID(int=2), insert_time, insert_time, nb_objects,
         payload_size, insert_time))
    return block_id


def add_stream(conn, stream_id=None, insert_time=None, *, tags=("a",)):
    stream_id = stream_id or uuid.uuid4()
    conn.execute("INSERT INTO streams (stream_id, process_id, tags, insert_time) VALUES (%s, %s, %s, %s)",
                 (stream_id, uuid.UUID(int=2), list(tags), insert_time))
    return stream_id


def add_process(conn, process_id=None, insert_time=None, *, exe="app"):
    process_id = process_id or uuid.uuid4()
    conn.execute("INSERT INTO processes (process_id, exe, insert_time) VALUES (%s, %s, %s)",
                 (process_id, exe, insert_time))
    return process_id


def rows_of(conn, table: str, id_col: str, ident) -> list[tuple]:
    """(insert_time, marker column) of every row of one id, ordered by time."""
    marker = {"blocks": "nb_objects", "streams": "tags", "processes": "exe"}[table]
    return conn.execute(
        f"SELECT insert_time, {marker} FROM {table} WHERE {id_col} = %s ORDER BY insert_time NULLS LAST, ctid",
        (ident,)).fetchall()


def total_duplicate_ids(conn, table: str, id_col: str) -> int:
    return conn.execute(
        f"SELECT count(*) FROM (SELECT {id_col} FROM {table} WHERE {id_col} IS NOT NULL GROUP BY 1 "
        f"HAVING count(*) > 1) d").fetchone()[0]


def id_index_state(conn, table: str, id_col: str) -> list[tuple]:
    """(index name, unique, valid) of the indexes whose only key is the id column."""
    return conn.execute(
        "SELECT c.relname, i.indisunique, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = %s::regclass AND i.indnkeyatts = 1 AND a.attname = %s ORDER BY 1",
        (table, id_col)).fetchall()
