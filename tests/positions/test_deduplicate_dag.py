"""unified_positions_deduplicate end to end (dag.test) and its crash recovery."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dupguard.positions import dedupe, mutations, tables
from tests.positions import scenario as sc
from tests.positions.conftest import ch


def lot(i, *, resolved=False, **over):
    row = sc.stale_open_row(f"0xt{i:03d}", f"0xw{i % 7:02d}", f"0xc{i % 3}", i % 2)
    if resolved:
        row.update(resolved_at=sc.T0 + timedelta(days=3), is_closed=1)
    return {**row, **over}


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "unpartitioned"])
def test_deduplicate_removes_surplus_copies_everywhere_and_loses_nothing(db, run_dag, partitioned):
    clean = [lot(i, resolved=i % 4 == 0) for i in range(40)]
    dupes = [lot(3), lot(3), lot(8, resolved=True), lot(21, tokens_sold_early=5.0)]
    in_both = [lot(13, resolved=True)]     # lot 13 is open in `clean`: keep the resolved copy
    with ch() as client:
        db.create_unified(client, partitioned=partitioned)
        db.insert_unified(client, clean + dupes + in_both)
    result = run_dag("unified_positions_deduplicate", logical_date=sc.logical_date(), conf={
        "database": db.name, "dedupe_buckets": 3})
    assert result.state == "success", result.task_states
    with ch() as client:
        rows = db.rows(client)
    keys = [sc.key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 40
    by_key = {sc.key(r): r for r in rows}
    assert by_key[sc.key(lot(13))]["resolved_at"] is not None
    assert by_key[sc.key(lot(21))]["tokens_sold_early"] == 5.0        # the copy with most FIFO progress
    untouched = [r for r in clean if sc.key(r) not in {sc.key(d) for d in dupes + in_both}]
    for r in untouched:
        assert by_key[sc.key(r)] == {**r, "entry_time": sc.T0}
    rep = result.returns["report"]
    assert rep["before"]["duplicate_rows"] == 5 and rep["after"]["total"] == 40
    assert result.returns["deduplicate"]["surplus_rows_removed"] == 5
    again = run_dag("unified_positions_deduplicate", logical_date=sc.logical_date(1),
                    conf={"database": db.name, "dedupe_buckets": 3})
    assert again.state == "success" and again.returns["deduplicate"]["buckets_repaired"] == []


def test_kept_copies_survive_a_crash_between_delete_and_insert(db):
    rows = [lot(i) for i in range(10)]
    with ch() as client:
        db.create_unified(client, partitioned=True)
        db.insert_unified(client, rows + [lot(4), lot(5)])
        t = db.tables
        tables.create_like_unified(client, t, t.keep)
        bucket = {"wallet_lo": "", "wallet_hi": ""}
        client.command(tables.sql("dedupe_stage_keepers", t), parameters=bucket)
        mutations.run_mutation(client, t.db, t.unified, tables.sql("dedupe_delete_bucket", t), bucket, timeout_s=30,
                               extra_settings={"allow_nondeterministic_mutations": 1})
        assert len(db.rows(client)) == 8            # "crash": the keys 4 and 5 are gone for now
        out = dedupe.deduplicate(client, t, buckets=2, mutation_timeout_s=30)
        final = db.rows(client)
    assert out["recovered_from_previous_run"] == 2
    assert sorted(sc.key(r) for r in final) == sorted(sc.key(r) for r in rows)
