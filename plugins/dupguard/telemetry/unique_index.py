"""The permanent fix: unique indexes on the telemetry id columns, built online.

Called by ``telemetry_unique_indexes`` (manual, one-shot, safe to run again), per table:

1. :func:`dedup_table` removes every duplicate of the whole table: one read-only scan finds the
   duplicated ids, then batches of ids are cleaned in short transactions (progress logged as
   counts and percent);
2. :func:`build_unique_index` runs ``CREATE UNIQUE INDEX CONCURRENTLY`` through
   :func:`dupguard.common.pg.build_unique_index`: an INVALID leftover is dropped first; when the
   build fails because writers added new duplicates meanwhile, :func:`dedup_pass` cleans again
   and the build is retried (bounded attempts);
3. :func:`drop_old_index` drops the old non-unique id index once the unique one is valid.

No lock is held longer than one batch: batches are short DELETEs; the concurrent build and
drops take SHARE UPDATE EXCLUSIVE, which does not block readers or writers.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from dupguard.common import pg
from dupguard.common.connections import pg_connect
from dupguard.telemetry.catalog import check_table, render, unique_index
from dupguard.telemetry.config import (BATCH_LOCK_TIMEOUT_MS, BATCH_STATEMENT_TIMEOUT_MS, BUILD_LOCK_TIMEOUT_MS,
                                       DEFAULT_BATCH_SIZE, DEFAULT_MAX_BUILD_ATTEMPTS, TelemetryConfigError,
                                       TelemetryTable)

log = logging.getLogger(__name__)

#: Where the build failure sends the on-call engineer when writers keep adding duplicates.
WRITER_ADVICE = ("If writers keep inserting duplicates, switch the ingestion to "
                 "dupguard.telemetry.insert.IdempotentInserter (NOT EXISTS insert) and run the DAG again.")


def _connect(conn_id: str, what: str):
    return pg_connect(conn_id, autocommit=True, application_name=f"dupguard:unique:{what}")


def dedup_pass(conn, tbl: TelemetryTable, *, batch_size: int = DEFAULT_BATCH_SIZE,
               progress_every: float = 5.0) -> dict[str, Any]:
    """One full pass on an autocommit connection, in two phases.

    1. One read-only scan finds the ids with more than one row (ACCESS SHARE only, no row
       lock: readers and writers never wait for it) into a temporary table.
    2. Those ids are cleaned ``batch_size`` ids per transaction, every copy found through the
       id index (copies written since phase 1 included). Locks last one batch.
    Duplicates written after phase 1 of ids it did not see are the build's business: a failed
    unique build cleans again and retries.
    """
    if batch_size < 1:
        raise TelemetryConfigError(f"batch_size must be positive, got {batch_size}")
    t0 = time.monotonic()
    conn.execute("DROP TABLE IF EXISTS pg_temp.dupguard_dup_ids")
    pg.set_timeouts(conn, lock_timeout_ms=BATCH_LOCK_TIMEOUT_MS, statement_timeout_ms=0, local=False)
    conn.execute(render("unique_index/find_duplicate_ids.sql", tbl))
    total = conn.execute("SELECT count(*) FROM pg_temp.dupguard_dup_ids").fetchone()[0]
    scan_s = time.monotonic() - t0
    log.info("%s dedup: %d ids have more than one row (found in %.1fs)", tbl.qualified, total, scan_s)
    delete = render("unique_index/delete_batch_duplicates.sql", tbl)
    pg.set_timeouts(conn, lock_timeout_ms=BATCH_LOCK_TIMEOUT_MS, statement_timeout_ms=BATCH_STATEMENT_TIMEOUT_MS,
                    local=False)
    after, deleted, ids, batches, longest = 0, 0, 0, 0, 0.0
    last_log = time.monotonic()
    try:
        while after < total:
            b0 = time.monotonic()
            rows_deleted, ids_affected = conn.execute(delete, {"after": after, "batch_size": batch_size}).fetchone()
            longest = max(longest, time.monotonic() - b0)
            batches += 1
            after = min(total, after + batch_size)
            deleted += int(rows_deleted)
            ids += int(ids_affected)
            now = time.monotonic()
            if after >= total or now - last_log >= progress_every:
                log.info("%s dedup: batch %d, %d of %d duplicate ids done (%.1f%%), %d rows deleted",
                         tbl.qualified, batches, after, total, 100.0 * after / total, deleted)
                last_log = now
    finally:
        pg.set_timeouts(conn, lock_timeout_ms=0, statement_timeout_ms=0, local=False)
        conn.execute("DROP TABLE IF EXISTS pg_temp.dupguard_dup_ids")
    if total == 0:
        log.info("%s dedup: 100%% done, no duplicate", tbl.qualified)
    return {"table": tbl.qualified, "duplicate_ids_found": int(total), "scan_seconds": round(scan_s, 3),
            "batches": batches, "rows_deleted": deleted, "ids_affected": ids,
            "seconds": round(time.monotonic() - t0, 3), "longest_batch_s": round(longest, 3)}


def dedup_table(conn_id: str, tbl: TelemetryTable, *, batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
    """Remove every duplicate of the whole table (batched, online). Skipped once a valid
    unique index exists: the table cannot hold duplicates any more."""
    with _connect(conn_id, f"dedup:{tbl.key}") as conn:
        oid = check_table(conn, tbl, need_indexes=False)
        if not any(ix["is_valid"] and ix["method"] == "btree" and not ix["partial"]
                   for ix in pg.indexes_on(conn, oid, [tbl.id_column])):
            raise TelemetryConfigError(f"no valid btree index on {tbl.qualified} ({tbl.id_column}): the batched "
                                       f"dedup walks that index; create it first")
        unique = unique_index(conn, tbl, oid)
        if unique:
            log.info("%s: valid unique index %s exists, nothing to dedup", tbl.qualified, unique)
            return {"table": tbl.qualified, "skipped": True, "reason": f"valid unique index {unique}",
                    "rows_deleted": 0}
        report = dedup_pass(conn, tbl, batch_size=batch_size)
    report["skipped"] = False
    return report


def build_unique_index(conn_id: str, tbl: TelemetryTable, *, batch_size: int = DEFAULT_BATCH_SIZE,
                       max_attempts: int = DEFAULT_MAX_BUILD_ATTEMPTS,
                       build_lock_timeout_ms: int = BUILD_LOCK_TIMEOUT_MS) -> dict[str, Any]:
    """``CREATE UNIQUE INDEX CONCURRENTLY`` on the id column, retried after a re-clean when
    writers added duplicates meanwhile. Returns what it did; raises
    :class:`~dupguard.common.pg.UniqueIndexBuildFailed` after ``max_attempts``."""
    t0 = time.monotonic()
    with _connect(conn_id, f"build:{tbl.key}") as conn:
        check_table(conn, tbl, need_indexes=False)
        report = pg.build_unique_index(
            conn, schema=tbl.schema, table=tbl.table, cols=[tbl.id_column], index_name=tbl.unique_index_name,
            clean=lambda: dedup_pass(conn, tbl, batch_size=batch_size)["rows_deleted"],
            max_attempts=max_attempts, lock_timeout_ms=build_lock_timeout_ms, writer_advice=WRITER_ADVICE)
    report["seconds"] = round(time.monotonic() - t0, 3)
    return report


def drop_old_index(conn_id: str, tbl: TelemetryTable) -> dict[str, Any]:
    """Drop the non-unique index(es) on the id column once a valid unique index covers it."""
    from psycopg import sql

    with _connect(conn_id, f"drop-old:{tbl.key}") as conn:
        oid = check_table(conn, tbl, need_indexes=False)
        unique = unique_index(conn, tbl, oid)
        if not unique:
            raise TelemetryConfigError(f"{tbl.qualified}: no valid unique index on {tbl.id_column}; refusing to "
                                       f"drop the old id index (the cleanup and the ingestion need it)")
        dropped = []
        for ix in pg.indexes_on(conn, oid, [tbl.id_column]):
            if not ix["is_unique"] and ix["method"] == "btree" and not ix["partial"]:
                name = f"{tbl.schema}.{ix['index_name']}"
                log.warning("dropping index %s (superseded by the unique index %s)", name, unique)
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(tbl.schema, ix["index_name"])))
                dropped.append(name)
        if not dropped:
            log.info("%s: no old non-unique index on %s left", tbl.qualified, tbl.id_column)
    return {"table": tbl.qualified, "unique_index": unique, "dropped": dropped}
