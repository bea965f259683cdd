"""unified_positions_rollback end to end (dag.test against chDB): two publishes, then the
rollback puts the first publish's open part back."""
from __future__ import annotations

import pytest

from tests.positions import scenario as sc
from tests.positions.conftest import ch, fill

REFRESH = "unified_positions_refresh"
ROLLBACK = "unified_positions_rollback"


def refresh(db, run_dag, hours_later: float) -> None:
    result = run_dag(REFRESH, logical_date=sc.logical_date(hours_later), conf=db.conf())
    assert result.state == "success", result.task_states


def split(rows):
    return ([r for r in rows if r["resolved_at"] is None], [r for r in rows if r["resolved_at"] is not None])


@pytest.mark.parametrize("shape", ["partitioned", "unpartitioned"])
def test_rollback_restores_the_first_publish_open_part(db, run_dag, shape):
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
        if shape == "unpartitioned":   # production's shape; the first refresh creates the partitioned one
            db.create_unified(client, partitioned=False)
            db.insert_unified(client, [sc.archived_row()])
    refresh(db, run_dag, 0)
    with ch() as client:
        first_open, first_resolved = split(db.rows(client))
        # new trades between the runs: a new lot, and a sell that changes a quiet lot's FIFO
        db.insert_fills(client, [fill("0xactive", "0xcA", 0, 20, -9.0, sc.RECENT + 30, tx="0xa4"),
                                 fill("0xquiet", "0xcA", 0, -10, 4.0, sc.RECENT + 40)])
    refresh(db, run_dag, 1)
    with ch() as client:
        second_open, _ = split(db.rows(client))
    assert second_open != first_open and len(second_open) == len(first_open) + 1

    result = run_dag(ROLLBACK, logical_date=sc.logical_date(2), conf=db.conf())
    assert result.state == "success", result.task_states
    assert result.task_states == {"rollback_open": "success", "quality_gate_health": "success"}
    with ch() as client:
        rolled_open, rolled_resolved = split(db.rows(client))
    assert rolled_open == first_open
    assert rolled_resolved == first_resolved
    out = result.returns["rollback_open"]
    assert out["restored_open_rows"] == len(first_open) and out["skipped_resolved_since"] == 0
    assert out["mode"] == ("replace_partition" if shape == "partitioned" else "delete_mutation_then_insert")
    assert result.returns["quality_gate_health"]["unresolved_duplicates"] == 0

    again = run_dag(ROLLBACK, logical_date=sc.logical_date(3), conf=db.conf())   # safe to trigger twice
    assert again.state == "success", again.task_states
    with ch() as client:
        assert split(db.rows(client))[0] == first_open


def test_rollback_keeps_lots_resolved_since_resolved(db, run_dag):
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
    refresh(db, run_dag, 0)
    with ch() as client:
        first_open, _ = split(db.rows(client))
        db.insert_resolutions(client, [sc.resolution_of_cR()])   # 0xcR resolves between the runs
    refresh(db, run_dag, 1)
    with ch() as client:
        _, second_resolved = split(db.rows(client))
    assert {r["condition_id"] for r in second_resolved} == {"0xcR"}

    result = run_dag(ROLLBACK, logical_date=sc.logical_date(2), conf=db.conf())
    assert result.state == "success", result.task_states
    with ch() as client:
        rolled_open, rolled_resolved = split(db.rows(client))
    assert rolled_open == [r for r in first_open if r["condition_id"] != "0xcR"]
    assert rolled_resolved == second_resolved                     # resolved once, never open again
    assert result.returns["rollback_open"]["skipped_resolved_since"] == 2
    assert result.returns["quality_gate_health"]["moved_lots_in_both"] == 0


def test_rollback_without_a_publish_fails_and_changes_nothing(db, run_dag):
    with ch() as client:
        db.create_unified(client, partitioned=True)
        db.insert_unified(client, [sc.archived_row(), sc.stale_open_row()])
        before = db.rows(client)
    result = run_dag(ROLLBACK, logical_date=sc.logical_date(), conf=db.conf())
    assert result.state == "failed"
    assert result.task_states == {"rollback_open": "failed", "quality_gate_health": "upstream_failed"}
    with ch() as client:
        assert db.rows(client) == before
