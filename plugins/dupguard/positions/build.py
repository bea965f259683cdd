"""The refresh's first half: preflight (sources, freshness, stuck mutations) and the exact-FIFO
build of every open lot into the staging table (``include/sql/positions/build_positions.sql``)."""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import Any

from dupguard.positions import config
from dupguard.positions.mutations import handle_stuck_mutations
from dupguard.positions.tables import (PositionsError, Tables, check_columns, command, count_rows, create_like_unified,
                                       ensure_unified, is_open_partitioned, now_epoch, one, sql, utc, wallet_ranges)

log = logging.getLogger(__name__)


def preflight(client, t: Tables, *, as_of: datetime, max_source_lag_hours: float,
              stuck_mutation_minutes: float) -> dict[str, Any]:
    """Tables and columns, source freshness at ``as_of``, stuck mutations on the unified table;
    creates the unified table (partitioned by open/resolved) when it is missing."""
    check_columns(client, t.db, t.fills, config.REQUIRED_COLUMNS["fills"])
    check_columns(client, t.db, t.resolutions, config.REQUIRED_COLUMNS["resolutions"])
    created = ensure_unified(client, t)
    as_of = utc(as_of)
    newest = one(client, f"SELECT max(event_time) AS newest, count() AS n FROM {t.q(t.fills)}")
    newest_fill, fill_rows = newest["newest"], int(newest["n"])
    if not fill_rows:
        raise PositionsError(f"source {t.db}.{t.fills} is empty: nothing to build positions from")
    lag_hours = (as_of - newest_fill).total_seconds() / 3600
    if lag_hours > max_source_lag_hours:
        raise PositionsError(
            f"source {t.db}.{t.fills} is stale: newest fill {newest_fill:%Y-%m-%d %H:%M:%S} UTC is {lag_hours:.1f} h "
            f"before the run's logical date {as_of:%Y-%m-%d %H:%M:%S} (max_source_lag_hours={max_source_lag_hours})")
    mutations = handle_stuck_mutations(client, t.db, t.unified, stuck_mutation_minutes)
    out = {"database": t.db, "created_unified": created, "partitioned_open": is_open_partitioned(client, t),
           "newest_fill": newest_fill.isoformat(), "source_lag_hours": round(lag_hours, 2), "fill_rows": fill_rows,
           "killed_mutations": mutations["killed"], "pending_mutations": mutations["pending"],
           "before": count_rows(client, t, t.unified), "started_at": now_epoch()}
    log.info("preflight %s: %s", t.db, out)
    return out


def bucket_count(client, t: Tables, table: str, *, max_bucket_fills: int, override: int | None = None) -> int:
    """Wallet ranges to split ``table``'s work into: ``override`` when given, else
    ceil(rows / max_bucket_fills) - rows from ``count()``, answered from the parts' metadata
    (no scan), so the peak memory of one bucket stays within the budget as data grows."""
    if override:
        return int(override)
    total = int(one(client, f"SELECT count() AS n FROM {t.q(table)}")["n"])
    return max(1, math.ceil(total / max_bucket_fills))


def build(client, t: Tables, *, buckets: int | None = None,
          max_bucket_fills: int = config.DEFAULTS["max_bucket_fills"]) -> dict[str, Any]:
    """Rebuild every open lot (and the lots of newly resolved markets) into the staging table,
    in ``buckets`` wallet ranges (None: as many as the memory budget ``max_bucket_fills`` needs)."""
    started = time.monotonic()
    create_like_unified(client, t, t.staging)
    buckets = bucket_count(client, t, t.fills, max_bucket_fills=max_bucket_fills, override=buckets)
    ranges = wallet_ranges(client, t, t.fills, buckets)
    statement = sql("build_positions", t)
    for i, (lo, hi) in enumerate(ranges, 1):
        t0 = time.monotonic()
        command(client, statement, {"wallet_lo": lo, "wallet_hi": hi, "dust_tokens": config.DUST_TOKENS})
        log.info("build bucket %d/%d wallets [%r, %r) in %.1fs", i, len(ranges), lo, hi, time.monotonic() - t0)
    staged = count_rows(client, t, t.staging)
    out = {"staging": f"{t.db}.{t.staging}", "buckets": len(ranges), "staged_rows": staged["total"],
           "staged_unresolved": staged["unresolved"], "staged_resolved": staged["total"] - staged["unresolved"],
           "seconds": round(time.monotonic() - started, 2)}
    log.info("build: %s", out)
    return out
