"""One UNIQUE constraint per child table on its natural key, added without blocking writers.

``CREATE UNIQUE INDEX CONCURRENTLY`` through :func:`dupguard.common.pg.build_unique_index`
(SHARE UPDATE EXCLUSIVE: writers never wait; an INVALID leftover is dropped first; when writers
slipped new duplicates in, one DELETE cleans them into the backup and the build is retried,
bounded), then ``ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX`` under a short
``lock_timeout`` (``LOCK_TIMEOUT_MS``, retried; ACCESS EXCLUSIVE for about a millisecond; the
index is renamed to the constraint's name).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dupguard.breezeway import ledger, render
from dupguard.breezeway.config import CHILD_TABLES, CONSTRAINT_ATTEMPTS, LEDGER_SCHEMA, SCHEMA, ChildTable
from dupguard.breezeway.dedup import dedup_pass, delete_duplicates_now
from dupguard.breezeway.swap import short_lock
from dupguard.common import pg
from dupguard.common.connections import pg_connect

log = logging.getLogger(__name__)


def constraint_ok(conn, t: ChildTable, oid: int) -> bool:
    """The table's ``<t>_natural_key`` constraint is present, validated and its index valid."""
    from psycopg import sql

    query = sql.SQL("SELECT {}").format(render.render("count_valid_constraint.sql", t, oid=oid))
    return conn.execute(query).fetchone()[0] == 1


def _warn_dropped(t: ChildTable, dropped: list[str]) -> list[str]:
    """A killed CREATE UNIQUE INDEX CONCURRENTLY leaves an INVALID unique index that still
    rejects writers' new rows: each one dropped is a warning line and in the step's report."""
    if dropped:
        log.warning("%s: dropped INVALID index(es) %s on the natural key (left by a build that was killed, or that "
                    "failed on a duplicate a writer added meanwhile and is retried)",
                    t.qualified, dropped)
    return dropped


def add_constraint(conn_id: str, t: ChildTable, *, run_id: str | None = None) -> dict[str, Any]:
    """UNIQUE (<natural key>) on ``t``; a no-op (dropping INVALID leftovers) when it is there."""
    from psycopg import sql

    with pg_connect(conn_id, autocommit=True) as ac:
        oid = render.oid_of(ac, t)
        if constraint_ok(ac, t, oid):
            return {"status": "already present", "dropped_invalid": _warn_dropped(t, pg.drop_invalid_indexes(
                ac, SCHEMA, oid, t.natural_key, "leftover of a killed or failed build"))}
        # the duplicates writers added since the dedup step (in bulk when there are many), then
        # one statement right before the build, and again after a build that met a new copy
        cleaned = dedup_pass(conn_id, t, run_id=run_id)["removed"]
        cleaned += delete_duplicates_now(conn_id, t)
        build = pg.build_unique_index(
            ac, schema=SCHEMA, table=t.name, cols=t.natural_key, index_name=t.build_index,
            clean=lambda: delete_duplicates_now(conn_id, t),
            max_attempts=CONSTRAINT_ATTEMPTS,
            writer_advice=f"Writers kept inserting duplicates of ({', '.join(t.natural_key)}). Nothing is lost "
                          f"(removed rows are in {LEDGER_SCHEMA}.{render.own_name('backup', t)}): re-run the task, "
                          "or pause the ETL for a minute and re-run.")
    add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
        render.table_ident(t), sql.Identifier(t.constraint), sql.Identifier(build["index"]))
    with pg_connect(conn_id) as conn:
        _, held = short_lock(conn, lambda c: c.execute(add), f"add constraint on {t.qualified}")
    return {"status": "added", "dropped_invalid": _warn_dropped(t, build.get("dropped_invalid", [])),
            "cleaned_first": cleaned, "build": build, "exclusive_lock_ms": round(held * 1000, 1)}


def drop_build_leftovers(conn_id: str, t: ChildTable) -> list[str]:
    """``DROP INDEX CONCURRENTLY`` every INVALID index on the natural key and an unattached
    build index (a run that died between the build and ADD CONSTRAINT)."""
    from psycopg import sql

    with pg_connect(conn_id, autocommit=True) as ac:
        oid = render.oid_of(ac, t)
        dropped = pg.drop_invalid_indexes(ac, SCHEMA, oid, t.natural_key, "leftover of the migration")
        for ix in pg.indexes_on(ac, oid, t.natural_key):
            if ix["index_name"] == t.build_index and not ix["owned"]:
                ac.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(SCHEMA, t.build_index)))
                dropped.append(t.build_index)
    return dropped


def constraints(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """One UNIQUE constraint per child table on its natural key."""
    with pg_connect(conn_id) as conn:
        ledger.assert_owner(conn, run_id)
    out = {t.name: add_constraint(conn_id, t, run_id=run_id) for t in tables}
    with pg_connect(conn_id) as conn:
        ledger.record_step(conn, run_id, "constraints", {"tables": out})
    return {"tables": out}
