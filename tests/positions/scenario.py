"""A small market: an active wallet, a quiet wallet, a market that resolves between runs."""
from __future__ import annotations

import itertools
from datetime import timedelta

import pendulum

from tests.positions import fifo_reference
from tests.positions.conftest import AS_OF, T0, fill, resolution

NUMERIC = ("cost_usd", "tokens", "tokens_sold_early", "tokens_held", "exit_value", "pnl_usd", "roi", "pct_sold_early")
RECENT = int((AS_OF - T0).total_seconds() // 60) - 120   # two hours before the logical date
_runs = itertools.count(1)


def logical_date(hours_later: float = 0):
    """A distinct logical date per run (dag.test keys runs by it), near AS_OF."""
    return pendulum.instance(AS_OF + timedelta(hours=hours_later, seconds=next(_runs)), tz="UTC")


def fills():
    return [
        # active wallet, two markets, trades up to two hours before the run
        fill("0xactive", "0xcA", 0, 100, -40.0, 60, tx="0xa1"),
        fill("0xactive", "0xcA", 0, 50, -30.0, RECENT - 600, tx="0xa2"),
        fill("0xactive", "0xcA", 0, -120, 84.0, RECENT - 300),
        fill("0xactive", "0xcR", 1, 80, -20.0, RECENT - 200, tx="0xr1"),
        fill("0xactive", "0xcR", 1, -30, 15.0, RECENT - 100),
        fill("0xactive", "0xcA", 1, 10, -2.0, RECENT, tx="0xa3"),
        # quiet wallet: one open lot bought a week before, nothing since
        fill("0xquiet", "0xcA", 0, 40, -12.0, 120, tx="0xq1"),
        fill("0xquiet", "0xcR", 1, 25, -5.0, 130, tx="0xq2"),
        # a market resolved long ago (its rows are the archive's business)
        fill("0xold", "0xcOld", 0, 10, -5.0, 10, tx="0xo1"),
    ]


def resolutions():
    return [resolution("0xcOld", "[1,0]", minute=200)]


def resolution_of_cR():
    return resolution("0xcR", '["0","1"]', minute=RECENT + 30)


def archived_row():
    """A resolved row of another market already in the table: never touched by the refresh."""
    return {"tx_hash": "0xo1", "wallet": "0xold", "condition_id": "0xcOld", "outcome_index": 0, "entry_time": T0,
            "resolved_at": T0 + timedelta(minutes=200), "cost_usd": 5.0, "tokens": 10.0, "tokens_sold_early": 0.0,
            "tokens_held": 10.0, "exit_value": 10.0, "pnl_usd": 5.0, "roi": 1.0, "pct_sold_early": 0.0,
            "is_maker": 0, "is_short": 0, "is_closed": 1}


def stale_open_row(tx="0xa1", wallet="0xactive", cid="0xcA", oi=0):
    return {**archived_row(), "tx_hash": tx, "wallet": wallet, "condition_id": cid, "outcome_index": oi,
            "resolved_at": None, "tokens_sold_early": 1.0, "tokens_held": 99.0, "is_closed": 0}


def expected(all_fills, res, conditions):
    return fifo_reference.positions(all_fills, res, conditions=set(conditions))


def key(r):
    return (r["tx_hash"], r["wallet"], r["condition_id"], r["outcome_index"])


def assert_rows_equal(rows, expected_rows):
    got = {}
    for r in rows:
        assert key(r) not in got, f"duplicate row {key(r)}"
        got[key(r)] = r
    assert set(got) == set(expected_rows)
    for k, exp in expected_rows.items():
        for col in NUMERIC:
            assert abs(got[k][col] - exp[col]) <= 1e-9 * max(1.0, abs(exp[col])), (k, col, got[k][col], exp[col])
        for col in ("resolved_at", "entry_time", "is_closed", "is_maker", "is_short"):
            assert got[k][col] == exp[col], (k, col, got[k][col], exp[col])
