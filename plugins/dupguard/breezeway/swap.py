"""Rewrite a child table with the rows that stay, holding its exclusive lock for milliseconds.

1. a trigger logs the ids of rows writers change from now on (committed first);
2. the rows that stay are copied online into ``dupguard.bw_compact_<t>`` (UNLOGGED: rebuilt
   after a crash);
3. ONE short transaction takes ACCESS EXCLUSIVE (``lock_timeout`` ``LOCK_TIMEOUT_MS``,
   retried from a savepoint: what the transaction did before the lock is kept), re-copies the logged rows, drops the trigger, ``TRUNCATE``s the table (its old
   file goes back to the OS) and reloads the copy with user triggers disabled and re-enabled
   to their exact mode. Under the lock: work proportional to the rows writers changed and to
   the rows that stay, never to the rows removed (see :func:`dedup_by_swap`).

Same table (OID, indexes, grants, views, triggers). Used by the dedup (the copy is the kept
rows; the removed rows go to the backup in the swap transaction) and by the reclaim (the copy
is every live row).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from dupguard.breezeway import render
from dupguard.breezeway.config import CHANGE_LOG_TRIGGER, LEDGER_SCHEMA, LOCK_RETRIES, LOCK_TIMEOUT_MS, ChildTable
from dupguard.common import pg, settings

log = logging.getLogger(__name__)

_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}


def short_lock(conn, fn, what: str) -> tuple[Any, float]:
    """``fn(conn)`` in a transaction whose lock requests give up after ``LOCK_TIMEOUT_MS``, retried."""
    return pg.with_short_lock(conn, fn, what, timeout_ms=LOCK_TIMEOUT_MS, retries=LOCK_RETRIES)


def lock_in_transaction(c, lock_stmt, what: str) -> None:
    """``lock_stmt`` inside the caller's transaction, retried from a savepoint when it is not
    granted within the transaction's ``lock_timeout``: the work the transaction did before (a
    copy-swap's backup insert: a minute at the seed's size) is kept, not redone, while the
    request gives way to a long reader every ``LOCK_TIMEOUT_MS`` (writers never queue longer)."""
    import psycopg

    for attempt in range(1, LOCK_RETRIES + 1):
        c.execute("SAVEPOINT dupguard_lock")
        try:
            c.execute(lock_stmt)
        except psycopg.errors.LockNotAvailable:
            c.execute("ROLLBACK TO SAVEPOINT dupguard_lock")
            log.info("%s: lock not granted within %d ms (attempt %d/%d), retrying", what, LOCK_TIMEOUT_MS,
                     attempt, LOCK_RETRIES)
            time.sleep(min(0.25 * attempt, 3.0))
            continue
        c.execute("RELEASE SAVEPOINT dupguard_lock")
        return
    raise TimeoutError(f"{what}: could not get the lock in {LOCK_RETRIES} attempts of {LOCK_TIMEOUT_MS} ms; "
                       "a long transaction holds the table - find it in pg_stat_activity and re-run")


def replica_mode(conn) -> bool:
    """Our own row moves must not fire user triggers or foreign-key checks: the session's
    ``session_replication_role`` becomes ``replica`` when we are allowed to (superuser);
    otherwise triggers fire (logged). Returns whether it is set."""
    import psycopg

    try:
        conn.execute("SET session_replication_role = replica")
        conn.commit()
        return True
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        log.warning("cannot set session_replication_role (not superuser): user triggers fire on moved rows")
        return False


def _trigger_sql(template: str, t: ChildTable):
    from psycopg import sql

    return sql.SQL(template).format(sql.Identifier(CHANGE_LOG_TRIGGER), render.table_ident(t))


def drop_leftovers(conn, t: ChildTable) -> None:
    """Drop what a swap that died left: its change-log trigger, copy and logged ids."""
    from psycopg import sql

    oid = render.oid_of(conn, t)
    has_trigger = conn.execute("SELECT 1 FROM pg_trigger WHERE tgrelid = %s AND tgname = %s",
                               (oid, CHANGE_LOG_TRIGGER)).fetchone()
    conn.commit()
    if has_trigger:
        short_lock(conn, lambda c: c.execute(_trigger_sql("DROP TRIGGER IF EXISTS {} ON {}", t)),
                   f"drop trigger on {t.qualified}")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(render.own("compact", t)))
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(render.own("unback", t)))
    if pg.table_oid(conn, LEDGER_SCHEMA, "bw_reclaim_log") is not None:
        conn.execute("DELETE FROM dupguard.bw_reclaim_log WHERE table_name = %s", (t.name,))
    conn.commit()


def start_change_log(conn, t: ChildTable) -> None:
    """Log the ids of rows writers change from now on (``dupguard.bw_reclaim_log``)."""
    from psycopg import sql

    stmt = render.render("create_change_log_trigger.sql", t, trigger=sql.Identifier(CHANGE_LOG_TRIGGER))
    short_lock(conn, lambda c: c.execute(stmt), f"create trigger on {t.qualified}")


def swap_in(c, t: ChildTable, *, backup: bool = False) -> tuple[int, int, float]:
    """Inside the caller's transaction: ACCESS EXCLUSIVE on ``t``, bring the logged rows up to
    date in the copy (and, with ``backup``, take them out of what this transaction wrote to the
    backup), drop the trigger, TRUNCATE ``t`` and reload it from the copy with user triggers
    disabled and re-enabled to their exact previous mode.

    Returns (logged rows re-copied, logged rows taken out of the backup, (monotonic time the
    lock was granted, monotonic time its last statement ended)): the caller's commit right
    after releases the lock."""
    from psycopg import sql

    tb = render.table_ident(t)
    # every statement under the lock is a small one: compiling one with JIT (an estimate above
    # jit_above_cost) would only lengthen the exclusive section
    c.execute("SET LOCAL jit = off")
    # the commit releases the lock without waiting for its WAL flush (the backup's and the
    # reload's records). Safe: a crash can only lose this whole transaction (the table as it
    # was, the backup without these rows: the retried step redoes it), and any later
    # synchronous commit (a writer's, the ledger's) flushes it first, since WAL is sequential.
    c.execute("SET LOCAL synchronous_commit = off")
    lock_in_transaction(c, sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(tb), f"swap of {t.qualified}")
    locked = time.monotonic()
    oid = render.oid_of(c, t)
    unbacked = c.execute(render.render("unback_logged_rows.sql", t)).rowcount if backup else 0
    delta = c.execute(render.render("recopy_logged_rows.sql", t)).rowcount
    c.execute(_trigger_sql("DROP TRIGGER {} ON {}", t))
    collist = sql.SQL(", ").join(map(sql.Identifier, pg.insertable_columns(c, oid)))
    triggers = c.execute(settings.read_sql("breezeway/list_user_triggers.sql"),
                         {"oid": oid, "change_log": CHANGE_LOG_TRIGGER}).fetchall()
    for name, _ in triggers:
        c.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(tb, sql.Identifier(name)))
    c.execute(sql.SQL("TRUNCATE ONLY {}").format(tb))
    c.execute(sql.SQL("INSERT INTO {t} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM {k} ORDER BY id").format(
        t=tb, c=collist, k=render.own("compact", t)))
    for name, mode in triggers:
        c.execute(sql.SQL("ALTER TABLE {} " + _ENABLE[mode] + " {}").format(tb, sql.Identifier(name)))
    c.execute("DELETE FROM dupguard.bw_reclaim_log WHERE table_name = %s", (t.name,))
    return delta, unbacked, (locked, time.monotonic())


def _copy_and_swap(conn, t: ChildTable, copy_stmt, swap, what: str) -> dict[str, Any]:
    """Leftovers dropped, change log started, ``copy_stmt`` fills the copy online, ``swap(c)``
    runs under the short lock and returns (result, (lock granted at, last statement done at));
    the copy is dropped."""
    from psycopg import sql

    drop_leftovers(conn, t)
    start_change_log(conn, t)
    c0 = time.monotonic()
    conn.execute(copy_stmt)
    conn.commit()
    copy_s = time.monotonic() - c0
    (result, (locked_at, done_at)), _ = short_lock(conn, swap, what)
    committed = time.monotonic()
    # the lock is held from LOCK TABLE to the commit record; the commit then releases it and
    # only afterwards gives the old file back to the OS (ftruncate/unlink of the whole old
    # table: hundreds of ms per GB on this disk, writers no longer wait), reported apart
    lock_s = done_at - locked_at
    conn.execute(sql.SQL("DROP TABLE {}").format(render.own("compact", t)))
    conn.execute(sql.SQL("ANALYZE {}").format(render.table_ident(t)))
    conn.commit()
    return {"result": result, "exclusive_lock_ms": round(lock_s * 1000, 1),
            "commit_ms": round((committed - done_at) * 1000, 1), "copy_s": round(copy_s, 2)}


def dedup_by_swap(conn, t: ChildTable) -> dict[str, Any]:
    """Dedup a heavily duplicated table by copying its kept rows and swapping them in.

    The swap transaction first appends the removed rows (the exact complement of the copy, same
    predicate) to the backup while writers keep going (ACCESS SHARE only), then swaps. Backup
    and truncation commit together, so the backup holds exactly the removed rows; a crash or a
    refused lock rolls both back (the retry starts the transaction again). Rows writers inserted
    meanwhile are kept as they are (their duplicates are cleaned by the constraints step's pass).
    ``dupguard.bw_keepers_<t>`` must hold the keepers (``compute_keepers.sql``).
    """
    from psycopg import sql

    backup_stmt = render.render("swap_backup_removed.sql", t)
    timings: dict[str, float] = {}

    def swap(c):
        b0 = time.monotonic()
        backed_up = c.execute(backup_stmt).rowcount
        # still before the exclusive lock: index the backup's ids (and give the planner their
        # statistics), so taking the logged rows back out of it under the lock is a few index
        # look-ups, not a scan of every removed row (24M rows at the seed's size: seconds);
        # the index is dropped after the commit
        c.execute(sql.SQL("CREATE INDEX {} ON {} (id)").format(
            sql.Identifier(render.own_name("unback", t)), render.own("backup", t)))
        c.execute(sql.SQL("ANALYZE {} (id)").format(render.own("backup", t)))
        timings["backup_s"] = time.monotonic() - b0
        delta, unbacked, held = swap_in(c, t, backup=True)
        return (backed_up - unbacked, delta), held

    out = _copy_and_swap(conn, t, render.render("swap_copy_keep.sql", t), swap, f"dedup swap of {t.qualified}")
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(render.own("unback", t)))
    conn.commit()
    removed, delta = out.pop("result")
    return {"removed": removed, "exclusive_lock_ms": out["exclusive_lock_ms"], "commit_ms": out["commit_ms"],
            "copy_keep_s": out["copy_s"],
            "backup_s": round(timings.get("backup_s", 0.0), 2), "rows_changed_during_copy": delta}


def compact_table(conn, t: ChildTable) -> dict[str, Any]:
    """Rewrite ``t`` with only its live rows (the space of removed rows goes back to the OS)."""
    from psycopg import sql

    copy = sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT * FROM {}").format(render.own("compact", t),
                                                                          render.table_ident(t))

    def swap(c):
        delta, _, held = swap_in(c, t)
        return delta, held

    replica = replica_mode(conn)
    out = _copy_and_swap(conn, t, copy, swap, f"compact {t.qualified}")
    conn.execute("RESET session_replication_role")
    conn.commit()
    return {"method": "online copy + TRUNCATE/reload swap", "exclusive_lock_ms": out["exclusive_lock_ms"],
            "commit_ms": out["commit_ms"], "copy_s": out["copy_s"], "rows_changed_during_copy": out["result"],
            "triggers_suppressed": replica}
