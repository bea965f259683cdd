"""The idempotent insert: NOT EXISTS without a unique index, ON CONFLICT with one."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from dupguard.telemetry.config import table_config
from dupguard.telemetry.insert import NOT_EXISTS, ON_CONFLICT, IdempotentInserter

T = datetime(2025, 3, 1, tzinfo=timezone.utc)
COLS = ["block_id", "stream_id", "process_id", "begin_time", "nb_objects", "insert_time"]


def row(bid, n=1):
    return {"block_id": bid, "stream_id": uuid.uuid4(), "process_id": None, "begin_time": T, "nb_objects": n,
            "insert_time": T}


def count(conn, bid):
    return conn.execute("SELECT count(*) FROM blocks WHERE block_id = %s", (bid,)).fetchone()[0]


def test_not_exists_insert_writes_once(tdb):
    ins = IdempotentInserter(tdb, table_config("blocks"), COLS)
    assert ins.mode == NOT_EXISTS
    bid = uuid.uuid4()
    assert ins.insert(row(bid)) is True
    assert ins.insert(row(bid, 2)) is False  # the client's retry
    assert count(tdb, bid) == 1
    assert tdb.execute("SELECT nb_objects FROM blocks WHERE block_id = %s", (bid,)).fetchone()[0] == 1


def test_switches_to_on_conflict_once_the_unique_index_is_valid(tdb):
    ins = IdempotentInserter(tdb, table_config("blocks"), COLS, recheck_seconds=0)
    tdb.execute("CREATE UNIQUE INDEX blocks_block_id_unique ON blocks (block_id)")
    assert ins.mode == ON_CONFLICT
    bid = uuid.uuid4()
    assert ins.insert(row(bid)) is True
    assert ins.insert(row(bid)) is False
    assert count(tdb, bid) == 1
    # the index goes away (rolled back migration): back to NOT EXISTS without failing
    ins.recheck_seconds = 3600
    tdb.execute("DROP INDEX blocks_block_id_unique")
    other = uuid.uuid4()
    assert ins.insert(row(other)) is True and ins.mode == NOT_EXISTS
    assert ins.insert(row(other)) is False and count(tdb, other) == 1


def test_invalid_unique_index_keeps_not_exists_mode(tdb):
    bid = uuid.uuid4()
    tdb.execute("INSERT INTO blocks (block_id) VALUES (%s), (%s)", (bid, bid))
    with pytest.raises(psycopg.errors.UniqueViolation):
        tdb.execute("CREATE UNIQUE INDEX CONCURRENTLY blocks_block_id_unique ON blocks (block_id)")
    ins = IdempotentInserter(tdb, table_config("blocks"), COLS)
    assert ins.mode == NOT_EXISTS  # ON CONFLICT would fail on every insert
    new = uuid.uuid4()
    assert ins.insert(row(new)) is True and ins.insert(row(new)) is False


def test_inside_a_caller_transaction(tdb, pg_cluster):
    with psycopg.connect(pg_cluster.dsn("telemetry")) as conn:
        ins = IdempotentInserter(conn, table_config("blocks"), COLS)
        bid = uuid.uuid4()
        assert ins.insert(row(bid)) and not ins.insert(row(bid))
        conn.commit()
    assert count(tdb, bid) == 1


def test_bad_input_is_refused(tdb):
    with pytest.raises(ValueError, match="no column"):
        IdempotentInserter(tdb, table_config("blocks"), ["block_id", "nope"])
    ins = IdempotentInserter(tdb, table_config("blocks"), COLS)
    with pytest.raises(ValueError, match="NULL block_id"):
        ins.insert(row(None))
