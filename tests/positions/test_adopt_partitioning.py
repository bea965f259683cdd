"""unified_positions_adopt_partitioning: the unpartitioned table moved to the open/resolved
partitioned shape online (dag.test against chDB): a re-run converges, a run stopped half-way
converges on the next run, rows written meanwhile are caught up, the gate refuses a copy
that lost a row, and the next refresh publishes by REPLACE PARTITION."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dupguard.common.gate import GateFailed
from dupguard.positions import gates, partitioning, tables
from tests.positions import scenario as sc
from tests.positions.conftest import ch

DAG_ID = "unified_positions_adopt_partitioning"


def lot(i, *, resolved=False):
    row = sc.stale_open_row(f"0xt{i:03d}", f"0xw{i % 9:02d}", f"0xc{i % 3}", i % 2)
    if resolved:
        row.update(resolved_at=sc.T0 + timedelta(days=3), is_closed=1)
    return row


ROWS = [lot(i, resolved=i % 3 == 0) for i in range(60)] + [lot(5)]   # one duplicate key: kept as it is


def load(db, rows=ROWS):
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
        db.create_unified(client, partitioned=False)
        db.insert_unified(client, rows)


def conf(db, **extra):
    return {"database": db.name, "max_bucket_fills": 10, **extra}


def table_names(client, db):
    return {r[0] for r in client.query(f"SELECT name FROM system.tables WHERE database = '{db.name}'").result_rows}


def assert_adopted(db, expected_rows):
    w = partitioning.work_tables(db.tables)
    with ch() as client:
        assert tables.is_open_partitioned(client, db.tables)
        got = db.rows(client)
        old = db.rows(client, w["old"])
        names = table_names(client, db)
        parts = tables.partitions(client, db.tables)
    want = sorted((sc.key(r), r["resolved_at"]) for r in expected_rows)
    assert sorted((sc.key(r), r["resolved_at"]) for r in got) == want
    assert sorted((sc.key(r), r["resolved_at"]) for r in old) == want      # the original, kept
    assert w["copy"] not in names and w["ledger"] not in names
    assert parts == {"0": sum(r["resolved_at"] is not None for r in expected_rows),
                     "1": sum(r["resolved_at"] is None for r in expected_rows)}


def test_adopt_then_rerun_changes_nothing_and_refresh_replaces_the_partition(db, run_dag):
    load(db)
    first = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=conf(db))
    assert first.state == "success", first.task_states
    assert first.returns["preflight"]["state"] == "to_adopt"
    assert first.returns["copy"]["ranges"] >= 7          # 61 rows / 10 per range, at least ADOPT_MIN_RANGES
    assert first.returns["quality_gate"]["row_difference"] == 0
    assert_adopted(db, ROWS)

    again = run_dag(DAG_ID, logical_date=sc.logical_date(1), conf=conf(db))
    assert again.state == "success", again.task_states
    assert again.returns["preflight"]["state"] == "adopted"
    assert again.returns["copy"] == {"skipped": "already partitioned"}
    assert again.returns["cleanup"]["old_kept"] and not again.returns["cleanup"]["old_dropped"]
    assert_adopted(db, ROWS)

    refresh = run_dag("unified_positions_refresh", logical_date=sc.logical_date(2),
                      conf={"database": db.name, "min_unresolved_rows": 1, "max_drop_ratio": 0})
    assert refresh.state == "success", refresh.task_states
    assert refresh.returns["publish"]["mode"] == "replace_partition"

    dropped = run_dag(DAG_ID, logical_date=sc.logical_date(3), conf=conf(db, drop_old=True))
    assert dropped.state == "success", dropped.task_states
    assert dropped.returns["cleanup"]["old_dropped"]
    with ch() as client:
        assert partitioning.work_tables(db.tables)["old"] not in table_names(client, db)


def test_a_run_stopped_half_way_converges_with_the_rows_written_meanwhile(db, run_dag, monkeypatch):
    load(db)
    real_mark, marks = partitioning._mark, []

    def crash_on_third_range(client, t, kind, entries):
        if kind == "done":
            marks.append(entries)
            if len(marks) == 3:   # the range's rows are inserted, its "done" mark never written
                raise RuntimeError("killed")
        real_mark(client, t, kind, entries)

    monkeypatch.setattr(partitioning, "_mark", crash_on_third_range)
    with ch() as client, pytest.raises(RuntimeError, match="killed"):
        partitioning.copy(client, db.tables, max_bucket_fills=10, mutation_timeout_s=60)
    monkeypatch.setattr(partitioning, "_mark", real_mark)
    added = lot(99)
    with ch() as client:
        assert len(db.rows(client, partitioning.work_tables(db.tables)["copy"])) > 0
        db.insert_unified(client, [added])                                  # written meanwhile
        client.command(f"ALTER TABLE {db.tables.q(db.tables.unified)} DELETE WHERE tx_hash = '0xt007'",
                       settings={"mutations_sync": 2})                       # removed meanwhile
    expected = [r for r in ROWS if r["tx_hash"] != "0xt007"] + [added]

    result = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=conf(db))
    assert result.state == "success", result.task_states
    assert result.returns["preflight"]["ranges_done_before"] == 2
    assert result.returns["copy"]["ranges_copied_now"] == result.returns["copy"]["ranges"] - 2
    assert result.returns["catch_up"]["ranges_recopied"]                   # the ranges of 0xt007 and 0xt099
    assert_adopted(db, expected)


def test_a_run_stopped_between_exchange_and_rename_converges(db, run_dag):
    load(db)
    w = partitioning.work_tables(db.tables)
    with ch() as client:
        partitioning.copy(client, db.tables, max_bucket_fills=10, mutation_timeout_s=60)
        client.command(f"EXCHANGE TABLES {db.tables.q(db.tables.unified)} AND {db.tables.q(w['copy'])}")
        assert partitioning.state(client, db.tables) == partitioning.EXCHANGED
    result = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=conf(db))
    assert result.state == "success", result.task_states
    assert result.returns["preflight"]["state"] == "exchanged"
    assert_adopted(db, ROWS)


def test_gate_refuses_a_copy_that_lost_a_row(db):
    load(db)
    with ch() as client:
        partitioning.copy(client, db.tables, max_bucket_fills=10, mutation_timeout_s=60)
        assert gates.adopt_gate(client, db.tables)["metrics"]["row_difference"] == 0
        copy_ = db.tables.q(partitioning.work_tables(db.tables)["copy"])
        client.command(f"ALTER TABLE {copy_} DELETE WHERE tx_hash = '0xt010'", settings={"mutations_sync": 2})
        with pytest.raises(GateFailed) as failed:
            gates.adopt_gate(client, db.tables)
        assert not tables.is_open_partitioned(client, db.tables)             # nothing exchanged
    failures = {f["column"] for f in failed.value.failures}
    assert {"row_difference", "rows_differ", "keys_differ"} <= failures


def test_dag_shape_pool_queue_and_trigger_form():
    from dupguard.common import settings
    from tests.airflow_helpers import get_dag

    dag = get_dag(DAG_ID)
    assert [t.task_id for t in dag.topological_sort()] == [
        "preflight", "copy", "catch_up", "quality_gate", "exchange", "cleanup"]
    assert {(t.pool, t.queue) for t in dag.tasks} == {(settings.CLICKHOUSE_POOL, settings.CLICKHOUSE_QUEUE)}
    assert dag.schedule is None and {"positions", "clickhouse", "migration"} <= set(dag.tags)
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name
        if dag.params[name] is None:
            assert "null" in param.schema["type"], name
    assert dag.params["drop_old"] is False and dag.params["database"] is None
