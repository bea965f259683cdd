"""Wallet buckets chosen from the memory budget (max_bucket_fills): several buckets give the
same positions as one, in the refresh (dag.test) and in the deduplicate DAG."""
from __future__ import annotations

import random

from dupguard.positions import build, config, tasks
from tests.positions import scenario as sc
from tests.positions.conftest import ch, fill, resolution

DAG_ID = "unified_positions_refresh"


def market_fills(seed: int = 7) -> list[dict]:
    """20 wallets trading 4 markets (one resolved long ago, in scope only if published open)."""
    rnd = random.Random(seed)
    out = []
    for w in range(20):
        for c in range(4):
            held = 0.0
            for step in range(rnd.randint(1, 6)):
                minute = 60 * (w + 1) + 10 * c + step
                if held > 1 and rnd.random() < 0.4:
                    sold = round(held * rnd.uniform(0.2, 1.3), 2)
                    out.append(fill(f"0xw{w:02d}", f"0xm{c}", c % 2, -sold, round(sold * 0.6, 2), minute))
                    held = max(0.0, held - sold)
                else:
                    tokens = rnd.randint(1, 50)
                    out.append(fill(f"0xw{w:02d}", f"0xm{c}", c % 2, tokens, -round(tokens * 0.4, 2), minute,
                                    tx=f"0xtx{w:02d}{c}{step // 2}"))
                    held += tokens
    out += sc.fills()   # the scenario's wallets (active, quiet, a resolved market) too
    return out


def load(db, fills):
    with ch() as client:
        db.insert_fills(client, fills)
        db.insert_resolutions(client, [*sc.resolutions(), resolution("0xm3", "[1,0]", minute=200)])
        db.create_unified(client, partitioned=False)


def test_bucket_count_follows_the_budget_and_the_override(db):
    with ch() as client:
        db.insert_fills(client, market_fills())
        n = int(client.query(f"SELECT count() FROM {db.tables.q(db.tables.fills)}").result_rows[0][0])
        count = build.bucket_count
        assert count(client, db.tables, db.tables.fills, max_bucket_fills=n) == 1
        assert count(client, db.tables, db.tables.fills, max_bucket_fills=n - 1) == 2
        assert count(client, db.tables, db.tables.fills, max_bucket_fills=max(1, n // 5)) >= 5
        assert count(client, db.tables, db.tables.fills, max_bucket_fills=1, override=3) == 3
    assert config.DEFAULTS["build_buckets"] is None            # chosen from the budget unless overridden
    assert tasks.run_params({})["build_buckets"] is None
    assert tasks.run_params({"build_buckets": 2})["build_buckets"] == 2


def test_small_budget_builds_in_several_buckets_the_same_positions_as_one(db, run_dag):
    fills = market_fills()
    load(db, fills)
    one_bucket = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=db.conf(build_buckets=1))
    assert one_bucket.state == "success", one_bucket.task_states
    assert one_bucket.returns["build"]["buckets"] == 1
    with ch() as client:
        rows_one = db.rows(client)
    budgeted = run_dag(DAG_ID, logical_date=sc.logical_date(1), conf=db.conf(max_bucket_fills=len(fills) // 6))
    assert budgeted.state == "success", budgeted.task_states
    assert budgeted.returns["build"]["buckets"] >= 5
    with ch() as client:
        rows_many = db.rows(client)
    assert rows_many == rows_one
    open_conditions = {"0xcA", "0xcR", "0xm0", "0xm1", "0xm2"}
    expected = sc.expected(fills, [*sc.resolutions(), resolution("0xm3", "[1,0]", minute=200)], open_conditions)
    sc.assert_rows_equal(rows_many, expected)


def test_default_budget_builds_a_small_table_in_one_bucket(db, run_dag):
    load(db, market_fills())
    result = run_dag(DAG_ID, logical_date=sc.logical_date(), conf=db.conf())
    assert result.state == "success", result.task_states
    assert result.returns["build"]["buckets"] == 1


def test_deduplicate_splits_a_table_beyond_the_budget(db, run_dag):
    row = sc.stale_open_row
    rows = [row(f"0xt{i:03d}", f"0xw{i % 9:02d}", f"0xc{i % 3}", i % 2) for i in range(60)]
    with ch() as client:
        db.create_unified(client, partitioned=False)
        db.insert_unified(client, rows + rows[:7])
    result = run_dag("unified_positions_deduplicate", logical_date=sc.logical_date(),
                     conf={"database": db.name, "dedupe_buckets": 1, "max_bucket_fills": 10})
    assert result.state == "success", result.task_states
    assert result.returns["deduplicate"]["buckets"] >= 5
    assert result.returns["deduplicate"]["surplus_rows_removed"] == 7
    with ch() as client:
        assert sorted(sc.key(r) for r in db.rows(client)) == sorted(sc.key(r) for r in rows)
