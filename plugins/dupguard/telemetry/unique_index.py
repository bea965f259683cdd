"""The permanent fix: unique indexes on the telemetry id columns, built online.

Called by ``telemetry_unique_indexes`` (manual, one-shot, safe to run again), per table:

1. :func:`dedup_table` removes every duplicate of the whole table: one read-only scan finds the
   duplicated ids, then batches of ids are cleaned in short transactions (progress logged as
   counts and percent);
2. :func:`build_unique_index` runs ``CREATE UNIQUE INDEX CONCURRENTLY``; an INVALID index left
   by an earlier failed build is dropped first; when the build fails because writers added new
   duplicates meanwhile, it cleans again and retries (bounded attempts);
3. :func:`drop_old_index` drops the old non-unique id index once the unique one is valid;
4. :func:`unique_gate` checks: a valid unique index per id column, no invalid id index left,
   zero duplicate ids.

No lock is held longer than one batch: batches are short DELETEs; the concurrent build and
drops take SHARE UPDATE EXCLUSIVE, which does not block readers or writers.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from dupguard.telemetry import (TelemetryTable, check_table, id_indexes, render, set_timeouts,
                                valid_unique_index)

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5_000  # duplicate ids per delete transaction (~0.05-0.1 s)
DEFAULT_MAX_BUILD_ATTEMPTS = 3
#: Per batch: wait at most this long for a row lock, and cut a batch that runs away.
BATCH_LOCK_TIMEOUT_MS = 5_000
BATCH_STATEMENT_TIMEOUT_MS = 60_000
#: The concurrent build waits for older transactions to end; give up (and retry) after this.
BUILD_LOCK_TIMEOUT_MS = 300_000


def unique_index_name(tbl: TelemetryTable) -> str:
    return f"{tbl.table}_{tbl.id_column}_unique"[:63]


def _connect(conn_id: str, what: str):
    from dupguard.connections import pg_connect

    return pg_connect(conn_id, autocommit=True, application_name=f"dupguard:unique:{what}")


def _estimate_rows(conn, oid: int) -> int:
    est = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s", (oid,)).fetchone()[0]
    return int(est) if est and est > 0 else 0


def dedup_pass(conn, tbl: TelemetryTable, oid: int, *, batch_size: int = DEFAULT_BATCH_SIZE,
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
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    t0 = time.monotonic()
    conn.execute("DROP TABLE IF EXISTS pg_temp.dupguard_dup_ids")
    set_timeouts(conn, lock_timeout_ms=BATCH_LOCK_TIMEOUT_MS, statement_timeout_ms=0, local=False)
    conn.execute(render("unique_index/find_duplicate_ids.sql", tbl))
    total = conn.execute("SELECT count(*) FROM pg_temp.dupguard_dup_ids").fetchone()[0]
    scan_s = time.monotonic() - t0
    log.info("%s dedup: %d ids have more than one row (found in %.1fs)", tbl.qualified, total, scan_s)
    delete = render("unique_index/delete_batch_duplicates.sql", tbl)
    set_timeouts(conn, lock_timeout_ms=BATCH_LOCK_TIMEOUT_MS, statement_timeout_ms=BATCH_STATEMENT_TIMEOUT_MS,
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
        set_timeouts(conn, lock_timeout_ms=0, statement_timeout_ms=0, local=False)
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
        _require_id_index(conn, tbl, oid)
        unique = valid_unique_index(conn, oid, tbl.id_column)
        if unique:
            log.info("%s: valid unique index %s exists, nothing to dedup", tbl.qualified, unique)
            return {"table": tbl.qualified, "skipped": True, "reason": f"valid unique index {unique}",
                    "rows_deleted": 0}
        report = dedup_pass(conn, tbl, oid, batch_size=batch_size)
    report["skipped"] = False
    return report


def _require_id_index(conn, tbl: TelemetryTable, oid: int) -> None:
    if not any(ix["is_valid"] and ix["method"] == "btree" for ix in id_indexes(conn, oid, tbl.id_column)):
        from dupguard.telemetry import TelemetryConfigError

        raise TelemetryConfigError(f"no valid btree index on {tbl.qualified} ({tbl.id_column}): the batched dedup "
                                   f"walks that index; create it first")


def _drop_index(conn, ix: dict[str, Any], why: str) -> str:
    from psycopg import sql

    name = f"{ix['index_schema']}.{ix['index_relname']}"
    log.warning("dropping index %s (%s)", name, why)
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
        sql.Identifier(ix["index_schema"], ix["index_relname"])))
    return name


def drop_invalid_indexes(conn, tbl: TelemetryTable, oid: int) -> list[str]:
    """Drop INVALID indexes on the id column that a failed unique build left behind."""
    dropped = []
    for ix in id_indexes(conn, oid, tbl.id_column):
        if not ix["is_valid"] and (ix["is_unique"] or ix["index_relname"] == unique_index_name(tbl)):
            dropped.append(_drop_index(conn, ix, "INVALID leftover of a failed unique build: it makes every "
                                                 "ON CONFLICT insert fail and taxes every write"))
    return dropped


def build_unique_index(conn_id: str, tbl: TelemetryTable, *, batch_size: int = DEFAULT_BATCH_SIZE,
                       max_attempts: int = DEFAULT_MAX_BUILD_ATTEMPTS,
                       build_lock_timeout_ms: int = BUILD_LOCK_TIMEOUT_MS) -> dict[str, Any]:
    """``CREATE UNIQUE INDEX CONCURRENTLY`` on the id column, retried after a re-clean when
    writers added duplicates meanwhile. Returns what it did; raises after ``max_attempts``."""
    import psycopg
    from psycopg import sql

    name = unique_index_name(tbl)
    report: dict[str, Any] = {"table": tbl.qualified, "index": f"{tbl.schema}.{name}", "attempts": 0,
                              "recleaned_rows": 0, "dropped_invalid": []}
    t0 = time.monotonic()
    with _connect(conn_id, f"build:{tbl.key}") as conn:
        oid = check_table(conn, tbl, need_indexes=False)
        existing = valid_unique_index(conn, oid, tbl.id_column)
        report["dropped_invalid"] += drop_invalid_indexes(conn, tbl, oid)
        if existing:
            log.info("%s: valid unique index %s already exists", tbl.qualified, existing)
            report.update(status="exists", index=existing, seconds=round(time.monotonic() - t0, 3))
            return report
        create = sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})").format(
            sql.Identifier(name), sql.Identifier(tbl.schema, tbl.table), sql.Identifier(tbl.id_column))
        last_error: Exception | None = None
        for attempt in range(1, max_attempts + 1):
            report["attempts"] = attempt
            set_timeouts(conn, lock_timeout_ms=build_lock_timeout_ms, statement_timeout_ms=0, local=False)
            b0 = time.monotonic()
            try:
                log.info("%s: CREATE UNIQUE INDEX CONCURRENTLY %s (attempt %d/%d)", tbl.qualified, name, attempt,
                         max_attempts)
                conn.execute(create)
            except (psycopg.errors.UniqueViolation, psycopg.errors.LockNotAvailable,
                    psycopg.errors.QueryCanceled, psycopg.errors.DeadlockDetected) as exc:
                last_error = exc
                log.warning("%s: unique build attempt %d failed after %.1fs: %s", tbl.qualified, attempt,
                            time.monotonic() - b0, str(exc).strip().replace("\n", " "))
                if isinstance(exc, psycopg.errors.UniqueViolation):
                    # writers added duplicates meanwhile: clean again while the failed index still
                    # rejects new copies of the keys it holds, then drop it and rebuild
                    again = dedup_pass(conn, tbl, oid, batch_size=batch_size)
                    report["recleaned_rows"] += again["rows_deleted"]
                report["dropped_invalid"] += drop_invalid_indexes(conn, tbl, oid)
                continue
            log.info("%s: unique index %s built in %.1fs", tbl.qualified, name, time.monotonic() - b0)
            report.update(status="built", build_seconds=round(time.monotonic() - b0, 3),
                          seconds=round(time.monotonic() - t0, 3))
            return report
        raise RuntimeError(
            f"{tbl.qualified}: CREATE UNIQUE INDEX CONCURRENTLY on {tbl.id_column} failed {max_attempts} times "
            f"(last: {str(last_error).strip()}). If writers keep inserting duplicates, switch the ingestion to "
            f"dupguard.telemetry_insert (NOT EXISTS insert) and run the DAG again; no index was left behind.")


def drop_old_index(conn_id: str, tbl: TelemetryTable) -> dict[str, Any]:
    """Drop the non-unique index(es) on the id column once a valid unique index covers it."""
    with _connect(conn_id, f"drop-old:{tbl.key}") as conn:
        oid = check_table(conn, tbl, need_indexes=False)
        unique = valid_unique_index(conn, oid, tbl.id_column)
        if not unique:
            raise RuntimeError(f"{tbl.qualified}: no valid unique index on {tbl.id_column}; refusing to drop the "
                               f"old id index (the cleanup and the ingestion need it)")
        dropped = []
        for ix in id_indexes(conn, oid, tbl.id_column):
            if not ix["is_unique"] and ix["method"] == "btree":
                dropped.append(_drop_index(conn, ix, f"superseded by the unique index {unique}"))
        if not dropped:
            log.info("%s: no old non-unique index on %s left", tbl.qualified, tbl.id_column)
    return {"table": tbl.qualified, "unique_index": unique, "dropped": dropped}


def unique_gate_query(conn, tables: list[TelemetryTable]) -> str:
    """One-row aggregate per table: valid unique indexes, invalid id indexes, duplicate ids."""
    from psycopg import sql

    parts = []
    for tbl in tables:
        table_ref = sql.SQL("to_regclass(quote_ident({}) || '.' || quote_ident({}))").format(
            sql.Literal(tbl.schema), sql.Literal(tbl.table))
        index_sql = sql.SQL(
            "(SELECT count(*) FILTER (WHERE i.indisunique AND i.indisvalid) FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = {t}"
            " AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = {c})").format(
            t=table_ref, c=sql.Literal(tbl.id_column))
        invalid_sql = sql.SQL(
            "(SELECT count(*) FILTER (WHERE NOT i.indisvalid) FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = {t}"
            " AND a.attname = {c})").format(t=table_ref, c=sql.Literal(tbl.id_column))
        dup_sql = render("unique_index/count_duplicate_ids.sql", tbl)
        parts += [sql.SQL("{} AS {}").format(index_sql, sql.Identifier(f"{tbl.key}_valid_unique_indexes")),
                  sql.SQL("{} AS {}").format(invalid_sql, sql.Identifier(f"{tbl.key}_invalid_id_indexes")),
                  sql.SQL("({}) AS {}").format(dup_sql, sql.Identifier(f"{tbl.key}_duplicate_ids"))]
    return sql.SQL("SELECT {}").format(sql.SQL(", ").join(parts)).as_string(conn)


def unique_gate(conn_id: str, tables: list[TelemetryTable]) -> dict[str, Any]:
    import great_expectations as gx

    from dupguard.gate import run_gate

    with _connect(conn_id, "gate") as conn:
        for tbl in tables:
            check_table(conn, tbl, need_indexes=False)
        query = unique_gate_query(conn, tables)
    between = gx.expectations.ExpectColumnValuesToBeBetween
    expectations = []
    for t in tables:
        expectations += [between(column=f"{t.key}_valid_unique_indexes", min_value=1),
                         between(column=f"{t.key}_invalid_id_indexes", min_value=0, max_value=0),
                         between(column=f"{t.key}_duplicate_ids", min_value=0, max_value=0)]
    return run_gate("telemetry_unique_indexes", expectations, conn_id=conn_id, query=query)
