"""Per-minute duplicate cleanup of the telemetry tables (blocks, streams, processes).

The ingestion service's HTTP clients retry with the same UUID, so a table gains copies of
the same id. ``blocks_duplicate_cleanup`` calls :func:`cleanup_table` once per table each
minute and :func:`window_gate` after; the permanent fix (unique indexes, built online) is in
:mod:`dupguard.telemetry_unique`, and the insert an ingestion service should use is in
:mod:`dupguard.telemetry_insert`.

Keep rule, the same everywhere: per id, the row with the oldest ``insert_time`` survives;
NULL times sort last (a NULL row is kept only when the id has no timed row); ties are broken
by physical position (``ctid``), so two cleanups running at once keep the same row.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dupguard import settings

log = logging.getLogger(__name__)


# --- configuration ------------------------------------------------------------
@dataclass(frozen=True)
class TelemetryTable:
    """One cleaned table: schema-qualified name, id column, insertion-time column."""

    key: str
    schema: str
    table: str
    id_column: str
    time_column: str = "insert_time"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


#: The tables the telemetry DAGs clean (connection ``telemetry_postgres``).
TABLES: tuple[TelemetryTable, ...] = (
    TelemetryTable("blocks", "public", "blocks", "block_id"),
    TelemetryTable("streams", "public", "streams", "stream_id"),
    TelemetryTable("processes", "public", "processes", "process_id"),
)
TABLE_KEYS: tuple[str, ...] = tuple(t.key for t in TABLES)

#: Window of the per-minute run: ends at the run's logical date, reaches back LOOKBACK,
#: or back to the last successful run when that is older (downtime), at most MAX_CATCHUP.
DEFAULT_LOOKBACK = timedelta(minutes=5)
DEFAULT_MAX_CATCHUP = timedelta(hours=24)
#: A stuck lock fails the task instead of piling up runs; a slow delete is cut short.
DEFAULT_LOCK_TIMEOUT_MS = 5_000
DEFAULT_STATEMENT_TIMEOUT_MS = 50_000
#: Gate threshold: after a cleanup no id with a row in the window may have a second row.
MAX_DUPLICATE_IDS_AFTER_CLEANUP = 0


class TelemetryConfigError(ValueError):
    """A table or column named in the configuration does not exist (or is unusable)."""


def table_config(key: str, tables: tuple[TelemetryTable, ...] = TABLES) -> TelemetryTable:
    for t in tables:
        if t.key == key:
            return t
    raise TelemetryConfigError(f"unknown telemetry table '{key}'; configured: {', '.join(t.key for t in tables)}")


def idents(tbl: TelemetryTable) -> dict[str, Any]:
    """psycopg ``sql`` pieces for the table's identifiers (quoted by the driver)."""
    from psycopg import sql

    return {"table": sql.Identifier(tbl.schema, tbl.table), "id": sql.Identifier(tbl.id_column),
            "time": sql.Identifier(tbl.time_column)}


def render(relative: str, tbl: TelemetryTable, **extra: Any):
    """``include/sql/telemetry/<relative>`` with the table's identifiers filled in, and
    ``{extra_copies}``: the keep rule (``extra_copies.sql``) shared by every delete."""
    from psycopg import sql

    ids = idents(tbl)
    keep_rule = sql.SQL(settings.read_sql("telemetry/extra_copies.sql")).format(**ids)
    return sql.SQL(settings.read_sql(f"telemetry/{relative}")).format(**ids, extra_copies=keep_rule, **extra)


def check_table(conn, tbl: TelemetryTable, *, need_indexes: bool = True) -> int:
    """Validate that the table and its columns exist (and are indexed); returns the table oid.

    Raises :class:`TelemetryConfigError` naming what is missing.
    """
    row = conn.execute("SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s))::oid",
                       (tbl.schema, tbl.table)).fetchone()
    oid = row[0] if row else None
    if oid is None:
        raise TelemetryConfigError(f"telemetry table {tbl.qualified} does not exist "
                                   f"(configured as '{tbl.key}' in dupguard.telemetry.TABLES)")
    cols = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,))}
    for role, col in (("id", tbl.id_column), ("time", tbl.time_column)):
        if col not in cols:
            raise TelemetryConfigError(f"column {tbl.qualified}.{col} does not exist (configured as the {role} "
                                       f"column of '{tbl.key}'; the table has: {', '.join(sorted(cols))})")
    if need_indexes:
        for role, col in (("id", tbl.id_column), ("time", tbl.time_column)):
            if not leading_index_exists(conn, oid, col):
                raise TelemetryConfigError(
                    f"no index leads with {tbl.qualified}.{col} (the {role} column): the cleanup would scan "
                    f"the whole table every minute; create it first, e.g. CREATE INDEX CONCURRENTLY ON "
                    f"{tbl.qualified} ({col})")
    return oid


def leading_index_exists(conn, table_oid: int, column: str) -> bool:
    row = conn.execute(
        """SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           WHERE i.indrelid = %s AND i.indisvalid AND i.indpred IS NULL AND a.attname = %s LIMIT 1""",
        (table_oid, column)).fetchone()
    return row is not None


def id_indexes(conn, table_oid: int, column: str) -> list[dict[str, Any]]:
    """Indexes whose only key is ``column`` (see ``unique_index/find_id_indexes.sql``)."""
    cur = conn.execute(settings.read_sql("telemetry/unique_index/find_id_indexes.sql"),
                       {"table_oid": table_oid, "column": column})
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def valid_unique_index(conn, table_oid: int, column: str) -> str | None:
    """Name of a valid unique btree index on exactly ``column``, or None."""
    for ix in id_indexes(conn, table_oid, column):
        if ix["is_unique"] and ix["is_valid"] and ix["method"] == "btree":
            return ix["index_name"]
    return None


# --- window -------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    reason: str  # "lookback", "catch-up" (back to the last successful run) or "capped"

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "reason": self.reason,
                "minutes": round((self.end - self.start).total_seconds() / 60, 2)}


def compute_window(logical_date: datetime, last_success: datetime | None, *,
                   lookback: timedelta = DEFAULT_LOOKBACK, max_catchup: timedelta = DEFAULT_MAX_CATCHUP) -> Window:
    """Window of a run: ``[start, logical_date)``, never wall-clock now.

    ``start`` is ``logical_date - lookback``; when the last successful run ended before that
    (scheduler down, DAG paused, failed runs), it reaches back to it, at most ``max_catchup``.
    """
    if logical_date is None:
        raise ValueError("the cleanup window needs the run's logical date (a run without one cannot be cleaned)")
    if lookback <= timedelta(0) or max_catchup < lookback:
        raise ValueError(f"bad window settings: lookback={lookback}, max_catchup={max_catchup}")
    start, reason = logical_date - lookback, "lookback"
    if last_success is not None and last_success < start:
        start, reason = last_success, "catch-up"
        if start < logical_date - max_catchup:
            start, reason = logical_date - max_catchup, "capped"
    return Window(start, logical_date, reason)


def window_from_context(context: dict[str, Any]) -> Window:
    """The run's window from its Airflow context (params ``lookback_minutes``, ``max_catchup_hours``).

    The last successful run is ``prev_data_interval_end_success`` (for this cron schedule the
    interval ends at the run's logical date); ``prev_start_date_success`` is the fallback.
    """
    params = context.get("params") or {}
    from dupguard.dagkit import run_time

    logical_date = run_time(context)
    last = _maybe(context, "prev_data_interval_end_success") or _maybe(context, "prev_start_date_success")
    return compute_window(logical_date, last,
                          lookback=timedelta(minutes=float(params.get("lookback_minutes", 5))),
                          max_catchup=timedelta(hours=float(params.get("max_catchup_hours", 24))))


def _maybe(context: dict[str, Any], key: str) -> datetime | None:
    try:
        value = context.get(key)
        value = getattr(value, "__wrapped__", value)  # the context holds lazy proxies
        return value if isinstance(value, datetime) else None
    except Exception:  # a lazy proxy that cannot be resolved: no previous run known
        log.warning("context value %s unavailable; using the plain lookback", key)
        return None


# --- cleanup ------------------------------------------------------------------
def set_timeouts(conn, *, lock_timeout_ms: int, statement_timeout_ms: int, local: bool = True) -> None:
    scope = "SET LOCAL" if local else "SET"
    conn.execute(f"{scope} lock_timeout = {int(lock_timeout_ms)}")
    conn.execute(f"{scope} statement_timeout = {int(statement_timeout_ms)}")


def delete_window_duplicates(conn, tbl: TelemetryTable, window: Window) -> dict[str, int]:
    """Run the delete statement in the caller's transaction; counts of what it did."""
    cur = conn.execute(render("cleanup/delete_window_duplicates.sql", tbl),
                       {"window_start": window.start, "window_end": window.end})
    window_ids, rows_deleted, ids_affected = cur.fetchone()
    return {"window_ids": int(window_ids), "rows_deleted": int(rows_deleted), "ids_affected": int(ids_affected)}


def cleanup_table(conn_id: str, tbl: TelemetryTable, window: Window, *,
                  lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
                  statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS) -> dict[str, Any]:
    """Delete the extra copies of the ids seen in ``window``: one short transaction.

    Skipped (and reported so) when a valid unique index on the id column exists. The report
    (also logged) is the task's return value.
    """
    from dupguard.connections import pg_connect

    report: dict[str, Any] = {"table": tbl.qualified, "id_column": tbl.id_column, "window": window.as_dict()}
    with pg_connect(conn_id, application_name=f"dupguard:cleanup:{tbl.key}") as conn:
        oid = check_table(conn, tbl)
        unique = valid_unique_index(conn, oid, tbl.id_column)
        conn.rollback()
        if unique:
            report.update(skipped=True, reason=f"valid unique index {unique} on {tbl.id_column}",
                          rows_deleted=0, ids_affected=0, window_ids=None)
            log.info("%s: delete skipped, %s already prevents duplicates", tbl.qualified, unique)
            return report
        import time

        t0 = time.perf_counter()
        with conn.transaction():
            set_timeouts(conn, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms)
            counts = delete_window_duplicates(conn, tbl, window)
        report.update(skipped=False, **counts, seconds=round(time.perf_counter() - t0, 3))
    log.info("%s: window %s .. %s (%s, %.1f min): %d ids in window, deleted %d rows of %d ids in %.3fs",
             tbl.qualified, window.start.isoformat(), window.end.isoformat(), window.reason,
             report["window"]["minutes"], report["window_ids"], report["rows_deleted"], report["ids_affected"],
             report["seconds"])
    return report


# --- gate ---------------------------------------------------------------------
def window_gate_query(conn, tables: list[TelemetryTable], window: Window) -> str:
    """One-row aggregate: ``<key>_duplicate_ids`` per table for ``window`` (values as literals)."""
    from psycopg import sql

    parts = []
    for tbl in tables:
        q = render("cleanup/count_window_duplicates.sql", tbl,
                   window_start=sql.Literal(window.start), window_end=sql.Literal(window.end))
        parts.append(sql.SQL("({}) AS {}").format(q, sql.Identifier(f"{tbl.key}_duplicate_ids")))
    return sql.SQL("SELECT {}").format(sql.SQL(", ").join(parts)).as_string(conn)


def window_gate(conn_id: str, tables: list[TelemetryTable], window: Window) -> dict[str, Any]:
    """Fail (GateFailed) when an id with a row in the window still has more than one row."""
    import great_expectations as gx

    from dupguard.connections import pg_connect
    from dupguard.gate import run_gate

    with pg_connect(conn_id, application_name="dupguard:cleanup:gate") as conn:
        for tbl in tables:
            check_table(conn, tbl, need_indexes=False)
        query = window_gate_query(conn, tables, window)
    expectations = [gx.expectations.ExpectColumnValuesToBeBetween(
        column=f"{t.key}_duplicate_ids", min_value=0, max_value=MAX_DUPLICATE_IDS_AFTER_CLEANUP) for t in tables]
    summary = run_gate("telemetry_window_duplicates", expectations, conn_id=conn_id, query=query)
    summary["window"] = window.as_dict()
    return summary
