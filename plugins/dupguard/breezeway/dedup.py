"""One-shot dedup migration of the Breezeway child tables, and its rollback.

The steps are plain functions ``step(conn_id, run_id, ...) -> dict`` (the DAGs are thin
wrappers, tests and the bench call them directly). Every step checks that its run holds
the claim in ``dupguard.migration_ledger``, is idempotent (a retried or resumed step
converges to the same state) and records its figures in the ledger.

Locks (the ETL keeps writing throughout):
- dedup / restore: short transactions (one id or page range each) taking row locks only;
- CREATE UNIQUE INDEX CONCURRENTLY: SHARE UPDATE EXCLUSIVE (does not block writers);
- ALTER TABLE ... ADD/DROP CONSTRAINT, CREATE/DROP TRIGGER and the compaction swap take an
  exclusive lock for milliseconds, requested with ``lock_timeout`` so writers never queue
  behind a waiting request for longer than ``LOCK_TIMEOUT_MS``; the request is retried.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from dupguard import settings
from dupguard.breezeway_config import (
    BATCH_IDS, CHILD_TABLES, CONSTRAINT_ATTEMPTS, DEDUP_WORK_MEM_MB, LEDGER_SCHEMA, LOCK_RETRIES, LOCK_TIMEOUT_MS, MIGRATION_DAG_ID,
    MIGRATION_ID, PROTECTED_CONSTRAINTS, REWRITE_WHEN_LIVE_BELOW, ROLLBACK_DAG_ID, SCHEMA, STALE_CLAIM_MINUTES,
    ChildTable,
)
from dupguard.connections import pg_connect

log = logging.getLogger(__name__)

MIGRATION_STEPS = ("claim", "preflight", "backup", "dedup", "reclaim", "constraints", "quality_gate", "finish")
RECLAIM_TRIGGER = "dupguard_reclaim_log"
RunState = Callable[[str, str], "str | None"]


class MigrationRefused(Exception):
    """Another live run holds the claim, or the ledger is in a state this run may not touch."""


class PreflightError(Exception):
    """A configured table or column is missing, or a table cannot be migrated safely."""


# --- names ------------------------------------------------------------------
def _sql():
    from psycopg import sql

    return sql


def _tbl(t: ChildTable):
    return _sql().Identifier(SCHEMA, t.name)


def _own(kind: str, t: ChildTable):
    """dupguard's per-table objects: bw_backup_<t>, bw_keys_before_<t>, ..."""
    return _sql().Identifier(LEDGER_SCHEMA, f"bw_{kind}_{t.name}")


def _fmt(template: str, t: ChildTable, **extra: Any):
    sql = _sql()
    k1, k2 = t.natural_key
    return sql.SQL(template).format(table=_tbl(t), k1=sql.Identifier(k1), k2=sql.Identifier(k2), **extra)


def _tmp_index_prefix(t: ChildTable) -> str:
    return f"{t.name}_nk_try"


# --- ledger -----------------------------------------------------------------
def ensure_ledger(conn) -> None:
    conn.execute(settings.read_sql("breezeway/create_ledger.sql"))
    conn.commit()


def ledger_row(conn, *, lock: bool = False) -> dict[str, Any] | None:
    from psycopg.rows import dict_row

    q = "SELECT * FROM dupguard.migration_ledger WHERE migration_id = %s" + (" FOR UPDATE" if lock else "")
    if conn.execute("SELECT to_regclass('dupguard.migration_ledger')").fetchone()[0] is None:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q, (MIGRATION_ID,)).fetchone()


def _event(kind: str, run_id: str, **extra: Any) -> str:
    return json.dumps([{"event": kind, "run_id": run_id, "at": datetime.now(timezone.utc).isoformat(), **extra}])


def _assert_owner(conn, run_id: str, statuses: Sequence[str] = ("running",)) -> dict[str, Any]:
    row = ledger_row(conn)
    if row is None or row["run_id"] != run_id or row["status"] not in statuses:
        held = "no claim" if row is None else f"status {row['status']} held by run {row['run_id']}"
        raise MigrationRefused(f"run {run_id} does not hold the migration claim ({held}); not touching any table")
    conn.execute("UPDATE dupguard.migration_ledger SET heartbeat_at = now() WHERE migration_id = %s", (MIGRATION_ID,))
    conn.commit()
    return row


def _record_step(conn, run_id: str, step: str, figures: dict[str, Any], *, baseline: dict | None = None) -> None:
    payload = {"at": datetime.now(timezone.utc).isoformat(), **figures}
    conn.execute(
        "UPDATE dupguard.migration_ledger SET steps = jsonb_set(steps, ARRAY[%s], %s::jsonb), heartbeat_at = now()"
        " WHERE migration_id = %s AND run_id = %s", (step, json.dumps(payload, default=str), MIGRATION_ID, run_id))
    if baseline is not None:  # the preflight figures of the first run, kept for the gates and the rollback
        conn.execute(
            "UPDATE dupguard.migration_ledger SET steps = jsonb_set(steps, '{baseline}', %s::jsonb)"
            " WHERE migration_id = %s AND NOT steps ? 'baseline'", (json.dumps(baseline), MIGRATION_ID))
    conn.commit()


def _baseline(row: dict[str, Any]) -> dict[str, Any]:
    base = (row.get("steps") or {}).get("baseline")
    if not base:
        raise MigrationRefused("the ledger has no preflight baseline: the preflight step has not run")
    return base


def airflow_run_state(dag_id: str, run_id: str) -> str | None:
    """State of an Airflow DAG run as the running task sees it; None when unknown."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)
        return str(getattr(state, "value", state)) if state else None
    except Exception as exc:  # noqa: BLE001 - unknown run, or not inside a task
        log.info("state of run %s/%s unknown (%s)", dag_id, run_id, exc)
        return None


def _owner_alive(row: dict[str, Any], run_state: RunState | None) -> bool:
    state = run_state(row["dag_id"], row["run_id"]) if run_state else None
    if state is not None:
        return state in ("running", "queued")
    age = datetime.now(timezone.utc) - row["heartbeat_at"]
    return age < timedelta(minutes=STALE_CLAIM_MINUTES)


def _take(conn, run_id: str, dag_id: str, status: str, event: str, *, reset_steps: bool = False, **extra) -> None:
    conn.execute(
        "UPDATE dupguard.migration_ledger SET status = %s, run_id = %s, dag_id = %s, heartbeat_at = now(),"
        " finished_at = NULL, steps = CASE WHEN %s THEN '{}'::jsonb ELSE steps END,"
        " history = history || %s::jsonb WHERE migration_id = %s",
        (status, run_id, dag_id, reset_steps, _event(event, run_id, **extra), MIGRATION_ID))
    conn.commit()


def claim(conn_id: str, run_id: str, *, force: bool = False, dag_id: str = MIGRATION_DAG_ID,
          run_state: RunState | None = None) -> dict[str, Any]:
    """Claim the one-shot migration: ``INSERT ... ON CONFLICT DO NOTHING`` on its id.

    Returns ``action``: ``run`` (first claim), ``resume`` (this run's retry, or a takeover
    from a run that died), ``force`` (re-check and repair after completion), ``noop``
    (already complete). Raises :class:`MigrationRefused` while another run is alive.
    """
    with pg_connect(conn_id) as conn:
        ensure_ledger(conn)
        inserted = conn.execute(
            "INSERT INTO dupguard.migration_ledger (migration_id, status, run_id, dag_id, history)"
            " VALUES (%s, 'running', %s, %s, %s::jsonb) ON CONFLICT (migration_id) DO NOTHING RETURNING run_id",
            (MIGRATION_ID, run_id, dag_id, _event("claimed", run_id))).fetchone()
        conn.commit()
        if inserted:
            return _claimed("run", run_id, f"claimed migration {MIGRATION_ID}")
        row = ledger_row(conn, lock=True)
        status, owner = row["status"], row["run_id"]
        if status == "running" and owner == run_id:
            conn.commit()
            return _claimed("resume", run_id, "this run already holds the claim (task retry): resuming")
        if status == "complete":
            if not force:
                conn.commit()
                msg = (f"migration {MIGRATION_ID} already completed at {row['finished_at']} by run {owner}: "
                       "nothing to do (trigger with force=true to re-check and repair)")
                log.info(msg)
                return {"action": "noop", "run_id": run_id, "message": msg}
            _take(conn, run_id, dag_id, "running", "force", previous=owner)
            return _claimed("force", run_id, "force: re-checking and repairing a completed migration")
        if status == "rolled_back":
            _take(conn, run_id, dag_id, "running", "claimed_after_rollback", reset_steps=True, previous=owner)
            return _claimed("run", run_id, "previous migration was rolled back: migrating again")
        if _owner_alive(row, run_state):
            conn.commit()
            raise MigrationRefused(
                f"migration {MIGRATION_ID} is being run by {row['dag_id']} run {owner} (status {status}, "
                f"last heartbeat {row['heartbeat_at']}): refusing a second concurrent run")
        if status == "rolling_back":
            conn.commit()
            raise MigrationRefused(f"rollback run {owner} did not finish: trigger {ROLLBACK_DAG_ID} again to finish "
                                   "it before migrating again")
        done = [s for s in MIGRATION_STEPS if s in (row.get("steps") or {})]
        _take(conn, run_id, dag_id, "running", "takeover", previous=owner, steps_done=done)
        return _claimed("resume", run_id, f"run {owner} died after steps {done or 'none'}: this run resumes it")


def _claimed(action: str, run_id: str, msg: str) -> dict[str, Any]:
    log.info(msg)
    return {"action": action, "run_id": run_id, "message": msg}


# --- preflight ----------------------------------------------------------------
def check_catalog(conn, tables: Sequence[ChildTable] = CHILD_TABLES) -> list[str]:
    """Every configured table and column exists, and no table is referenced by a foreign key."""
    problems = []
    for t in tables:
        if t.constraint in PROTECTED_CONSTRAINTS:
            problems.append(f"{t.qualified}: constraint name {t.constraint} is protected")
        if conn.execute("SELECT to_regclass(%s)", (f'"{SCHEMA}"."{t.name}"',)).fetchone()[0] is None:
            problems.append(f"table {t.qualified} does not exist")
            continue
        cols = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (f'"{SCHEMA}"."{t.name}"',))}
        for c in ("id", *t.natural_key, "created_at"):
            if c not in cols:
                problems.append(f"column {t.qualified}.{c} does not exist")
        for name, child in conn.execute(
                "SELECT conname, conrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
                " AND confrelid = %s::regclass", (f'"{SCHEMA}"."{t.name}"',)):
            problems.append(f"{t.qualified} is referenced by foreign key {name} of {child}: removing duplicate "
                            "rows could cascade or fail; migrate that table by hand")
    return problems


def preflight(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Check the catalog, snapshot the key sets once, and report the problem table."""
    import psycopg

    sql = _sql()
    with pg_connect(conn_id) as conn:
        _assert_owner(conn, run_id)
        problems = check_catalog(conn, tables)
        conn.commit()
        if problems:
            raise PreflightError("preflight failed, nothing was changed:\n  - " + "\n  - ".join(problems))
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        report, baseline = [], {}
        for t in tables:
            first = conn.execute("SELECT to_regclass(%s)", (f"{LEDGER_SCHEMA}.bw_keys_before_{t.name}",)
                                 ).fetchone()[0] is None
            keys = _own("keys_before", t) if first else sql.Identifier("pg_temp", f"bw_keys_now_{t.name}")
            nulls = _own("nullkeys_before", t) if first else sql.Identifier("pg_temp", f"bw_nullkeys_now_{t.name}")
            conn.execute(_fmt(settings.read_sql("breezeway/snapshot_keys.sql"), t, keys_before=keys,
                              nullkeys_before=nulls))
            row = conn.execute(sql.SQL(
                "SELECT (SELECT count(*) FROM {k}), (SELECT coalesce(sum(n), 0) FROM {k}),"
                " (SELECT count(*) FROM {k} WHERE n > 1), (SELECT coalesce(max(n), 0) FROM {k}),"
                " (SELECT count(*) FROM {nk}), (SELECT coalesce(max(id), 0) FROM {t}),"
                " pg_total_relation_size(%s::regclass)").format(k=keys, nk=nulls, t=_tbl(t)),
                (f"{SCHEMA}.{t.name}",)).fetchone()
            distinct, keyed_rows, dup_keys, max_copies, null_rows, max_id, size = (int(v) for v in row)
            if not first:
                conn.execute(sql.SQL("DROP TABLE {}, {}").format(keys, nulls))
            conn.commit()
            item = {"table": t.name, "rows": keyed_rows + null_rows, "distinct_keys": distinct,
                    "duplicates": keyed_rows - distinct, "duplicate_keys": dup_keys, "max_copies": max_copies,
                    "null_key_rows": null_rows, "size_bytes": size}
            report.append(item)
            baseline[t.name] = {"rows": item["rows"], "max_id": max_id, "size_bytes": size,
                                "distinct_keys": distinct, "duplicates": item["duplicates"]}
        conn.isolation_level = None
        totals = {k: sum(r[k] for r in report) for k in ("rows", "distinct_keys", "duplicates", "null_key_rows",
                                                          "size_bytes")}
        log.info("Breezeway child tables before the migration:\n%s", format_report(report, totals))
        _record_step(conn, run_id, "preflight", {"tables": report, "totals": totals}, baseline=baseline)
        return {"tables": report, "totals": totals}


def format_report(rows: list[dict[str, Any]], totals: dict[str, Any]) -> str:
    head = f"{'table':<20} {'rows':>12} {'distinct keys':>14} {'duplicates':>12} {'factor':>8} {'NULL-key':>9} {'size':>10}"
    lines = [head, "-" * len(head)]
    for r in [*rows, {"table": "TOTAL", **totals}]:
        factor = r["rows"] / max(r["distinct_keys"] + r["null_key_rows"], 1)
        lines.append(f"{r['table']:<20} {r['rows']:>12,} {r['distinct_keys']:>14,} {r['duplicates']:>12,} "
                     f"{factor:>7.0f}x {r['null_key_rows']:>9,} {r['size_bytes'] / 2**20:>8.1f}MB")
    return "\n".join(lines)


# --- backup -----------------------------------------------------------------
def backup(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Create ``dupguard.bw_backup_<table>`` (same columns as the table, no index).

    Measured choice: only the rows the dedup removes are kept, each written by the very
    statement that deletes it (``DELETE ... RETURNING`` into the backup), so the backup
    can neither miss a removed row nor hold one that was not removed, and it costs the
    size of the removed rows instead of a full copy of the table.
    """
    sql = _sql()
    with pg_connect(conn_id) as conn:
        _assert_owner(conn, run_id)
        out = {}
        for t in tables:
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(_own("backup", t), _tbl(t)))
            conn.commit()
            out[t.name] = {"backup_table": f"{LEDGER_SCHEMA}.bw_backup_{t.name}",
                           "rows_already_backed_up": _count(conn, _own("backup", t))}
        _record_step(conn, run_id, "backup", {"tables": out})
        return {"strategy": "removed rows only, written by the DELETE that removes them", "tables": out}


def _count(conn, ident) -> int:
    return int(conn.execute(_sql().SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0])


# --- dedup ------------------------------------------------------------------
def _replica_mode(conn) -> bool:
    """Our own row moves must not fire user triggers or FK actions: session_replication_role
    = replica when we are allowed to (superuser); otherwise triggers fire (logged)."""
    import psycopg

    try:
        conn.execute("SET session_replication_role = replica")
        conn.commit()
        return True
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        log.warning("cannot set session_replication_role (not superuser): user triggers fire on removed rows")
        return False


def dedup_pass(conn_id: str, t: ChildTable, *, batch_ids: int = BATCH_IDS, run_id: str | None = None,
               allow_swap: bool = True) -> dict:
    """Remove every duplicate of ``t`` present now; every removed row goes to the backup.

    Two ways, chosen from the keepers' counts (measured, see docs/breezeway.md):
    - ``delete``: short id-range transactions of ``DELETE ... RETURNING`` into the backup
      (few duplicates: the writers' leftovers, a lightly duplicated table);
    - ``copy-swap`` (more than ``1 - REWRITE_WHEN_LIVE_BELOW`` of the rows are duplicates):
      the table would be compacted by the reclaim anyway, so the dedup IS the compaction:
      copy the kept rows online, then one transaction writes the removed rows to the backup
      (writers keep going), takes ACCESS EXCLUSIVE for milliseconds, re-copies the rows
      writers changed meanwhile, TRUNCATEs and reloads the kept rows. Nothing is deleted
      row by row and the removed rows' space goes back to the OS at once.
    """
    sql = _sql()
    keepers = _own("keepers", t)
    t0 = time.monotonic()
    with pg_connect(conn_id, application_name="dupguard-dedup") as conn:
        replica = _replica_mode(conn)
        conn.execute(f"SET work_mem = '{int(DEDUP_WORK_MEM_MB)}MB'")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(keepers))
        conn.execute(_fmt(settings.read_sql("breezeway/compute_keepers.sql"), t, keepers=keepers))
        n_keys, removable = (int(v) for v in conn.execute(sql.SQL(
            "SELECT count(*), coalesce(sum(n - 1), 0) FROM {}").format(keepers)).fetchone())
        lo, hi = conn.execute(sql.SQL("SELECT min(id), max(id) FROM {}").format(_tbl(t))).fetchone()
        rows = _row_estimate(conn, t, removable + n_keys)
        conn.commit()
        removed, batches, slowest, method, extra = 0, 0, 0.0, "none (no duplicates)", {}
        if n_keys and lo is not None:
            conn.execute(sql.SQL("ANALYZE {}").format(keepers))
            conn.commit()
            if allow_swap and removable > (1 - REWRITE_WHEN_LIVE_BELOW) * rows:
                method = "copy-swap"
                extra = _dedup_by_swap(conn, t, keepers)
                removed = extra.pop("removed")
            else:
                method = "delete"
                conn.execute(sql.SQL("CREATE INDEX ON {} (k1, k2)").format(keepers))
                conn.commit()
                stmt = _fmt(settings.read_sql("breezeway/delete_duplicates_batch.sql"), t, keepers=keepers,
                            backup=_own("backup", t))
                for start in range(lo, hi + 1, batch_ids):
                    b0 = time.monotonic()
                    cur = conn.execute(stmt, {"lo": start, "hi": start + batch_ids})
                    removed += max(cur.rowcount, 0)
                    conn.commit()
                    batches += 1
                    slowest = max(slowest, time.monotonic() - b0)
                    if run_id and batches % 20 == 0:
                        conn.execute("UPDATE dupguard.migration_ledger SET heartbeat_at = now() WHERE migration_id = %s"
                                     " AND run_id = %s", (MIGRATION_ID, run_id))
                        conn.commit()
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(keepers))
        conn.commit()
    out = {"method": method, "duplicate_keys": n_keys, "removed": removed,
           "removed_in_place": removed if method == "delete" else 0, "batches": batches,
           "slowest_batch_s": round(slowest, 3), **extra, "seconds": round(time.monotonic() - t0, 2),
           "triggers_suppressed": replica}
    log.info("dedup %s: %s", t.qualified, out)
    return out


def _row_estimate(conn, t: ChildTable, at_least: int) -> int:
    """Rows of ``t`` for the delete-or-swap choice: the planner's estimate (exact enough for a
    ratio, and free), or a count when the table was never analyzed."""
    est = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                       (f"{SCHEMA}.{t.name}",)).fetchone()[0]
    if est is None or est < 0:
        est = _count(conn, _tbl(t))
    return max(int(est), at_least, 1)


def _dedup_by_swap(conn, t: ChildTable, keepers) -> dict[str, Any]:
    """Dedup a heavily duplicated table by copying its kept rows and swapping them in.

    1. a trigger logs the ids of rows writers change from now on (committed first);
    2. the kept rows are copied online into ``bw_compact_<t>`` (UNLOGGED: rebuilt after a crash);
    3. ONE transaction: the removed rows (the exact complement, same predicate) are appended to
       the backup (ACCESS SHARE only: writers keep going), then ACCESS EXCLUSIVE: the logged
       rows are taken out of the copy and of what this transaction backed up and re-copied
       from the table as they are now, the trigger is dropped, TRUNCATE, reload. Backup and
       truncation commit together, so the backup holds exactly the removed rows; a crash
       or a refused lock rolls both back (the retry starts the transaction again).
    Rows writers inserted meanwhile are kept as they are (their duplicates are cleaned
    by the constraints step's pass). Same table OID: views, grants, indexes, triggers stay.
    """
    sql = _sql()
    tb, compact, bk = _tbl(t), _own("compact", t), _own("backup", t)
    _drop_reclaim_leftovers(conn, t)
    _start_change_log(conn, t)
    c0 = time.monotonic()
    conn.execute(_fmt(settings.read_sql("breezeway/swap_copy_keep.sql"), t, keepers=keepers, compact=compact))
    conn.commit()
    copy_s = time.monotonic() - c0
    backup_stmt = _fmt(settings.read_sql("breezeway/swap_backup_removed.sql"), t, keepers=keepers, backup=bk)
    timings: dict[str, float] = {}

    def swap(c):
        b0 = time.monotonic()
        backed_up = c.execute(backup_stmt).rowcount
        timings["backup_s"] = time.monotonic() - b0
        locked = _swap_in(c, t, compact, backup=bk)
        return backed_up, locked

    ((backed_up, (delta, unbacked, locked_at)), _) = with_short_lock(conn, swap, f"dedup swap of {t.qualified}")
    lock_s = time.monotonic() - locked_at
    conn.execute(sql.SQL("DROP TABLE {}").format(compact))
    conn.commit()
    conn.autocommit = True
    conn.execute(sql.SQL("ANALYZE {}").format(tb))
    conn.autocommit = False
    return {"removed": backed_up - unbacked, "exclusive_lock_ms": round(lock_s * 1000, 1),
            "copy_keep_s": round(copy_s, 2), "backup_s": round(timings.get("backup_s", 0.0), 2),
            "rows_changed_during_copy": delta}


def dedup(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES,
          batch_ids: int = BATCH_IDS) -> dict[str, Any]:
    """Keep the oldest row per natural key; every removed row goes to the backup."""
    with pg_connect(conn_id) as conn:
        _assert_owner(conn, run_id)
    out = {t.name: dedup_pass(conn_id, t, batch_ids=batch_ids, run_id=run_id) for t in tables}
    with pg_connect(conn_id) as conn:
        _record_step(conn, run_id, "dedup", {"tables": out})
    return {"tables": out, "removed": sum(v["removed"] for v in out.values())}


# --- exclusive locks, briefly -----------------------------------------------------
def with_short_lock(conn, fn: Callable[[Any], Any], what: str, *, timeout_ms: int = LOCK_TIMEOUT_MS,
                    retries: int = LOCK_RETRIES) -> tuple[Any, float]:
    """Run ``fn(conn)`` in a transaction whose lock requests give up after ``timeout_ms``
    (so writers queue behind us for at most that long); retry. Returns (result, seconds held)."""
    import psycopg

    for attempt in range(1, retries + 1):
        try:
            conn.execute(f"SET LOCAL lock_timeout = '{int(timeout_ms)}ms'")
            t0 = time.monotonic()
            result = fn(conn)
            conn.commit()
            return result, time.monotonic() - t0
        except psycopg.errors.LockNotAvailable:
            conn.rollback()
            log.info("%s: lock not granted within %d ms (attempt %d/%d), retrying", what, timeout_ms, attempt, retries)
            time.sleep(min(0.25 * attempt, 3.0))
    raise TimeoutError(f"{what}: could not get the lock in {retries} attempts of {timeout_ms} ms; "
                       "a long transaction holds the table - find it in pg_stat_activity and re-run")


def _user_triggers(conn, t: ChildTable) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal"
        " AND tgenabled <> 'D' AND tgname <> %s", (f"{SCHEMA}.{t.name}", RECLAIM_TRIGGER))]


_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}


def _start_change_log(conn, t: ChildTable) -> None:
    """Log the ids of rows writers change from now on (``dupguard.bw_reclaim_log``), so a swap
    can re-copy them under its short exclusive lock."""
    sql = _sql()
    with_short_lock(conn, lambda c: c.execute(sql.SQL(
        "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
        "EXECUTE FUNCTION dupguard.bw_reclaim_log_row()").format(sql.Identifier(RECLAIM_TRIGGER), _tbl(t))),
        f"create trigger on {t.qualified}")


def _drop_reclaim_leftovers(conn, t: ChildTable) -> None:
    sql = _sql()
    has_trigger = conn.execute("SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
                               (f"{SCHEMA}.{t.name}", RECLAIM_TRIGGER)).fetchone()
    conn.commit()
    if has_trigger:
        with_short_lock(conn, lambda c: c.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(RECLAIM_TRIGGER), _tbl(t))), f"drop trigger on {t.qualified}")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_own("compact", t)))
    if conn.execute("SELECT to_regclass('dupguard.bw_reclaim_log')").fetchone()[0]:
        conn.execute("DELETE FROM dupguard.bw_reclaim_log WHERE table_name = %s", (t.name,))
    conn.commit()


def _swap_in(c, t: ChildTable, compact, *, backup=None) -> tuple[int, int, float]:
    """Inside the caller's transaction: ACCESS EXCLUSIVE on ``t``, bring the rows logged by the
    reclaim trigger up to date in ``compact`` (and take them out of what this transaction
    wrote to ``backup``), drop the trigger, TRUNCATE ``t`` and reload it from ``compact``
    with user triggers disabled and re-enabled to their exact previous mode.
    Returns (logged rows re-copied, logged rows taken out of the backup, monotonic time the
    lock was granted)."""
    sql = _sql()
    tb = _tbl(t)
    c.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(tb))
    locked = time.monotonic()
    logged = sql.SQL("(SELECT DISTINCT row_id FROM dupguard.bw_reclaim_log WHERE table_name = {})").format(
        sql.Literal(t.name))
    c.execute(sql.SQL("DELETE FROM {} c USING {} l WHERE c.id = l.row_id").format(compact, logged))
    unbacked = 0
    if backup is not None:  # only the rows this transaction backed up (an older pass's rows stay)
        unbacked = c.execute(sql.SQL("DELETE FROM {} b USING {} l WHERE b.id = l.row_id AND "
                                     "b.xmin = pg_current_xact_id()::xid").format(backup, logged)).rowcount
    delta = c.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE id IN (SELECT row_id FROM {} l)").format(
        compact, tb, logged)).rowcount
    c.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(RECLAIM_TRIGGER), tb))
    cols = [r[0] for r in c.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " AND attgenerated = '' ORDER BY attnum", (f"{SCHEMA}.{t.name}",))]
    collist = sql.SQL(", ").join(map(sql.Identifier, cols))
    triggers = _user_triggers(c, t)
    for name, _ in triggers:
        c.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(tb, sql.Identifier(name)))
    c.execute(sql.SQL("TRUNCATE ONLY {}").format(tb))
    c.execute(sql.SQL("INSERT INTO {t} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM {k} ORDER BY id").format(
        t=tb, c=collist, k=compact))
    for name, mode in triggers:
        c.execute(sql.SQL("ALTER TABLE {} " + _ENABLE[mode] + " {}").format(tb, sql.Identifier(name)))
    c.execute("DELETE FROM dupguard.bw_reclaim_log WHERE table_name = %s", (t.name,))
    return delta, unbacked, locked


def compact_table(conn, t: ChildTable) -> dict[str, Any]:
    """Rewrite ``t`` with only its live rows; the exclusive lock covers only the swap.

    A trigger logs the ids of rows changed meanwhile; the live rows are copied online;
    then, under ACCESS EXCLUSIVE: re-copy the logged rows, TRUNCATE (the old file goes
    back to the OS) and reload. Same table (OID, indexes, grants, views, triggers).
    """
    sql = _sql()
    tb, compact = _tbl(t), _own("compact", t)
    _drop_reclaim_leftovers(conn, t)
    _start_change_log(conn, t)
    c0 = time.monotonic()
    conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT * FROM {}").format(compact, tb))
    conn.commit()
    copy_s = time.monotonic() - c0
    replica = _replica_mode(conn)

    def swap(c):
        delta, _, locked = _swap_in(c, t, compact)
        return delta, locked

    (delta, locked_at), _ = with_short_lock(conn, swap, f"compact {t.qualified}")
    lock_s = time.monotonic() - locked_at
    conn.execute(sql.SQL("DROP TABLE {}").format(compact))
    conn.execute("RESET session_replication_role")
    conn.commit()
    return {"method": "online copy + TRUNCATE/reload swap", "exclusive_lock_ms": round(lock_s * 1000, 1),
            "copy_s": round(copy_s, 2), "rows_changed_during_copy": delta, "triggers_suppressed": replica}


def reclaim(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Return the removed rows' space to the OS, per table, with the shortest exclusive lock.

    Tables that lost less than ``1 - REWRITE_WHEN_LIVE_BELOW`` of their rows get a plain
    VACUUM (no exclusive lock beyond its own conditional tail truncation)."""
    sql = _sql()
    with pg_connect(conn_id) as conn:
        row = _assert_owner(conn, run_id)
        base = _baseline(row)
        deduped = ((row.get("steps") or {}).get("dedup") or {}).get("tables") or {}
        out = {}
        for t in tables:
            size0 = _size(conn, t)
            live = _count(conn, _tbl(t))
            done = deduped.get(t.name) or {}
            if done.get("method") == "copy-swap" and not done.get("removed_in_place"):
                # the dedup already rewrote the table with its kept rows: nothing to reclaim
                conn.commit()
                item = {"method": "none (compacted by the dedup's copy-swap)"}
                item.update(size_before=size0, size_after=size0, live_rows=live)
                log.info("reclaim %s: %s", t.qualified, item)
                out[t.name] = item
                continue
            removed = _count(conn, _own("backup", t))
            conn.commit()
            ratio = live / max(base[t.name]["rows"], 1)
            if removed == 0:
                _drop_reclaim_leftovers(conn, t)
                item = {"method": "none (nothing removed)"}
            elif ratio >= REWRITE_WHEN_LIVE_BELOW:
                _drop_reclaim_leftovers(conn, t)
                conn.autocommit = True
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(_tbl(t)))
                conn.autocommit = False
                item = {"method": "VACUUM (few rows removed: space reused in place)", "exclusive_lock_ms": 0}
            else:
                item = compact_table(conn, t)
                conn.autocommit = True
                conn.execute(sql.SQL("ANALYZE {}").format(_tbl(t)))
                conn.autocommit = False
            item.update(size_before=size0, size_after=_size(conn, t), live_rows=live)
            conn.commit()
            log.info("reclaim %s: %s", t.qualified, item)
            out[t.name] = item
        _record_step(conn, run_id, "reclaim", {"tables": out})
        return {"tables": out, "max_exclusive_lock_ms": max((v.get("exclusive_lock_ms") or 0) for v in out.values())}


def _size(conn, t: ChildTable) -> int:
    return int(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"{SCHEMA}.{t.name}",)).fetchone()[0])


# --- constraints ----------------------------------------------------------------
def _indexes(conn, t: ChildTable) -> list[tuple[str, bool]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass AND c.relname LIKE %s", (f"{SCHEMA}.{t.name}", _tmp_index_prefix(t) + "%"))]


def _constraint_ok(conn, t: ChildTable) -> bool:
    return conn.execute(
        "SELECT 1 FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid WHERE c.conrelid = %s::regclass"
        " AND c.conname = %s AND c.contype = 'u' AND c.convalidated AND i.indisvalid",
        (f"{SCHEMA}.{t.name}", t.constraint)).fetchone() is not None


def _drop_tmp_indexes(conn_id: str, t: ChildTable, *, only_invalid: bool) -> list[str]:
    sql = _sql()
    dropped = []
    with pg_connect(conn_id, autocommit=True) as ac:
        for name, valid in _indexes(ac, t):
            if only_invalid and valid:
                continue
            ac.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(SCHEMA, name)))
            dropped.append(name)
    return dropped


def add_constraint(conn_id: str, t: ChildTable, *, attempts: int = CONSTRAINT_ATTEMPTS,
                   run_id: str | None = None) -> dict[str, Any]:
    """UNIQUE (<natural key>) without blocking writers for the build.

    CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX (milliseconds).
    If writers slipped new duplicates in, the build fails: clean them and retry (bounded);
    a failed build's INVALID index is kept while retrying (once ready it already rejects
    new duplicates) and dropped at the end."""
    import psycopg

    sql = _sql()
    with pg_connect(conn_id) as conn:
        if _constraint_ok(conn, t):
            conn.commit()
            return {"status": "already present", "dropped_invalid": _drop_tmp_indexes(conn_id, t, only_invalid=True)}
        conn.commit()
    dropped = _drop_tmp_indexes(conn_id, t, only_invalid=True)  # leftovers of a crashed run
    history: list[dict[str, Any]] = []
    try:
        with pg_connect(conn_id, autocommit=True) as ac:
            valid = [n for n, v in _indexes(ac, t) if v]
        index = valid[0] if valid else None
        for attempt in range(1, attempts + 1):
            if index:
                break
            cleaned = dedup_pass(conn_id, t, run_id=run_id)
            name = f"{_tmp_index_prefix(t)}{attempt}_{int(time.time()) % 100000}"
            k1, k2 = t.natural_key
            t0 = time.monotonic()
            try:
                with pg_connect(conn_id, autocommit=True) as ac:
                    ac.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({}, {})").format(
                        sql.Identifier(name), _tbl(t), sql.Identifier(k1), sql.Identifier(k2)))
                index = name
                history.append({"attempt": attempt, "cleaned": cleaned["removed"], "build_s": round(
                    time.monotonic() - t0, 2), "result": "built"})
            except psycopg.errors.UniqueViolation as exc:
                history.append({"attempt": attempt, "cleaned": cleaned["removed"], "result": "duplicates slipped in",
                                "detail": str(exc).splitlines()[0]})
                log.warning("%s: unique index build %d/%d failed (%s): cleaning and retrying", t.qualified, attempt,
                            attempts, str(exc).splitlines()[0])
        if not index:
            raise RuntimeError(
                f"{t.qualified}: writers kept inserting duplicates of ({', '.join(t.natural_key)}); the unique "
                f"index could not be built in {attempts} attempts. Nothing is lost (removed rows are in "
                f"{LEDGER_SCHEMA}.bw_backup_{t.name}); re-run the task, or pause the ETL for a minute and re-run")
        with pg_connect(conn_id) as conn:
            _, held = with_short_lock(conn, lambda c: c.execute(sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
                _tbl(t), sql.Identifier(t.constraint), sql.Identifier(index))), f"add constraint on {t.qualified}")
    finally:
        dropped += _drop_tmp_indexes(conn_id, t, only_invalid=True)
    return {"status": "added", "attempts": history, "dropped_invalid": dropped,
            "exclusive_lock_ms": round(held * 1000, 1)}


def constraints(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """One UNIQUE constraint per child table on its natural key."""
    with pg_connect(conn_id) as conn:
        _assert_owner(conn, run_id)
    out = {t.name: add_constraint(conn_id, t, run_id=run_id) for t in tables}
    with pg_connect(conn_id) as conn:
        _record_step(conn, run_id, "constraints", {"tables": out})
    return {"tables": out}


# --- quality gates ------------------------------------------------------------
def _gate_query(conn, template: str, tables: Sequence[ChildTable], per_table: Callable[[ChildTable], dict]) -> str:
    sql = _sql()
    template = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("--"))
    parts = [_fmt(template, t, name=sql.Literal(t.name), regclass=sql.Literal(f"{SCHEMA}.{t.name}"),
                  constraint=sql.Literal(t.constraint), backup=_own("backup", t), keys_before=_own("keys_before", t),
                  nullkeys_before=_own("nullkeys_before", t), **per_table(t)) for t in tables]
    return sql.SQL("\nUNION ALL\n").join(parts).as_string(conn)


def _frame(rows: list[dict[str, Any]]):
    """The gate's figures, computed once by PostgreSQL (one aggregate row per table), as the
    small DataFrame great-expectations validates (it would re-run the query per metric)."""
    import pandas as pd

    return pd.DataFrame(rows)


def _gate_rows(conn, query: str) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query).fetchall()
    conn.commit()
    return [{k: (int(v) if isinstance(v, int) else v) for k, v in r.items()} for r in rows]


def quality_gate(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Zero duplicate keys, the constraints valid, every key of the preflight snapshot
    present, NULL-key rows unchanged, every removed row's key kept, task_tags_unique intact."""
    import great_expectations as gx

    from dupguard.gate import run_gate

    sql = _sql()
    with pg_connect(conn_id) as conn:
        base = _baseline(_assert_owner(conn, run_id))
        query = _gate_query(conn, settings.read_sql("breezeway/gate_table.sql"), tables,
                            lambda t: {"size_before": sql.Literal(base[t.name]["size_bytes"]),
                                      "max_id_before": sql.Literal(base[t.name]["max_id"])})
        protected = conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = ANY(%s) AND connamespace = "
                                 "%s::regnamespace", (list(PROTECTED_CONSTRAINTS), SCHEMA)).fetchone()[0]
        figures = _gate_rows(conn, query)
    zero = ("duplicate_keys", "missing_keys", "nullkey_rows_changed", "removed_without_keeper")
    expectations = [gx.expectations.ExpectTableRowCountToEqual(value=len(tables)),
                    gx.expectations.ExpectColumnValuesToBeBetween(column="constraint_valid", min_value=1, max_value=1)]
    expectations += [gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0) for c in zero]
    for f in figures:
        f["protected_constraints"] = int(protected)
    expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(
        column="protected_constraints", min_value=len(PROTECTED_CONSTRAINTS), max_value=len(PROTECTED_CONSTRAINTS)))
    summary = run_gate("breezeway_child_tables_dedup", expectations, dataframe=_frame(figures))
    with pg_connect(conn_id) as conn:
        _record_step(conn, run_id, "quality_gate", {"tables": figures, "passed": summary["success"]})
    return {"passed": summary["success"], "tables": figures}


def finish(conn_id: str, run_id: str) -> dict[str, Any]:
    """Mark the ledger complete with the figures of every step."""
    with pg_connect(conn_id) as conn:
        row = _assert_owner(conn, run_id)
        steps = row["steps"] or {}
        figures = {
            "removed": sum(v.get("removed", 0) for v in (steps.get("dedup", {}).get("tables") or {}).values()),
            "size_before": sum(v["size_bytes"] for v in _baseline(row).values()),
            "size_after": sum(_size(conn, t) for t in CHILD_TABLES),
        }
        conn.execute("UPDATE dupguard.migration_ledger SET status = 'complete', finished_at = now(),"
                     " steps = jsonb_set(steps, '{finish}', %s::jsonb), history = history || %s::jsonb"
                     " WHERE migration_id = %s AND run_id = %s",
                     (json.dumps(figures), _event("complete", run_id, **figures), MIGRATION_ID, run_id))
        conn.commit()
    log.info("migration %s complete: %s", MIGRATION_ID, figures)
    return {"status": "complete", **figures}


# --- rollback -----------------------------------------------------------------
def claim_rollback(conn_id: str, run_id: str, *, dag_id: str = ROLLBACK_DAG_ID,
                   run_state: RunState | None = None) -> dict[str, Any]:
    """Take the ledger for a rollback; a no-op when there is nothing to roll back."""
    with pg_connect(conn_id) as conn:
        ensure_ledger(conn)
        row = ledger_row(conn, lock=True)
        if row is None or row["status"] == "rolled_back":
            conn.commit()
            msg = "no migration to roll back" if row is None else f"already rolled back by run {row['run_id']}"
            log.info(msg)
            return {"action": "noop", "message": msg}
        if row["run_id"] == run_id:
            conn.commit()
            return _claimed("resume", run_id, "this run already holds the rollback claim: resuming")
        if row["status"] in ("running", "rolling_back") and _owner_alive(row, run_state):
            conn.commit()
            raise MigrationRefused(f"{row['dag_id']} run {row['run_id']} is active (status {row['status']}): "
                                   "refusing to roll back underneath it")
        _take(conn, run_id, dag_id, "rolling_back", "rollback", previous=row["run_id"], previous_status=row["status"])
        return _claimed("run", run_id, f"rolling back migration {MIGRATION_ID} (was {row['status']})")


def drop_constraints(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Drop the constraints the migration added (never a protected one) and its leftovers."""
    sql = _sql()
    out = {}
    with pg_connect(conn_id) as conn:
        _assert_owner(conn, run_id, ("rolling_back",))
        for t in tables:
            if t.constraint in PROTECTED_CONSTRAINTS:
                raise MigrationRefused(f"refusing to drop protected constraint {t.constraint}")
            present = conn.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
                                   (f"{SCHEMA}.{t.name}", t.constraint)).fetchone()
            conn.commit()
            held = 0.0
            if present:
                _, held = with_short_lock(conn, lambda c, t=t: c.execute(sql.SQL(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(_tbl(t), sql.Identifier(t.constraint))),
                    f"drop constraint on {t.qualified}")
            _drop_reclaim_leftovers(conn, t)
            out[t.name] = {"dropped": bool(present), "exclusive_lock_ms": round(held * 1000, 1),
                           "dropped_indexes": _drop_tmp_indexes(conn_id, t, only_invalid=False)}
        _record_step(conn, run_id, "drop_constraints", {"tables": out})
    return {"tables": out}


def restore_rows(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES,
                 pages_per_batch: int = 500) -> dict[str, Any]:
    """Put every backed-up row back (same id, same values), in short page-range batches."""
    sql = _sql()
    out = {}
    with pg_connect(conn_id, application_name="dupguard-restore") as conn:
        _assert_owner(conn, run_id, ("rolling_back",))
        replica = _replica_mode(conn)
        for t in tables:
            bk = _own("backup", t)
            if conn.execute("SELECT to_regclass(%s)", (f"{LEDGER_SCHEMA}.bw_backup_{t.name}",)).fetchone()[0] is None:
                conn.commit()
                out[t.name] = {"restored": 0, "note": "no backup table"}
                continue
            pages = int(conn.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                                     (f"{LEDGER_SCHEMA}.bw_backup_{t.name}",)).fetchone()[0])
            cols = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " AND attgenerated = '' ORDER BY attnum", (f"{SCHEMA}.{t.name}",))]
            conn.commit()
            collist = sql.SQL(", ").join(map(sql.Identifier, cols))
            bcols = sql.SQL(", ").join(sql.Identifier("b", c) for c in cols)
            stmt = sql.SQL(
                "INSERT INTO {t} ({c}) OVERRIDING SYSTEM VALUE SELECT DISTINCT ON (b.id) {bc} FROM {b} b "
                "WHERE b.ctid >= format('(%%s,0)', %(lo)s::bigint)::tid AND b.ctid < format('(%%s,0)', %(hi)s::bigint)::tid "
                "AND NOT EXISTS (SELECT 1 FROM {t} x WHERE x.id = b.id) ORDER BY b.id").format(
                t=_tbl(t), c=collist, bc=bcols, b=bk)
            restored = 0
            for lo in range(0, pages + 1, pages_per_batch):
                restored += max(conn.execute(stmt, {"lo": lo, "hi": lo + pages_per_batch}).rowcount, 0)
                conn.commit()
            out[t.name] = {"restored": restored}
        _record_step(conn, run_id, "restore_rows", {"tables": out, "triggers_suppressed": replica})
    return {"tables": out, "restored": sum(v["restored"] for v in out.values())}


def rollback_gate(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Every removed row back byte for byte; row counts = original + rows written since."""
    import great_expectations as gx

    from dupguard.gate import run_gate

    sql = _sql()
    with pg_connect(conn_id) as conn:
        base = _baseline(_assert_owner(conn, run_id, ("rolling_back",)))
        have_backup = all(conn.execute("SELECT to_regclass(%s)", (f"{LEDGER_SCHEMA}.bw_backup_{t.name}",)
                                       ).fetchone()[0] for t in tables)
        if not have_backup:
            raise MigrationRefused("backup tables are missing: the rollback cannot prove the restore")
        query = _gate_query(conn, settings.read_sql("breezeway/gate_rollback_table.sql"), tables, lambda t: {
            "rows_before": sql.Literal(base[t.name]["rows"]), "max_id_before": sql.Literal(base[t.name]["max_id"])})
        figures = _gate_rows(conn, query)
    expectations = [gx.expectations.ExpectTableRowCountToEqual(value=len(tables)),
                    gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="rows_now", column_B="rows_expected")]
    expectations += [gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0)
                     for c in ("backup_rows_not_restored", "original_rows_missing", "migration_constraint_left")]
    summary = run_gate("breezeway_child_tables_rollback", expectations, dataframe=_frame(figures))
    with pg_connect(conn_id) as conn:
        _record_step(conn, run_id, "rollback_gate", {"tables": figures, "passed": summary["success"]})
    return {"passed": summary["success"], "tables": figures}


def finish_rollback(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Drop the (now restored) backups and snapshots; mark the ledger rolled back."""
    sql = _sql()
    with pg_connect(conn_id) as conn:
        _assert_owner(conn, run_id, ("rolling_back",))
        for t in tables:
            for kind in ("backup", "keys_before", "nullkeys_before", "keepers", "compact"):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_own(kind, t)))
        conn.execute("UPDATE dupguard.migration_ledger SET status = 'rolled_back', finished_at = now(),"
                     " history = history || %s::jsonb WHERE migration_id = %s AND run_id = %s",
                     (_event("rolled_back", run_id), MIGRATION_ID, run_id))
        conn.commit()
    return {"status": "rolled_back"}


# --- Airflow glue ---------------------------------------------------------------
def task_step(step: str, fn: Callable[..., dict[str, Any]], *, stop_after: str | None = None, **kwargs: Any):
    """Run a step inside an Airflow task: definitive refusals and gate failures fail the
    task without a retry (a retry cannot change them); ``stop_after`` == ``step`` stops
    the run right after the step (a crash drill: the next trigger resumes)."""
    from airflow.sdk.exceptions import AirflowFailException

    from dupguard.gate import GateFailed

    try:
        result = fn(**kwargs)
    except (MigrationRefused, PreflightError, GateFailed) as exc:
        raise AirflowFailException(str(exc)) from exc
    if stop_after and stop_after == step:
        raise AirflowFailException(f"stopped after step '{step}' as requested (stop_after param): "
                                   "trigger the DAG again to resume")
    return result
