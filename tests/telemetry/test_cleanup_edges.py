"""Window rules, the unique-index skip, catch-up after downtime, bad configuration, the gate."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dupguard.common import settings
from dupguard.telemetry.catalog import render
from dupguard.telemetry.cleanup import cleanup_table
from dupguard.telemetry.config import TelemetryConfigError, TelemetryTable, table_config
from dupguard.telemetry.window import compute_window
from tests.telemetry.conftest import add_block, add_process, add_stream, rows_of

M = timedelta(minutes=1)
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


# --- window (pure) ------------------------------------------------------------
def test_window_is_the_lookback_without_history():
    w = compute_window(T0, None)
    assert (w.start, w.end, w.reason) == (T0 - 5 * M, T0, "lookback")


def test_window_ignores_a_recent_success():
    assert compute_window(T0, T0 - M).start == T0 - 5 * M


def test_window_reaches_back_to_the_last_success():
    w = compute_window(T0, T0 - 47 * M)
    assert (w.start, w.reason) == (T0 - 47 * M, "catch-up")


def test_window_catch_up_is_capped():
    w = compute_window(T0, T0 - timedelta(days=3))
    assert (w.start, w.reason) == (T0 - timedelta(hours=24), "capped")
    w = compute_window(T0, T0 - timedelta(days=3), lookback=10 * M, max_catchup=timedelta(hours=2))
    assert w.start == T0 - timedelta(hours=2)


def test_window_needs_a_logical_date():
    with pytest.raises(ValueError, match="logical date"):
        compute_window(None, None)


# --- DAG runs -----------------------------------------------------------------
def test_unique_index_skips_the_delete_but_not_the_gate(tdb, run_dag, logical_date):
    L = logical_date
    tdb.execute("CREATE UNIQUE INDEX blocks_block_id_unique ON blocks (block_id)")
    add_block(tdb, None, L - M)
    sid = add_stream(tdb, None, L - 2 * M)
    add_stream(tdb, sid, L - M)
    r = run_dag("blocks_duplicate_cleanup", logical_date=L)
    assert r.state == "success", r.task_states
    b = r.returns["delete_duplicate_blocks"]
    assert b["skipped"] is True and "blocks_block_id_unique" in b["reason"]
    assert r.returns["delete_duplicate_streams"]["rows_deleted"] == 1
    assert r.task_states["quality_gate"] == "success"
    assert "blocks_duplicate_ids" in str(r.returns["quality_gate"]["results"])


def test_catch_up_reaches_back_to_the_last_successful_run(tdb, run_dag, logical_date):
    L = logical_date
    first = run_dag("blocks_duplicate_cleanup", logical_date=L)
    assert first.state == "success"
    # the scheduler was down for 40 minutes: this pair is older than the next run's lookback
    pid = add_block(tdb, None, L + 10 * M, nb_objects=1)
    add_block(tdb, pid, L + 11 * M, nb_objects=2)
    nxt = run_dag("blocks_duplicate_cleanup", logical_date=L + 40 * M)
    assert nxt.state == "success"
    w = nxt.returns["delete_duplicate_blocks"]["window"]
    assert (w["start"], w["reason"]) == (L.isoformat(), "catch-up")
    assert rows_of(tdb, "blocks", "block_id", pid) == [(L + 10 * M, 1)]


def _tries(result, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(TaskInstance.try_number).filter(
            TaskInstance.dag_id == result.dag_id, TaskInstance.run_id == result.run_id,
            TaskInstance.task_id == task_id).scalar()


def test_missing_table_fails_its_task_only(tdb, run_dag, logical_date):
    L = logical_date
    bid = add_block(tdb, None, L - 2 * M)
    add_block(tdb, bid, L - M)
    pid = add_process(tdb, None, L - 2 * M)
    add_process(tdb, pid, L - M)
    tdb.execute("DROP TABLE streams")
    r = run_dag("blocks_duplicate_cleanup", logical_date=L)
    assert r.state == "failed"
    assert r.task_states["delete_duplicate_streams"] == "failed"
    assert _tries(r, "delete_duplicate_streams") == 1  # a missing table fails at once, no retry
    assert r.task_states["delete_duplicate_blocks"] == "success"
    assert r.task_states["delete_duplicate_processes"] == "success"
    assert len(rows_of(tdb, "blocks", "block_id", bid)) == 1
    assert len(rows_of(tdb, "processes", "process_id", pid)) == 1


def test_missing_table_and_column_errors_name_them(tdb):
    conn_id = settings.TELEMETRY_CONN_ID
    w = compute_window(T0, None)
    with pytest.raises(TelemetryConfigError, match=r"public\.nope does not exist"):
        cleanup_table(conn_id, TelemetryTable("nope", "public", "nope", "id"), w)
    with pytest.raises(TelemetryConfigError, match=r"column public\.blocks\.blockid does not exist"):
        cleanup_table(conn_id, TelemetryTable("blocks", "public", "blocks", "blockid"), w)
    with pytest.raises(TelemetryConfigError, match=r"column public\.blocks\.inserted does not exist"):
        cleanup_table(conn_id, TelemetryTable("blocks", "public", "blocks", "block_id", "inserted"), w)
    with pytest.raises(TelemetryConfigError, match="unknown telemetry table 'bloks'"):
        table_config("bloks")
    tdb.execute("DROP INDEX block_id")
    with pytest.raises(TelemetryConfigError, match=r"no index leads with public\.blocks\.block_id"):
        cleanup_table(conn_id, table_config("blocks"), w)


def test_unreachable_database_is_a_clear_error(monkeypatch):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_TELEMETRY_POSTGRES", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "schema": "telemetry"}))
    with pytest.raises(ConnectionError, match="telemetry_postgres"):
        cleanup_table(settings.TELEMETRY_CONN_ID, table_config("blocks"), compute_window(T0, None))


def test_gate_fails_when_duplicates_survive(tdb):
    from dupguard.common.gate import GateFailed
    from dupguard.telemetry.gates import window_gate

    bid = add_block(tdb, None, T0 - M)
    add_block(tdb, bid, T0 - 2 * M)
    with pytest.raises(GateFailed, match="blocks_duplicate_ids") as failed:
        window_gate(settings.TELEMETRY_CONN_ID, compute_window(T0, None))
    assert failed.value.summary["offending"] == [f"public.blocks.block_id={bid}"]  # the alert names the id
    assert str(bid) in str(failed.value)


def test_lock_timeout_fails_instead_of_waiting(tdb, pg_cluster):
    """A transaction holding the table makes the delete fail fast with lock_timeout."""
    import psycopg

    bid = add_block(tdb, None, T0 - M)
    add_block(tdb, bid, T0 - 2 * M)
    with psycopg.connect(pg_cluster.dsn("telemetry")) as holder:
        holder.execute("LOCK TABLE blocks IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            cleanup_table(settings.TELEMETRY_CONN_ID, table_config("blocks"),
                                    compute_window(T0, None), lock_timeout_ms=300)
        holder.rollback()
    assert len(rows_of(tdb, "blocks", "block_id", bid)) == 2


def test_cleanup_probes_through_the_id_index(tdb):
    """On a table large enough for the planner to care, the copies are found by an index scan
    on the id index, not a sequential scan."""
    tdb.execute("""INSERT INTO blocks (block_id, insert_time)
                   SELECT gen_random_uuid(), timestamptz '2025-01-01' + g * interval '50 ms'
                   FROM generate_series(1, 200000) g""")
    tdb.execute("ANALYZE blocks")
    tbl = table_config("blocks")
    w = compute_window(datetime(2025, 1, 1, 2, tzinfo=timezone.utc), None)
    query = render("cleanup/delete_window_duplicates.sql", tbl)
    with tdb.transaction():
        plan = "\n".join(r[0] for r in tdb.execute(
            b"EXPLAIN " + query.as_bytes(tdb), {"window_start": w.start, "window_end": w.end}))
    assert "Seq Scan" not in plan, plan
    assert "using block_id on blocks" in plan, plan
