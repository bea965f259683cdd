"""unified_positions_refresh end to end with dag.test() against chDB."""
from __future__ import annotations

import pytest

from dupguard.positions import config, mutations, tables
from tests.positions import scenario as sc
from tests.positions.conftest import ch

DAG_ID = "unified_positions_refresh"
ALL_TASKS = ("preflight", "build", "quality_gate_staging", "publish", "quality_gate_health", "report")


def load(db, *, table: str | None, published=()):
    """Sources; the unified table absent (None), or production's/the DAG's shape with rows."""
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
        if table is not None:
            db.create_unified(client, partitioned=(table == "partitioned"))
            db.insert_unified(client, list(published))


def test_first_run_creates_partitioned_table_with_every_open_lot(db, run_dag):
    load(db, table=None)
    result = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=db.conf())
    assert result.state == "success", result.task_states
    assert all(result.task_states[t] == "success" for t in ALL_TASKS)
    with ch() as client:
        assert tables.is_open_partitioned(client, db.tables)
        rows = db.rows(client)
    assert sc.assert_rows_equal(rows, sc.expected(sc.fills(), sc.resolutions(), {"0xcA", "0xcR"})) is None
    assert result.returns["publish"]["mode"] == "replace_partition"
    rep = result.returns["report"]
    assert rep["before"] == {"total": 0, "unresolved": 0}
    assert rep["after"]["unresolved"] == len(rows) and rep["rows_per_partition"] == {"1": len(rows)}


@pytest.mark.parametrize("shape", ["partitioned", "unpartitioned"])
def test_refresh_repairs_table_then_moves_a_resolving_market(db, run_dag, shape):
    # before: the quiet wallet's open lots are missing, one open lot is there twice and
    # stale, and a resolved row of another market sits in the table
    load(db, table=shape, published=[sc.archived_row(), sc.stale_open_row(), sc.stale_open_row(),
                                     sc.stale_open_row("0xr1", "0xactive", "0xcR", 1)])
    first = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=db.conf())
    assert first.state == "success", first.task_states
    assert first.returns["publish"]["mode"] == (
        "replace_partition" if shape == "partitioned" else "delete_mutation_then_insert")
    if shape == "unpartitioned":
        assert first.returns["publish"]["mutation_id"].startswith("mutation_")
    open_expected = sc.expected(sc.fills(), sc.resolutions(), {"0xcA", "0xcR"})
    with ch() as client:
        rows = db.rows(client)
    assert [r for r in rows if r["resolved_at"] is not None] == [
        {**sc.archived_row(), "entry_time": sc.T0}]
    sc.assert_rows_equal([r for r in rows if r["resolved_at"] is None], open_expected)
    assert ("0xq1", "0xquiet", "0xcA", 0) in {sc.key(r) for r in rows}      # the quiet wallet is back

    # between runs the market 0xcR resolves (outcome 1 wins)
    res = [*sc.resolutions(), sc.resolution_of_cR()]
    with ch() as client:
        db.insert_resolutions(client, [sc.resolution_of_cR()])
    second = run_dag(DAG_ID, logical_date=sc.logical_date(1), conf=db.conf())
    assert second.state == "success", second.task_states
    assert second.returns["build"]["staged_resolved"] == 2
    with ch() as client:
        rows = db.rows(client)
    want = {**sc.expected(sc.fills(), res, {"0xcA", "0xcR"})}
    want[sc.key(sc.archived_row())] = {**sc.archived_row(), "entry_time": sc.T0}
    sc.assert_rows_equal(rows, want)   # 0xcR lots now resolved, exactly once, never open
    moved = [r for r in rows if r["condition_id"] == "0xcR"]
    assert len(moved) == 2 and all(r["resolved_at"] is not None and r["is_closed"] == 1 for r in moved)

    # a third run changes nothing (idempotent, the moved lots are not inserted twice)
    third = run_dag(DAG_ID, logical_date=sc.logical_date(2), conf=db.conf())
    assert third.state == "success", third.task_states
    with ch() as client:
        assert db.rows(client) == rows


@pytest.mark.parametrize("conf", [{"min_unresolved_rows": 10**9}, {"max_drop_ratio": 0.9}],
                         ids=["too_few_open_rows", "too_big_a_drop"])
def test_failing_staging_gate_publishes_nothing(db, run_dag, smtp_sink, conf):
    # 20 published open lots of a market nobody holds any more: a rebuild keeps 6 of 26
    padding = [sc.stale_open_row(f"0xpad{i}", "0xgone", "0xcA", 0) for i in range(20)]
    load(db, table="unpartitioned", published=[sc.archived_row(), sc.stale_open_row(), *padding])
    with ch() as client:
        before = db.rows(client)
    result = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=db.conf(**conf))
    assert result.state == "failed"
    assert result.task_states["quality_gate_staging"] == "failed"
    assert result.task_states["publish"] == "upstream_failed"
    with ch() as client:
        assert db.rows(client) == before
        issued = mutations.fetch_mutations(client, db.name, config.UNIFIED_TABLE)
    assert issued == []                                      # no DELETE was even issued
    assert any("quality_gate_staging" in m["subject"] for m in smtp_sink.wait_for(1))


def test_stale_source_fails_preflight_and_touches_nothing(db, run_dag):
    load(db, table="partitioned", published=[sc.archived_row()])
    result = run_dag(DAG_ID, logical_date=sc.logical_date(48), conf=db.conf())
    assert result.state == "failed"
    assert result.task_states["preflight"] == "failed"
    assert result.task_states["build"] == "upstream_failed"
    with ch() as client:
        assert len(db.rows(client)) == 1
