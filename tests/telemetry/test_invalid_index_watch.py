"""The INVALID unique index watch (real PostgreSQL): a killed ``CREATE UNIQUE INDEX
CONCURRENTLY`` leaves an INVALID unique index that still rejects writers' new rows. The
per-minute cleanup and dedup_health_daily find it, drop it CONCURRENTLY, report it and alert.

Fixture: a unique index built and then marked INVALID in pg_index (superuser): the state a
build killed during its validation phase leaves."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from dupguard.common import settings
from dupguard.health import checks
from dupguard.telemetry import config
from dupguard.telemetry.cleanup import InvalidIndexDropped, cleanup_table
from dupguard.telemetry.window import compute_window
from tests.telemetry.conftest import add_block, id_index_state

T = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def plant_invalid_unique_index(conn, table="blocks", col="block_id", name="blocks_block_id_unique"):
    """A built unique index marked INVALID (ready, maintained, enforcing): what a build killed in
    its validation phase leaves. (A build that fails on a duplicate leaves an unready one, which
    does not reject rows: checked first, it is the other leftover the watch drops.)"""
    dup = add_block(conn, insert_time=T - timedelta(minutes=3))
    add_block(conn, dup, T - timedelta(minutes=2))
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name}_failed ON {table} ({col})")
    assert (f"{name}_failed", True, False) in id_index_state(conn, table, col)
    conn.execute(f"DROP INDEX {name}_failed")
    conn.execute(f"DELETE FROM {table} WHERE ctid = (SELECT max(ctid) FROM {table} WHERE {col} = %s)", (dup,))
    conn.execute(f"CREATE UNIQUE INDEX {name} ON {table} ({col})")
    conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (name,))
    assert id_index_state(conn, table, col)[-1] == (name, True, False)
    # the hazard: a writer's retried insert of an existing id is rejected by the INVALID index
    with pytest.raises(psycopg.errors.UniqueViolation):
        add_block(conn, dup, T - timedelta(minutes=1))
    return dup


def test_cleanup_drops_the_invalid_unique_index_reports_and_alerts(tdb):
    dup = plant_invalid_unique_index(tdb)
    window = compute_window(T, None)
    with pytest.raises(InvalidIndexDropped, match=r"dropped INVALID index\(es\) \['blocks_block_id_unique'\]"):
        cleanup_table(settings.TELEMETRY_CONN_ID, config.table_config("blocks"), window)
    assert [name for name, _, valid in id_index_state(tdb, "blocks", "block_id") if not valid] == []
    # writers work again (the retried insert lands; the next cleanup removes the copy)
    add_block(tdb, dup, T - timedelta(seconds=30))
    assert tdb.execute("SELECT count(*) FROM blocks WHERE block_id = %s", (dup,)).fetchone()[0] == 2
    # the next run is clean: nothing to drop, no alert, the watch is in the report
    out = cleanup_table(settings.TELEMETRY_CONN_ID, config.table_config("blocks"), window)
    assert out["invalid_index_watch"] == {"invalid_indexes": [], "dropped": [], "build_in_progress": False}
    assert out["rows_deleted"] == 1


def test_cleanup_leaves_a_running_build_alone(tdb, pg_cluster):
    """A build in progress is INVALID too: the watch must not drop it (pg_stat_progress_create_index)."""
    tdb.execute("INSERT INTO blocks (block_id, stream_id, process_id, insert_time) "
                "SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), now() FROM generate_series(1, 200000)")
    holder = psycopg.connect(pg_cluster.dsn("telemetry"))
    holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT count(*) FROM streams")   # an old snapshot: the ready build waits for it
    builder = psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True)
    build = threading.Thread(target=lambda: builder.execute(
        "CREATE UNIQUE INDEX CONCURRENTLY blocks_block_id_unique ON blocks (block_id)"))
    build.start()
    try:
        for _ in range(100):
            if tdb.execute("SELECT count(*) FROM pg_stat_progress_create_index "
                           "WHERE phase = 'waiting for old snapshots'").fetchone()[0]:
                break
            build.join(0.05)
        out = cleanup_table(settings.TELEMETRY_CONN_ID, config.table_config("blocks"), compute_window(T, None))
        assert out["invalid_index_watch"]["invalid_indexes"] == ["blocks_block_id_unique"]
        assert out["invalid_index_watch"]["build_in_progress"] and out["invalid_index_watch"]["dropped"] == []
    finally:
        holder.rollback()
        holder.close()
        build.join(60)
        builder.close()
    assert id_index_state(tdb, "blocks", "block_id")[-1] == ("blocks_block_id_unique", True, True)


def test_health_drops_reports_and_fails_its_gate(tdb):
    plant_invalid_unique_index(tdb)
    with pytest.raises(Exception, match="invalid_indexes_dropped") as failed:
        checks.telemetry_health(settings.TELEMETRY_CONN_ID, T + timedelta(days=10))
    assert type(failed.value).__name__ == "GateFailed"
    assert [name for name, _, valid in id_index_state(tdb, "blocks", "block_id") if not valid] == []
    out = checks.telemetry_health(settings.TELEMETRY_CONN_ID, T + timedelta(days=10))   # clean the next day
    assert {r["table"]: r["invalid_indexes_dropped"] for r in out["tables"]}["public.blocks"] == []
