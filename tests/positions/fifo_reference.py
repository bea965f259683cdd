"""Row-by-row FIFO reference of the position contract (tests and benchmark only).

Deliberately naive: one Python loop over the fills of each key, a queue of bought
fills, sells consuming the queue front. The ClickHouse build must agree with it.
"""
from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

DUST = 0.01
FILL_COLS = ("fill_id", "event_time", "block_number", "tx_hash", "wallet", "condition_id", "outcome_index",
             "tokens_delta", "usdc_delta", "is_maker", "_version")


def payout_rates(resolutions: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, list[float]]]:
    """condition_id -> (resolved_at, numerators) for conditions that count as resolved.

    The latest row per condition wins (``rows`` in insertion order); deleted rows and empty
    or all-zero numerator arrays do not resolve a condition.
    """
    latest: dict[str, dict[str, Any]] = {}
    for r in resolutions:
        latest[r["condition_id"]] = r
    out = {}
    for cid, r in latest.items():
        if r.get("is_deleted", 0):
            continue
        text = (r["payout_numerators"] or "").strip()
        nums = [float(x) for x in json.loads(text)] if text else []
        if nums and sum(nums) > 0:
            out[cid] = (r["resolved_at"], nums)
    return out


def dedupe_fills(fills: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Latest ``_version`` per fill_id."""
    best: dict[str, dict[str, Any]] = {}
    for f in fills:
        cur = best.get(f["fill_id"])
        if cur is None or f.get("_version", 1) >= cur.get("_version", 1):
            best[f["fill_id"]] = f
    return list(best.values())


def positions(fills: Iterable[dict[str, Any]], resolutions: Iterable[dict[str, Any]],
              conditions: set[str] | None = None) -> dict[tuple, dict[str, Any]]:
    """Every lot row keyed by (tx_hash, wallet, condition_id, outcome_index).

    ``conditions`` limits the output to those condition ids (None: all).
    """
    rates = payout_rates(resolutions)
    by_key: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for f in dedupe_fills(fills):
        if conditions is not None and f["condition_id"] not in conditions:
            continue
        by_key[(f["wallet"], f["condition_id"], f["outcome_index"])].append(f)
    out: dict[tuple, dict[str, Any]] = {}
    for (wallet, cid, oi), fs in by_key.items():
        fs.sort(key=lambda f: (f["event_time"], f["block_number"], f["fill_id"]))
        lots: dict[str, dict[str, Any]] = {}
        queue: deque[list] = deque()  # [lot, remaining tokens of this buy fill]
        for f in fs:
            q = f["tokens_delta"]
            if q > 0:
                lot = lots.get(f["tx_hash"])
                if lot is None:
                    lot = lots[f["tx_hash"]] = {"entry_time": f["event_time"], "tokens": 0.0, "cost": 0.0,
                                                "sold": 0.0, "proceeds": 0.0, "is_maker": 0}
                lot["tokens"] += q
                lot["cost"] += -f["usdc_delta"]
                lot["is_maker"] = max(lot["is_maker"], f.get("is_maker", 0))
                queue.append([lot, q])
            elif q < 0:
                want = -q
                price = f["usdc_delta"] / -q
                while want > 0 and queue:
                    head = queue[0]
                    take = min(want, head[1])
                    head[0]["sold"] += take
                    head[0]["proceeds"] += take * price
                    head[1] -= take
                    want -= take
                    if head[1] <= 0:
                        queue.popleft()
                # whatever is left of the sell exceeds the holdings: ignored
        res = rates.get(cid)
        for tx, lot in lots.items():
            tokens = lot["tokens"]
            if tokens < DUST:
                continue
            sold = min(tokens, lot["sold"])
            held = tokens - sold
            cost = lot["cost"]
            if res is not None:
                nums = res[1]
                rate = (nums[oi] if oi < len(nums) else 0.0) / sum(nums)
                exit_value = lot["proceeds"] + held * rate
                pnl = exit_value - cost
                closed = 1
                resolved_at = res[0]
            else:
                exit_value = lot["proceeds"]
                pnl = lot["proceeds"] - cost * sold / tokens
                closed = 1 if held < DUST else 0
                resolved_at = None
            out[(tx, wallet, cid, oi)] = {
                "tx_hash": tx, "wallet": wallet, "condition_id": cid, "outcome_index": oi,
                "entry_time": lot["entry_time"], "resolved_at": resolved_at, "cost_usd": cost, "tokens": tokens,
                "tokens_sold_early": sold, "tokens_held": held, "exit_value": exit_value, "pnl_usd": pnl,
                "roi": 0.0 if cost == 0 else pnl / cost, "pct_sold_early": sold / tokens,
                "is_maker": lot["is_maker"], "is_short": 0, "is_closed": closed,
            }
    return out
