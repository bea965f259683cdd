"""blocks_duplicate_cleanup run with dag.test() against real PostgreSQL.

One scenario holds every case of the issue; each test asserts one of them on the state the
run left behind.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from dupguard.common import settings
from tests.telemetry.conftest import (add_block, add_process, add_stream, rows_of, total_duplicate_ids)

L = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)  # later than every other test's dates
M = timedelta(minutes=1)


@pytest.fixture(scope="module")
def scenario(pg_cluster, run_dag):
    conn = psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True)
    conn.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
    conn.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
    # a successful run a minute earlier, on the empty tables: the window under test is the plain
    # lookback whatever runs other test modules left in the metadata database
    assert run_dag("blocks_duplicate_cleanup", logical_date=L - M).state == "success"
    ids = {}
    # a pair inside the window: the older copy (nb_objects=1) must survive
    ids["pair"] = add_block(conn, None, L - 3 * M, nb_objects=1)
    add_block(conn, ids["pair"], L - 2 * M, nb_objects=2)
    # a triple: keep the oldest
    ids["triple"] = add_block(conn, None, L - 4 * M, nb_objects=1)
    add_block(conn, ids["triple"], L - 3 * M, nb_objects=2)
    add_block(conn, ids["triple"], L - 1 * M, nb_objects=3)
    # identical insert_time, fully identical rows: exactly one survives
    ids["tie"] = add_block(conn, None, L - 2 * M, nb_objects=7)
    add_block(conn, ids["tie"], L - 2 * M, nb_objects=7)
    # the first copy is two hours older than the window: the old one survives
    ids["old_first"] = add_block(conn, None, L - 120 * M, nb_objects=1)
    add_block(conn, ids["old_first"], L - 1 * M, nb_objects=2)
    # a copy with a NULL insert_time next to a timed row in the window: the timed row survives
    ids["null_copy"] = add_block(conn, None, None, nb_objects=2)
    add_block(conn, ids["null_copy"], L - 1 * M, nb_objects=1)
    # all rows far in the past: not the per-minute run's business (the index DAG removes them)
    ids["ancient"] = add_block(conn, None, L - timedelta(days=3), nb_objects=1)
    add_block(conn, ids["ancient"], L - timedelta(days=3) + M, nb_objects=2)
    # only NULL-time rows: never in any window, left alone
    ids["null_only"] = add_block(conn, None, None, nb_objects=1)
    add_block(conn, ids["null_only"], None, nb_objects=2)
    # a duplicate just after the window end (belongs to the next run)
    ids["future"] = add_block(conn, None, L, nb_objects=1)
    add_block(conn, ids["future"], L + M, nb_objects=2)
    # non-duplicates, inside and outside the window
    singles = [add_block(conn, None, L - (i % 9) * M - timedelta(seconds=7), nb_objects=i) for i in range(60)]
    singles += [add_block(conn, None, None, nb_objects=99)]
    # streams and processes
    ids["stream"] = add_stream(conn, None, L - 2 * M, tags=("first",))
    add_stream(conn, ids["stream"], L - M, tags=("retry",))
    add_stream(conn, ids["stream"], None, tags=("null",))
    ids["process"] = add_process(conn, None, L - 30 * M, exe="first")
    add_process(conn, ids["process"], L - M, exe="retry")
    single_stream = add_stream(conn, None, L - M, tags=("single",))
    single_process = add_process(conn, None, L - M, exe="single")
    before = conn.execute("SELECT block_id, nb_objects, insert_time FROM blocks WHERE block_id = ANY(%s) "
                          "ORDER BY 1", (singles,)).fetchall()
    result = run_dag("blocks_duplicate_cleanup", logical_date=L)
    yield {"conn": conn, "ids": ids, "result": result, "singles": singles, "before_singles": before,
           "single_stream": single_stream, "single_process": single_process}
    conn.close()


def blocks(s, key):
    return rows_of(s["conn"], "blocks", "block_id", s["ids"][key])


def test_run_succeeds_with_all_tasks(scenario):
    r = scenario["result"]
    assert r.state == "success", r.task_states
    assert r.task_states == {"delete_duplicate_blocks": "success", "delete_duplicate_streams": "success",
                             "delete_duplicate_processes": "success", "quality_gate": "success"}


def test_pair_in_window_keeps_the_older(scenario):
    assert blocks(scenario, "pair") == [(L - 3 * M, 1)]


def test_triple_keeps_the_oldest(scenario):
    assert blocks(scenario, "triple") == [(L - 4 * M, 1)]


def test_tie_on_insert_time_leaves_one(scenario):
    assert blocks(scenario, "tie") == [(L - 2 * M, 7)]


def test_first_copy_older_than_window_survives(scenario):
    assert blocks(scenario, "old_first") == [(L - 120 * M, 1)]


def test_null_insert_time_copy_is_deleted(scenario):
    assert blocks(scenario, "null_copy") == [(L - M, 1)]


def test_rows_outside_any_window_are_left_to_the_index_dag(scenario):
    assert [n for _, n in blocks(scenario, "ancient")] == [1, 2]
    assert [n for _, n in blocks(scenario, "null_only")] == [1, 2]
    assert [n for _, n in blocks(scenario, "future")] == [1, 2]


def test_non_duplicates_untouched(scenario):
    conn = scenario["conn"]
    after = conn.execute("SELECT block_id, nb_objects, insert_time FROM blocks WHERE block_id = ANY(%s) "
                         "ORDER BY 1", (scenario["singles"],)).fetchall()
    assert after == scenario["before_singles"] and len(after) == 61


def test_streams_and_processes(scenario):
    conn = scenario["conn"]
    assert rows_of(conn, "streams", "stream_id", scenario["ids"]["stream"]) == [(L - 2 * M, ["first"])]
    assert rows_of(conn, "processes", "process_id", scenario["ids"]["process"]) == [(L - 30 * M, "first")]
    assert len(rows_of(conn, "streams", "stream_id", scenario["single_stream"])) == 1
    assert len(rows_of(conn, "processes", "process_id", scenario["single_process"])) == 1


def test_report_is_the_return_value(scenario):
    ret = scenario["result"].returns
    b = ret["delete_duplicate_blocks"]
    # pair 1 + triple 2 + tie 1 + old_first 1 + null_copy 1
    assert (b["rows_deleted"], b["ids_affected"], b["skipped"]) == (6, 5, False)
    assert b["window"]["start"] == (L - 5 * M).isoformat() and b["window"]["end"] == L.isoformat()
    assert b["window"]["reason"] == "lookback"
    assert b["table"] == "public.blocks"
    assert (ret["delete_duplicate_streams"]["rows_deleted"], ret["delete_duplicate_processes"]["rows_deleted"]) == (2, 1)
    assert ret["quality_gate"]["success"] is True


def test_rerun_converges(scenario, run_dag):
    conn = scenario["conn"]
    snapshot = conn.execute("SELECT block_id, nb_objects, insert_time FROM blocks ORDER BY 1, 2, 3").fetchall()
    again = run_dag("blocks_duplicate_cleanup", logical_date=L)
    assert again.state == "success"
    assert again.returns["delete_duplicate_blocks"]["rows_deleted"] == 0
    assert conn.execute("SELECT block_id, nb_objects, insert_time FROM blocks ORDER BY 1, 2, 3").fetchall() == snapshot
    # only the out-of-window duplicates remain
    assert total_duplicate_ids(conn, "blocks", "block_id") == 3


def test_gate_ignores_a_retry_that_lands_after_the_window(tdb):
    """Live traffic: a retry of a window id inserted after the window's end (between the delete
    and the gate) belongs to the next run's window; the gate must not fail on it, and must
    still fail on a copy inside the window."""
    from dupguard.common.gate import GateFailed
    from dupguard.telemetry.gates import window_gate
    from dupguard.telemetry.window import Window

    end = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)
    window = Window(end - timedelta(minutes=5), end, "lookback")
    bid = add_block(tdb, None, end - timedelta(seconds=20))
    add_block(tdb, bid, end + timedelta(seconds=15))  # the client's retry, after the window closed
    summary = window_gate(settings.TELEMETRY_CONN_ID, window)
    assert summary["success"]
    add_block(tdb, bid, end - timedelta(seconds=5))  # a copy inside the window: a real leftover
    with pytest.raises(GateFailed, match="blocks_duplicate_ids"):
        window_gate(settings.TELEMETRY_CONN_ID, window)
