"""PostgreSQL mechanics every system uses: catalog look-ups, short lock timeouts and the online
unique-index builder (``CREATE UNIQUE INDEX CONCURRENTLY`` with clean-and-retry).

Identifiers are always composed by the driver (``psycopg.sql.Identifier``); catalog look-ups take
a table's oid, found with :func:`table_oid` from its quoted schema and name.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


# --- catalog -------------------------------------------------------------------------
def table_oid(conn, schema: str, table: str) -> int | None:
    """oid of ``schema.table`` (both quoted), or None when it does not exist."""
    row = conn.execute("SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s))::oid",
                       (schema, table)).fetchone()
    return row[0] if row and row[0] is not None else None


def columns(conn, oid: int) -> set[str]:
    """Names of the live columns of the relation ``oid``."""
    return {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,))}


def insertable_columns(conn, oid: int) -> list[str]:
    """The columns of ``oid`` a row copy may write, in table order (no dropped or generated column)."""
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
        " AND attgenerated = '' ORDER BY attnum", (oid,))]


def missing_columns(conn, oid: int, wanted: Sequence[str]) -> list[str]:
    have = columns(conn, oid)
    return [c for c in wanted if c not in have]


def indexes_on(conn, oid: int, cols: Sequence[str]) -> list[dict[str, Any]]:
    """Indexes of ``oid`` whose key columns are exactly ``cols`` (in order), with their name,
    uniqueness, validity, method and whether a constraint owns them."""
    cur = conn.execute(
        """SELECT c.relname AS index_name, i.indisunique AS is_unique, i.indisvalid AS is_valid,
                  am.amname AS method, i.indpred IS NOT NULL AS partial,
                  EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS owned
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am am ON am.oid = c.relam
            WHERE i.indrelid = %(oid)s AND i.indnkeyatts = %(n)s
              AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
                  = %(cols)s::text[]
            ORDER BY c.relname""",
        {"oid": oid, "n": len(cols), "cols": list(cols)})
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def leading_index_exists(conn, oid: int, column: str) -> bool:
    """Whether a valid, non-partial index of ``oid`` leads with ``column``."""
    return conn.execute(
        """SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = %s AND i.indisvalid AND i.indpred IS NULL AND a.attname = %s LIMIT 1""",
        (oid, column)).fetchone() is not None


def valid_unique_index(conn, oid: int, cols: Sequence[str]) -> str | None:
    """Name of a valid, non-partial unique btree index on exactly ``cols``, or None."""
    for ix in indexes_on(conn, oid, cols):
        if ix["is_unique"] and ix["is_valid"] and ix["method"] == "btree" and not ix["partial"]:
            return ix["index_name"]
    return None


def drop_invalid_indexes(conn, schema: str, oid: int, cols: Sequence[str], why: str) -> list[str]:
    """``DROP INDEX CONCURRENTLY`` every INVALID index on exactly ``cols`` (a failed or killed concurrent
    build leaves one; killed after it was marked ready, a unique one still rejects new rows). ``conn`` must be in autocommit."""
    from psycopg import sql

    dropped = []
    for ix in indexes_on(conn, oid, cols):
        if not ix["is_valid"]:
            log.warning("dropping INVALID index %s.%s (%s)", schema, ix["index_name"], why)
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(schema, ix["index_name"])))
            dropped.append(ix["index_name"])
    return dropped


# --- lock timeouts ---------------------------------------------------------------------
def set_timeouts(conn, *, lock_timeout_ms: int, statement_timeout_ms: int | None = None,
                 local: bool = True) -> None:
    """``SET [LOCAL] lock_timeout`` (and ``statement_timeout``): a statement waits for a lock at
    most that long, so writers queue behind it for at most that long too."""
    scope = "true" if local else "false"
    conn.execute("SELECT set_config('lock_timeout', %s, " + scope + ")", (f"{int(lock_timeout_ms)}ms",))
    if statement_timeout_ms is not None:
        conn.execute("SELECT set_config('statement_timeout', %s, " + scope + ")", (f"{int(statement_timeout_ms)}ms",))


def with_short_lock(conn, fn: Callable[[Any], Any], what: str, *, timeout_ms: int = 1_000,
                    retries: int = 30) -> tuple[Any, float]:
    """Run ``fn(conn)`` in a transaction whose lock requests give up after ``timeout_ms``, commit,
    and retry with a growing pause when a lock was not granted. Returns (result, seconds held)."""
    import psycopg

    for attempt in range(1, retries + 1):
        try:
            set_timeouts(conn, lock_timeout_ms=timeout_ms)
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


# --- online unique index -------------------------------------------------------------
class UniqueIndexBuildFailed(RuntimeError):
    """Writers kept adding duplicates (or held locks) through every attempt."""


def build_unique_index(conn, *, schema: str, table: str, cols: Sequence[str], index_name: str,
                       clean: Callable[[], int], max_attempts: int = 3, lock_timeout_ms: int = 300_000,
                       writer_advice: str = "") -> dict[str, Any]:
    """A valid unique btree index on exactly ``cols`` of ``schema.table``, built without blocking
    readers or writers. ``conn`` must be in autocommit.

    An INVALID leftover on those columns (a killed build) is dropped first; a valid unique index
    already there is returned as is (``status: exists``). Each attempt runs ``CREATE UNIQUE INDEX
    CONCURRENTLY``; when writers slipped new duplicates in, ``clean()`` removes them, the invalid index
    is dropped and the build retried; a lock or statement timeout or a deadlock is retried too. After ``max_attempts`` it
    raises :class:`UniqueIndexBuildFailed` with ``writer_advice``; no invalid index is left behind.
    """
    import psycopg
    from psycopg import sql

    qualified = f"{schema}.{table}"
    oid = table_oid(conn, schema, table)
    if oid is None:
        raise ValueError(f"table {qualified} does not exist")
    report: dict[str, Any] = {"table": qualified, "index": index_name, "attempts": 0, "recleaned_rows": 0,
                              "dropped_invalid": drop_invalid_indexes(conn, schema, oid, cols, "leftover of a killed build")}
    existing = valid_unique_index(conn, oid, cols)
    if existing:
        log.info("%s: valid unique index %s already exists", qualified, existing)
        report.update(status="exists", index=existing)
        return report
    create = sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})").format(
        sql.Identifier(index_name), sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, cols)))
    last_error: Exception | None = None
    for attempt in range(1, max_attempts + 1):
        report["attempts"] = attempt
        set_timeouts(conn, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=0, local=False)
        t0 = time.monotonic()
        try:
            log.info("%s: CREATE UNIQUE INDEX CONCURRENTLY %s (attempt %d/%d)", qualified, index_name, attempt,
                     max_attempts)
            conn.execute(create)
        except (psycopg.errors.UniqueViolation, psycopg.errors.LockNotAvailable,
                psycopg.errors.QueryCanceled, psycopg.errors.DeadlockDetected) as exc:
            last_error = exc
            log.warning("%s: unique build attempt %d failed after %.1fs: %s", qualified, attempt,
                        time.monotonic() - t0, str(exc).strip().replace("\n", " "))
            if isinstance(exc, psycopg.errors.UniqueViolation):
                report["recleaned_rows"] += int(clean() or 0)
            report["dropped_invalid"] += drop_invalid_indexes(conn, schema, oid, cols, "failed build attempt")
            continue
        finally:
            set_timeouts(conn, lock_timeout_ms=0, statement_timeout_ms=0, local=False)
        report.update(status="built", build_seconds=round(time.monotonic() - t0, 3))
        log.info("%s: unique index %s built in %.1fs", qualified, index_name, report["build_seconds"])
        return report
    raise UniqueIndexBuildFailed(
        f"{qualified}: CREATE UNIQUE INDEX CONCURRENTLY on ({', '.join(cols)}) failed {max_attempts} times "
        f"(last: {str(last_error).strip()}); no invalid index was left behind. {writer_advice}".strip())
