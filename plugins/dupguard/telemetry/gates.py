"""The telemetry quality gates, declared as data (:class:`~dupguard.common.gate.GateSpec`) and
validated on one-row aggregates that PostgreSQL computes.

- :data:`WINDOW_GATE` (``blocks_duplicate_cleanup.quality_gate``): per table, no id with a row in
  the run's window still has a second copy inserted before the window's end.
- :data:`UNIQUE_GATE` (``telemetry_unique_indexes.quality_gate``): per table, a valid unique index
  on the id column, no INVALID id index left, no duplicate id.

Each check names its column ``<table key>_<figure>``, so an alert says which table failed.
"""
from __future__ import annotations

from typing import Any

from dupguard.common.connections import pg_connect
from dupguard.common.gate import MAX_OFFENDING, GateSpec, at_least, at_most, run_gate
from dupguard.telemetry.catalog import check_table, render
from dupguard.telemetry.config import (DUPLICATE_IDS_MAX, INVALID_ID_INDEXES_MAX, TABLES,
                                       VALID_UNIQUE_INDEXES_MIN, WINDOW_DUPLICATE_IDS_MAX, TelemetryTable)
from dupguard.telemetry.window import Window

_TABLE_NAMES = tuple(t.qualified for t in TABLES)

WINDOW_GATE = GateSpec(
    "telemetry_window_duplicates",
    tuple(at_most(f"{t.key}_duplicate_ids", WINDOW_DUPLICATE_IDS_MAX.value, WINDOW_DUPLICATE_IDS_MAX.reason)
          for t in TABLES),
    _TABLE_NAMES)

UNIQUE_GATE = GateSpec(
    "telemetry_unique_indexes",
    tuple(check for t in TABLES for check in (
        at_least(f"{t.key}_valid_unique_indexes", VALID_UNIQUE_INDEXES_MIN.value, VALID_UNIQUE_INDEXES_MIN.reason),
        at_most(f"{t.key}_invalid_id_indexes", INVALID_ID_INDEXES_MAX.value, INVALID_ID_INDEXES_MAX.reason),
        at_most(f"{t.key}_duplicate_ids", DUPLICATE_IDS_MAX.value, DUPLICATE_IDS_MAX.reason))),
    _TABLE_NAMES)


def _one_row(conn, parts: list[tuple[str, Any, tuple[str, ...]]]) -> str:
    """One row from per-table one-row queries: ``(key, query, columns)``, each column ``c``
    renamed ``<key>_<c>``. Values are literals: the gate runs it as a query asset."""
    from psycopg import sql

    selects, sources = [], []
    for n, (key, query, cols) in enumerate(parts):
        alias = sql.Identifier(f"q{n}")
        sources.append(sql.SQL("({}) AS {}").format(query, alias))
        selects += [sql.SQL("{}.{} AS {}").format(alias, sql.Identifier(c), sql.Identifier(f"{key}_{c}"))
                    for c in cols]
    return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(selects),
                                               sql.SQL(" CROSS JOIN ").join(sources)).as_string(conn)


def window_duplicates(tbl: TelemetryTable, window_start: Any, window_end: Any):
    """The ids of ``tbl`` with a row in the window that still have a second copy
    (``cleanup/find_window_duplicates.sql``); the bounds are ``psycopg.sql`` pieces."""
    return render("cleanup/find_window_duplicates.sql", tbl, window_start=window_start, window_end=window_end)


def count_window_duplicates(tbl: TelemetryTable, window_start: Any, window_end: Any):
    """One row, ``duplicate_ids``: how many ids :func:`window_duplicates` finds."""
    from psycopg import sql

    return sql.SQL("SELECT count(*) AS duplicate_ids FROM ({}) AS d").format(
        window_duplicates(tbl, window_start, window_end))


def window_gate(conn_id: str, window: Window) -> dict[str, Any]:
    """:data:`WINDOW_GATE` on the run's window; raises ``GateFailed`` (listing a few of the ids)
    when copies survived."""
    from psycopg import sql

    bounds = (sql.Literal(window.start), sql.Literal(window.end))
    with pg_connect(conn_id, application_name="dupguard:cleanup:gate") as conn:
        for t in TABLES:
            check_table(conn, t, need_indexes=False)
        query = _one_row(conn, [(t.key, count_window_duplicates(t, *bounds), ("duplicate_ids",)) for t in TABLES])

    def offending() -> list[str]:
        found: list[str] = []
        with pg_connect(conn_id, application_name="dupguard:cleanup:gate") as conn:
            for t in TABLES:
                q = sql.SQL("{} LIMIT {}").format(window_duplicates(t, *bounds), MAX_OFFENDING - len(found))
                found += [f"{t.qualified}.{t.id_column}={r[0]}" for r in conn.execute(q)]
        return found

    summary = run_gate(WINDOW_GATE, conn_id=conn_id, query=query, offending=offending)
    summary["window"] = window.as_dict()
    return summary


def unique_gate(conn_id: str) -> dict[str, Any]:
    """:data:`UNIQUE_GATE`; raises ``GateFailed`` when a table lacks its valid unique index."""
    from psycopg import sql

    parts = []
    with pg_connect(conn_id, autocommit=True, application_name="dupguard:unique:gate") as conn:
        for t in TABLES:
            oid = check_table(conn, t, need_indexes=False)
            parts += [(t.key, render("unique_index/count_id_indexes.sql", t, table_oid=sql.Literal(oid),
                                     id_name=sql.Literal(t.id_column)),
                       ("valid_unique_indexes", "invalid_id_indexes")),
                      (t.key, render("unique_index/count_duplicate_ids.sql", t), ("duplicate_ids",))]
        query = _one_row(conn, parts)
    return run_gate(UNIQUE_GATE, conn_id=conn_id, query=query)
