"""The FIFO build against hand-computed cases and a row-by-row Python reference (chDB)."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest

from dupguard.positions import build as positions_build
from dupguard.positions import tables
from tests.positions import fifo_reference
from tests.positions.conftest import T0, ch, fill, resolution

NUMERIC = ("cost_usd", "tokens", "tokens_sold_early", "tokens_held", "exit_value", "pnl_usd", "roi", "pct_sold_early")


def build(db, fills, resolutions=(), published=()):
    """Load the sources (and optionally published rows), run the build, return staging rows by key."""
    with ch() as client:
        db.insert_fills(client, list(fills))
        if resolutions:
            db.insert_resolutions(client, list(resolutions))
        tables.ensure_unified(client, db.tables)
        if published:
            db.insert_unified(client, list(published))
        positions_build.build(client, db.tables)
        rows = db.rows(client, db.tables.staging)
    return {(r["tx_hash"], r["wallet"], r["condition_id"], r["outcome_index"]): r for r in rows}


def by_tx(rows):
    return {k[0]: v for k, v in rows.items()}


def assert_lot(row, **expected):
    for k, v in expected.items():
        if isinstance(v, float):
            assert row[k] == pytest.approx(v, abs=1e-9), (k, row[k], v)
        else:
            assert row[k] == v, (k, row[k], v)


def published_row(wallet, cid, oi, tx):
    return {"tx_hash": tx, "wallet": wallet, "condition_id": cid, "outcome_index": oi, "entry_time": T0,
            "resolved_at": None, "cost_usd": 1.0, "tokens": 1.0, "tokens_sold_early": 0.0, "tokens_held": 1.0,
            "exit_value": 0.0, "pnl_usd": 0.0, "roi": 0.0, "pct_sold_early": 0.0, "is_maker": 0, "is_short": 0,
            "is_closed": 0}


def test_partial_lot_consumption_across_lots(db):
    rows = by_tx(build(db, [
        fill("w1", "c1", 0, 10, -4.0, 1, tx="A"),
        fill("w1", "c1", 0, 20, -10.0, 2, tx="B"),
        fill("w1", "c1", 0, -15, 12.0, 3),   # 10 from A at 0.80, 5 from B at 0.80
        fill("w1", "c1", 0, -10, 6.0, 4),    # 10 from B at 0.60
    ]))
    assert set(rows) == {"A", "B"}
    assert_lot(rows["A"], tokens=10.0, cost_usd=4.0, tokens_sold_early=10.0, tokens_held=0.0, exit_value=8.0,
               pnl_usd=4.0, roi=1.0, pct_sold_early=1.0, is_closed=1, resolved_at=None, is_short=0)
    assert_lot(rows["B"], tokens=20.0, cost_usd=10.0, tokens_sold_early=15.0, tokens_held=5.0, exit_value=10.0,
               pnl_usd=10.0 - 10.0 * 15 / 20, roi=0.25, pct_sold_early=0.75, is_closed=0)


def test_oversell_before_any_buy_is_ignored(db):
    rows = by_tx(build(db, [
        fill("w1", "c1", 1, -5, 2.5, 1),     # nothing held: ignored
        fill("w1", "c1", 1, 10, -3.0, 2, tx="L"),
        fill("w1", "c1", 1, -4, 2.4, 3),     # 4 at 0.60
        fill("w1", "c1", 1, -20, 14.0, 4),   # 6 held at 0.70, the other 14 ignored
        fill("w1", "c1", 1, 5, -1.0, 5, tx="M"),  # bought after the oversell: untouched
    ]))
    assert_lot(rows["L"], tokens_sold_early=10.0, tokens_held=0.0, exit_value=2.4 + 4.2, pnl_usd=6.6 - 3.0,
               is_closed=1)
    assert_lot(rows["M"], tokens_sold_early=0.0, tokens_held=5.0, exit_value=0.0, pnl_usd=0.0, is_closed=0)


def test_fill_delivered_twice_counts_once_at_latest_version(db):
    a = fill("w1", "c1", 0, 10, -5.0, 1, tx="A", fill_id="fa")
    a2 = {**a, "usdc_delta": -4.0, "_version": 2}      # corrected re-delivery
    b = fill("w1", "c1", 0, 6, -3.0, 2, tx="B", fill_id="fb")
    rows = by_tx(build(db, [a, b, b, a2, a]))           # b twice, same version
    assert_lot(rows["A"], tokens=10.0, cost_usd=4.0)
    assert_lot(rows["B"], tokens=6.0, cost_usd=3.0)


def test_multi_fill_lot(db):
    rows = by_tx(build(db, [
        fill("w1", "c1", 0, 3, -1.5, 1, tx="T"),
        fill("w1", "c1", 0, 7, -4.2, 2, tx="T", is_maker=1),
        fill("w1", "c1", 0, 5, -2.5, 3, tx="U"),
        fill("w1", "c1", 0, -4, 3.6, 4),     # 3 from T's first fill, 1 from its second
    ]))
    assert set(rows) == {"T", "U"}
    assert_lot(rows["T"], tokens=10.0, cost_usd=5.7, tokens_sold_early=4.0, tokens_held=6.0, exit_value=3.6,
               pnl_usd=3.6 - 5.7 * 0.4, is_maker=1, entry_time=T0 + timedelta(minutes=1))
    assert_lot(rows["U"], tokens_sold_early=0.0, is_maker=0)


def test_dust_lot_produces_no_row_but_is_held(db):
    rows = by_tx(build(db, [
        fill("w1", "c1", 0, 0.005, -0.002, 1, tx="DUST"),
        fill("w1", "c1", 0, 10, -5.0, 2, tx="A"),
        fill("w1", "c1", 0, -1, 1.0, 3),
    ]))
    assert set(rows) == {"A"}
    assert_lot(rows["A"], tokens_sold_early=0.995, exit_value=0.995)


def test_resolutions_deleted_empty_and_both_json_forms(db):
    fills = [fill("w1", c, 1, 10, -4.0, 1, tx=f"t_{c}") for c in ("c_del", "c_empty", "c_blank", "c_new", "c_moved")]
    fills.append(fill("w1", "c_moved", 1, -4, 2.0, 2))
    res = [resolution("c_del", "[1,0]"), {**resolution("c_del", "[1,0]"), "is_deleted": 1},
           resolution("c_empty", "[]"), resolution("c_blank", ""),
           resolution("c_new", "[0,1]"), resolution("c_moved", '["1","3"]')]
    # c_moved was published as open; c_new resolved without ever being published as open
    rows = by_tx(build(db, fills, res, published=[published_row("w1", "c_moved", 1, "t_c_moved")]))
    assert set(rows) == {"t_c_del", "t_c_empty", "t_c_blank", "t_c_moved"}
    for tx in ("t_c_del", "t_c_empty", "t_c_blank"):
        assert rows[tx]["resolved_at"] is None
    assert_lot(rows["t_c_moved"], resolved_at=T0 + timedelta(days=5), tokens_held=6.0,
               exit_value=2.0 + 6 * 0.75, pnl_usd=6.5 - 4.0, roi=2.5 / 4.0, is_closed=1)


def random_case(seed: int, n_fills: int = 3000):
    rnd = random.Random(seed)
    fills, res, published = [], [], []
    wallets = [f"0xw{i:03d}" for i in range(25)]
    conditions = [f"0xc{i:03d}" for i in range(12)]
    for n in range(n_fills):
        w = rnd.choice(wallets[: rnd.randint(1, len(wallets))])   # skewed
        c = rnd.choice(conditions)
        oi = rnd.randint(0, 1)
        minute = rnd.randint(0, 300)                                # many equal timestamps
        block = minute * 10 + rnd.randint(0, 2)
        buy = rnd.random() < 0.55
        q = rnd.choice([round(rnd.uniform(0.001, 0.02), 4), round(rnd.uniform(0.01, 80), 3)])
        price = rnd.uniform(0.01, 0.99)
        tx = f"0xt{rnd.randint(0, 900):04d}"                        # lots spread over time too
        if buy:
            fills.append(fill(w, c, oi, q, -q * price, minute, tx=tx, block=block, is_maker=rnd.randint(0, 1)))
        else:
            q *= rnd.choice([1, 1, 3])                              # oversells
            fills.append(fill(w, c, oi, -q, q * price, minute, tx=tx, block=block))
    for f in rnd.sample(fills, len(fills) // 30):                  # re-deliveries
        fills.append({**f, "_version": 2, "usdc_delta": f["usdc_delta"] * 1.01})
    rnd.shuffle(fills)
    forms = ["[1,0]", '["0","1"]', "[1,1]", "[]", '["0","0"]']
    for c in conditions[:8]:
        res.append(resolution(c, rnd.choice(forms), is_deleted=int(rnd.random() < 0.2)))
    for c in conditions[:4]:                                       # published as open earlier
        published.append(published_row("0xw000", c, 0, "0xold"))
    return fills, res, published


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_row_by_row_reference_on_random_data(db, seed):
    fills, res, published = random_case(seed)
    rows = build(db, fills, res, published)
    rates = fifo_reference.payout_rates(res)
    moved = {p["condition_id"] for p in published if p["condition_id"] in rates}
    scope = {f["condition_id"] for f in fills if f["condition_id"] not in rates} | moved
    expected = fifo_reference.positions(fills, res, conditions=scope)
    assert expected and moved, "the random case must exercise open and moved conditions"
    assert set(rows) == set(expected)
    for key, exp in expected.items():
        got = rows[key]
        for col in NUMERIC:
            assert got[col] == pytest.approx(exp[col], rel=1e-9, abs=1e-9), (key, col)
        for col in ("is_maker", "is_short", "is_closed", "entry_time", "resolved_at"):
            assert got[col] == exp[col], (key, col)
