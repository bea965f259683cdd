"""Per-minute duplicate cleanup of the telemetry tables (``blocks_duplicate_cleanup``).

The ingestion service's HTTP clients retry with the same UUID, so a table gains copies of the
same id. Each minute, per table, :func:`cleanup_table` deletes every copy but one of the ids with
a row inserted in the run's window, wherever the copies lie in time, in one short transaction.

Keep rule, the same everywhere (``include/sql/telemetry/delete_extra_copies.sql``): per id, the row
with the oldest ``insert_time`` survives; NULL times sort last (a NULL row is kept only when the
id has no timed row); ties are broken by physical position (``ctid``), so two cleanups running
at once keep the same row.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from dupguard.common import pg
from dupguard.common.connections import pg_connect
from dupguard.common.errors import ConfigError
from dupguard.telemetry.catalog import check_table, drop_invalid_leftovers, invalid_indexes, render, unique_index
from dupguard.telemetry.config import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS, TelemetryTable
from dupguard.telemetry.window import Window

log = logging.getLogger(__name__)


class InvalidIndexDropped(ConfigError):
    """An INVALID index on the id column was found and dropped this run (the cleanup itself
    ran): raised after the work so the incident alert fires once; the next run is clean."""


def watch_invalid_indexes(conn_id: str, tbl: TelemetryTable, conn, oid: int) -> dict[str, Any]:
    """The INVALID-index watch, one catalog query per run; drops what it finds (autocommit)."""
    found = invalid_indexes(conn, tbl, oid)
    if not found:
        return {"invalid_indexes": [], "dropped": [], "build_in_progress": False}
    with pg_connect(conn_id, autocommit=True, application_name=f"dupguard:cleanup:{tbl.key}") as ac:
        out = drop_invalid_leftovers(ac, tbl, oid, "left by a killed or failed concurrent build; "
                                                   "a unique one rejects new rows")
    log.warning("%s: INVALID index(es) %s on %s: dropped %s%s", tbl.qualified, found, tbl.id_column,
                out["dropped"], " (a build is running now: left to it)" if out["build_in_progress"] else "")
    return {"invalid_indexes": found, **out}


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
    report: dict[str, Any] = {"table": tbl.qualified, "id_column": tbl.id_column, "window": window.as_dict()}
    with pg_connect(conn_id, application_name=f"dupguard:cleanup:{tbl.key}") as conn:
        oid = check_table(conn, tbl)
        report["invalid_index_watch"] = watch = watch_invalid_indexes(conn_id, tbl, conn, oid)
        unique = unique_index(conn, tbl, oid)
        conn.rollback()
        if unique:
            report.update(skipped=True, reason=f"valid unique index {unique} on {tbl.id_column}",
                          rows_deleted=0, ids_affected=0, window_ids=None)
            log.info("%s: delete skipped, %s already prevents duplicates", tbl.qualified, unique)
            _raise_if_dropped(report, watch)
            return report
        t0 = time.perf_counter()
        with conn.transaction():
            pg.set_timeouts(conn, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms)
            counts = delete_window_duplicates(conn, tbl, window)
        report.update(skipped=False, **counts, seconds=round(time.perf_counter() - t0, 3))
    log.info("%s: window %s .. %s (%s, %.1f min): %d ids in window, deleted %d rows of %d ids in %.3fs",
             tbl.qualified, window.start.isoformat(), window.end.isoformat(), window.reason,
             report["window"]["minutes"], report["window_ids"], report["rows_deleted"], report["ids_affected"],
             report["seconds"])
    _raise_if_dropped(report, watch)
    return report


def _raise_if_dropped(report: dict[str, Any], watch: dict[str, Any]) -> None:
    if watch["dropped"]:
        raise InvalidIndexDropped(
            f"{report['table']}: dropped INVALID index(es) {watch['dropped']} on {report['id_column']} left by a "
            f"killed or failed CREATE UNIQUE INDEX CONCURRENTLY (writers' retried inserts were failing); the "
            f"cleanup ran: {report}. Re-run telemetry_unique_indexes to build it again.")
