"""Undo the migration: drop the constraints it added (never a protected one) and its leftovers,
put every removed row back from the backups (same id, same values), keep every row written
since; then the backups and snapshots go and the ledger says ``rolled_back``.

The claim is :func:`dupguard.breezeway.ledger.claim_rollback`; the gate is
:func:`dupguard.breezeway.gates.rollback_gate`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dupguard.breezeway import ledger, render, swap
from dupguard.breezeway.config import CHILD_TABLES, PROTECTED_CONSTRAINTS, RESTORE_PAGES_PER_BATCH, ChildTable
from dupguard.breezeway.constraints import drop_build_leftovers
from dupguard.common import pg
from dupguard.common.connections import pg_connect

_ROLLING_BACK = ("rolling_back",)


def drop_constraints(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Drop the constraints the migration added (never a protected one) and its leftovers."""
    from psycopg import sql

    out = {}
    with pg_connect(conn_id) as conn:
        ledger.assert_owner(conn, run_id, _ROLLING_BACK)
        for t in tables:
            if t.constraint in PROTECTED_CONSTRAINTS:
                raise ledger.MigrationRefused(f"refusing to drop protected constraint {t.constraint}")
            present = conn.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s AND conname = %s",
                                   (render.oid_of(conn, t), t.constraint)).fetchone()
            conn.commit()
            held = 0.0
            if present:
                drop = sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                    render.table_ident(t), sql.Identifier(t.constraint))
                _, held = swap.short_lock(conn, lambda c, stmt=drop: c.execute(stmt),
                                          f"drop constraint on {t.qualified}")
            swap.drop_leftovers(conn, t)
            out[t.name] = {"dropped": bool(present), "exclusive_lock_ms": round(held * 1000, 1),
                           "dropped_indexes": drop_build_leftovers(conn_id, t)}
        ledger.record_step(conn, run_id, "drop_constraints", {"tables": out})
    return {"tables": out}


def restore_rows(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES,
                 pages_per_batch: int = RESTORE_PAGES_PER_BATCH) -> dict[str, Any]:
    """Put every backed-up row back (same id, same values), in short page-range batches."""
    from psycopg import sql

    out = {}
    with pg_connect(conn_id, application_name="dupguard-restore") as conn:
        ledger.assert_owner(conn, run_id, _ROLLING_BACK)
        replica = swap.replica_mode(conn)
        for t in tables:
            backup_oid = render.own_oid(conn, "backup", t)
            if backup_oid is None:
                conn.commit()
                out[t.name] = {"restored": 0, "note": "no backup table"}
                continue
            pages = int(conn.execute("SELECT pg_relation_size(%s::oid::regclass) / current_setting('block_size')::int",
                                     (backup_oid,)).fetchone()[0])
            cols = pg.insertable_columns(conn, render.oid_of(conn, t))
            conn.commit()
            stmt = render.render("restore_rows_batch.sql", t, columns=sql.SQL(", ").join(map(sql.Identifier, cols)),
                                 backup_columns=sql.SQL(", ").join(sql.Identifier("b", c) for c in cols))
            restored = 0
            for lo in range(0, pages + 1, pages_per_batch):
                restored += max(conn.execute(stmt, {"lo": lo, "hi": lo + pages_per_batch}).rowcount, 0)
                conn.commit()
            out[t.name] = {"restored": restored}
        ledger.record_step(conn, run_id, "restore_rows", {"tables": out, "triggers_suppressed": replica})
    return {"tables": out, "restored": sum(v["restored"] for v in out.values())}


def finish_rollback(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Drop the (now restored) backups and snapshots; mark the ledger rolled back."""
    from psycopg import sql

    with pg_connect(conn_id) as conn:
        ledger.assert_owner(conn, run_id, _ROLLING_BACK)
        for t in tables:
            for kind in render.OWN_KINDS:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(render.own(kind, t)))
        ledger.complete(conn, run_id, "rolled_back")
    return {"status": "rolled_back"}
