"""``dedup_health_daily``: the checks the runbooks asked people to run by hand each day.

One check per system. Each gathers its figures with aggregate queries, logs and returns them,
and validates them with the system's own gate spec (:func:`dupguard.common.gate.run_gate`).
A system that is not set up yet (a table missing, the migration not run) raises
:class:`NotSetUp`, which the task adapter turns into a skipped task: the run shows it without a
crash and without a false alarm.

Everything health takes from the other systems is imported here, in one place.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from dupguard.breezeway import gates as breezeway_gates
from dupguard.breezeway import ledger as breezeway_ledger
from dupguard.breezeway.config import CHILD_TABLES, MIGRATION_DAG_ID
from dupguard.breezeway.config import SCHEMA as BREEZEWAY_SCHEMA
from dupguard.common import pg, settings
from dupguard.common.connections import clickhouse_client, pg_connect
from dupguard.common.errors import ConfigError
from dupguard.common.gate import GateSpec, run_gate, zero
from dupguard.health.config import STATEMENT_TIMEOUT_MS, TELEMETRY_DAY, TELEMETRY_SETTLE
from dupguard.positions import gates as positions_gates
from dupguard.positions import tables as positions_tables
from dupguard.positions.config import DEFAULTS as POSITIONS_DEFAULTS  # noqa: F401 - the DAG's params (tasks)
from dupguard.positions.config import PARAMS as POSITIONS_PARAM_SPECS  # noqa: F401 - the DAG's params (tasks)
from dupguard.telemetry import catalog as telemetry_catalog
from dupguard.telemetry.config import TABLES as TELEMETRY_TABLES
from dupguard.telemetry.config import TelemetryConfigError
from dupguard.telemetry.gates import WINDOW_GATE

log = logging.getLogger(__name__)

#: The per-minute cleanup's gate (no id of the window with a surviving copy), over the last day.
#: Plus: no INVALID index was left on an id column (dropped by this check; a verdict so it alerts).
TELEMETRY_HEALTH = GateSpec("telemetry_health", WINDOW_GATE.checks, WINDOW_GATE.tables).with_checks(*(
    zero(f"{tbl.key}_invalid_indexes_dropped", "a killed CREATE UNIQUE INDEX CONCURRENTLY leaves an INVALID unique "
         "index that rejects writers' new rows: dropped by this check, re-run telemetry_unique_indexes")
    for tbl in TELEMETRY_TABLES))


class NotSetUp(ConfigError):
    """The system this check looks at is not set up yet (reported, gate skipped)."""


def _frame(rows: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(rows)


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    return {"gate": summary["gate"], "evaluated": summary["evaluated"], "data_docs": summary["data_docs"]}


def _log_rows(system: str, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        log.info("%s health | %s", system, " | ".join(f"{k}={v}" for k, v in r.items()))


@contextlib.contextmanager
def _timed_pg(conn_id: str) -> Iterator[Any]:
    """An autocommit connection whose statements stop after ``STATEMENT_TIMEOUT_MS``."""
    with pg_connect(conn_id, autocommit=True, application_name="dupguard:health") as conn:
        pg.set_timeouts(conn, lock_timeout_ms=0, statement_timeout_ms=STATEMENT_TIMEOUT_MS, local=False)
        yield conn


# --- telemetry -----------------------------------------------------------------------
def telemetry_health(conn_id: str, as_of: datetime) -> dict[str, Any]:
    """Per table: ids with a row inserted in the day ending ``TELEMETRY_SETTLE`` before ``as_of``,
    how many of them have a second row anywhere, the valid unique index if any, the size."""
    end = as_of - TELEMETRY_SETTLE
    start = end - TELEMETRY_DAY
    rows, missing, figures = [], [], {}
    with _timed_pg(conn_id) as conn:
        for tbl in TELEMETRY_TABLES:
            try:
                oid = telemetry_catalog.check_table(conn, tbl, need_indexes=False)
            except TelemetryConfigError as exc:
                missing.append(str(exc))
                continue
            q = telemetry_catalog.compose(settings.read_sql("health/telemetry_table.sql"), tbl)
            ids, dups, size = conn.execute(q, {"start": start, "end": end, "regclass": oid}).fetchone()
            dropped = (telemetry_catalog.drop_invalid_leftovers(conn, tbl, oid, "found by dedup_health_daily")
                       if telemetry_catalog.invalid_indexes(conn, tbl, oid) else {"dropped": []})
            rows.append({"table": tbl.qualified, "ids_in_window": ids, "duplicate_ids": dups,
                         "unique_index": telemetry_catalog.unique_index(conn, tbl, oid) or "", "size_bytes": size,
                         "invalid_indexes_dropped": dropped["dropped"]})
            figures[f"{tbl.key}_duplicate_ids"] = dups
            figures[f"{tbl.key}_invalid_indexes_dropped"] = len(dropped["dropped"])
    _log_rows("telemetry", rows)
    if missing:
        raise NotSetUp("; ".join(missing))
    summary = run_gate(TELEMETRY_HEALTH, dataframe=_frame([figures]))
    return {"window": [start.isoformat(), end.isoformat()], "tables": rows, **_verdict(summary), "status": "healthy"}


# --- breezeway -----------------------------------------------------------------------
def breezeway_health(conn_id: str) -> dict[str, Any]:
    """The migration's status (ledger) and, per child table, duplicate natural keys, the unique
    constraint present and valid, the size; judged once the migration is complete."""
    with _timed_pg(conn_id) as conn:
        row = breezeway_ledger.ledger_row(conn)
        status = row["status"] if row else "not run"
        present = [t for t in CHILD_TABLES if pg.table_oid(conn, BREEZEWAY_SCHEMA, t.name) is not None]
        rows = breezeway_gates.health_figures(conn, present) if present else []
    _log_rows("breezeway", rows)
    missing = [f"table {t.qualified} does not exist" for t in CHILD_TABLES if t not in present]
    if missing:
        raise NotSetUp("; ".join(missing))
    if status != "complete":
        raise NotSetUp(f"the child-table migration is {status}: duplicates are expected until it completes; "
                       f"run {MIGRATION_DAG_ID} first (figures: {rows})")
    summary = run_gate(breezeway_gates.HEALTH, dataframe=_frame(rows))
    return {"migration": status, "tables": rows, **_verdict(summary), "status": "healthy"}


# --- positions -------------------------------------------------------------------------
def positions_health(conn_id: str, as_of: datetime, *, max_hours_stale: float,
                     min_unresolved_rows: int) -> dict[str, Any]:
    """The refresh DAG's post-publish health gate, run on its own (same figures, same thresholds)."""
    t = positions_tables.tables_for(conn_id)
    with clickhouse_client(conn_id) as ch:
        if not positions_tables.exists(ch, t.db, t.unified):
            raise NotSetUp(f"table {t.db}.{t.unified} does not exist yet: the first unified_positions_refresh "
                           "run creates it")
        result = positions_gates.health_gate(ch, t, as_of=as_of, max_hours_stale=max_hours_stale,
                                             min_unresolved_rows=min_unresolved_rows)
    return {"table": f"{t.db}.{t.unified}", **result["metrics"],
            "thresholds": {"max_hours_stale": max_hours_stale, "min_unresolved_rows": min_unresolved_rows},
            **_verdict(result["gate"]), "status": "healthy"}
