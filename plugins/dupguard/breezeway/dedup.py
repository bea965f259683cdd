"""Keep the oldest row per natural key (``dedup``) and give the removed rows' space back to the
OS (``reclaim``). The ETL keeps writing; every removed row goes to ``dupguard.bw_backup_<t>``.

Locks: delete batches are short transactions (one id range each) taking row locks only; the
copy-swap holds ACCESS EXCLUSIVE for milliseconds (see :mod:`dupguard.breezeway.swap`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from dupguard.breezeway import ledger, render, swap
from dupguard.breezeway.config import (
    BATCH_IDS, CHILD_TABLES, DEDUP_WORK_MEM_MB, HEARTBEAT_EVERY_BATCHES, REWRITE_WHEN_LIVE_BELOW, ChildTable,
)
from dupguard.common.connections import pg_connect

log = logging.getLogger(__name__)

_ALL_IDS = (-(2**63), 2**63 - 1)  # the id range of one statement that covers the whole table


def dedup_pass(conn_id: str, t: ChildTable, *, batch_ids: int = BATCH_IDS, run_id: str | None = None,
               allow_swap: bool = True) -> dict:
    """Remove every duplicate of ``t`` present now; every removed row goes to the backup.

    The keeper of each duplicated key comes from one hash aggregate (``compute_keepers.sql``).
    Two ways, chosen from the keepers' counts (measured, see docs/breezeway.md):
    - ``delete``: short id-range transactions of ``DELETE ... RETURNING`` into the backup
      (few duplicates: the writers' leftovers, a lightly duplicated table);
    - ``copy-swap`` (more than ``1 - REWRITE_WHEN_LIVE_BELOW`` of the rows are duplicates):
      the table would be compacted by the reclaim anyway, so the dedup IS the compaction
      (:func:`dupguard.breezeway.swap.dedup_by_swap`).
    """
    from psycopg import sql

    keepers = render.own("keepers", t)
    t0 = time.monotonic()
    with pg_connect(conn_id, application_name="dupguard-dedup") as conn:
        replica = swap.replica_mode(conn)
        conn.execute("SELECT set_config('work_mem', %s, false)", (f"{int(DEDUP_WORK_MEM_MB)}MB",))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(keepers))
        conn.execute(render.render("compute_keepers.sql", t))
        n_keys, removable = (int(v) for v in conn.execute(sql.SQL(
            "SELECT count(*), coalesce(sum(n - 1), 0) FROM {}").format(keepers)).fetchone())
        lo, hi = conn.execute(sql.SQL("SELECT min(id), max(id) FROM {}").format(render.table_ident(t))).fetchone()
        rows = _row_estimate(conn, t, removable + n_keys)
        conn.commit()
        removed, batches, slowest, method, extra = 0, 0, 0.0, "none (no duplicates)", {}
        if n_keys and lo is not None:
            conn.execute(sql.SQL("ANALYZE {}").format(keepers))
            conn.commit()
            if allow_swap and removable > (1 - REWRITE_WHEN_LIVE_BELOW) * rows:
                method = "copy-swap"
                extra = swap.dedup_by_swap(conn, t)
                removed = extra.pop("removed")
            else:
                method = "delete"
                conn.execute(sql.SQL("CREATE INDEX ON {} (k1, k2)").format(keepers))
                conn.commit()
                stmt = render.render("delete_duplicates_batch.sql", t)
                for start in range(lo, hi + 1, batch_ids):
                    b0 = time.monotonic()
                    removed += max(conn.execute(stmt, {"lo": start, "hi": start + batch_ids}).rowcount, 0)
                    conn.commit()
                    batches += 1
                    slowest = max(slowest, time.monotonic() - b0)
                    if run_id and batches % HEARTBEAT_EVERY_BATCHES == 0:
                        ledger.heartbeat(conn, run_id)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(keepers))
        conn.commit()
    out = {"method": method, "duplicate_keys": n_keys, "removed": removed,
           "removed_in_place": removed if method == "delete" else 0, "batches": batches,
           "slowest_batch_s": round(slowest, 3), **extra, "seconds": round(time.monotonic() - t0, 2),
           "triggers_suppressed": replica}
    log.info("dedup %s: %s", t.qualified, out)
    return out


def delete_duplicates_now(conn_id: str, t: ChildTable) -> int:
    """Remove the duplicates of ``t`` present now in ONE statement (one snapshot: the keepers are
    computed inside it), each removed row into the backup; returns rows removed. The constraints
    step's clean: few duplicates are left, and what counts is how little time passes between
    the snapshot of the clean and the index build, during which writers may add new copies."""
    from psycopg import sql

    keepers = sql.SQL("({})").format(render.render("select_keepers.sql", t))
    with pg_connect(conn_id, application_name="dupguard-dedup") as conn:
        swap.replica_mode(conn)
        removed = conn.execute(render.render("delete_duplicates_batch.sql", t, keepers=keepers),
                               {"lo": _ALL_IDS[0], "hi": _ALL_IDS[1]}).rowcount
        conn.commit()
    log.info("clean %s: %d duplicates removed", t.qualified, removed)
    return max(removed, 0)


def _row_estimate(conn, t: ChildTable, at_least: int) -> int:
    """Rows of ``t`` for the delete-or-swap choice: the planner's estimate (exact enough for a
    ratio, and free), or a count when the table was never analyzed."""
    est = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s", (render.oid_of(conn, t),)).fetchone()[0]
    if est is None or est < 0:
        est = render.count(conn, render.table_ident(t))
    return max(int(est), at_least, 1)


def dedup(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES,
          batch_ids: int = BATCH_IDS) -> dict[str, Any]:
    """Keep the oldest row per natural key; every removed row goes to the backup."""
    with pg_connect(conn_id) as conn:
        ledger.assert_owner(conn, run_id)
    out = {t.name: dedup_pass(conn_id, t, batch_ids=batch_ids, run_id=run_id) for t in tables}
    with pg_connect(conn_id) as conn:
        ledger.record_step(conn, run_id, "dedup", {"tables": out})
    return {"tables": out, "removed": sum(v["removed"] for v in out.values())}


def reclaim(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Return the removed rows' space to the OS, per table, with the shortest exclusive lock.

    A table the dedup rewrote by copy-swap needs nothing. A table that kept fewer than
    ``REWRITE_WHEN_LIVE_BELOW`` of its original rows is compacted (copy + swap); the others get
    a plain VACUUM (no exclusive lock beyond its own conditional tail truncation)."""
    from psycopg import sql

    with pg_connect(conn_id) as conn:
        row = ledger.assert_owner(conn, run_id)
        base = ledger.baseline(row)
        deduped = ((row.get("steps") or {}).get("dedup") or {}).get("tables") or {}
        out = {}
        for t in tables:
            oid = render.oid_of(conn, t)
            size0, live = render.size(conn, oid), render.count(conn, render.table_ident(t))
            done = deduped.get(t.name) or {}
            swapped = done.get("method") == "copy-swap" and not done.get("removed_in_place")
            removed = 0 if swapped else render.count(conn, render.own("backup", t))
            conn.commit()
            if swapped:
                item = {"method": "none (compacted by the dedup's copy-swap)"}
            elif removed == 0:
                swap.drop_leftovers(conn, t)
                item = {"method": "none (nothing removed)"}
            elif live / max(base[t.name]["rows"], 1) >= REWRITE_WHEN_LIVE_BELOW:
                swap.drop_leftovers(conn, t)
                conn.autocommit = True
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(render.table_ident(t)))
                conn.autocommit = False
                item = {"method": "VACUUM (few rows removed: space reused in place)", "exclusive_lock_ms": 0}
            else:
                item = swap.compact_table(conn, t)
            item.update(size_before=size0, size_after=render.size(conn, oid), live_rows=live)
            conn.commit()
            log.info("reclaim %s: %s", t.qualified, item)
            out[t.name] = item
        ledger.record_step(conn, run_id, "reclaim", {"tables": out})
        return {"tables": out, "max_exclusive_lock_ms": max((v.get("exclusive_lock_ms") or 0) for v in out.values())}
