"""``dedup_health_daily``: the checks the runbooks asked people to run by hand each day.

One gate per system. Each gathers its figures with aggregate queries, logs and returns them,
and validates them with :func:`dupguard.gate.run_gate`. A system that is not set up yet
(a table missing, the migration not run) is reported as such and its gate is skipped, so the
run shows it without a crash and without a false alarm.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from dupguard import settings

log = logging.getLogger(__name__)

#: The daily window of the telemetry check ends this long before the logical date, so the
#: copies the per-minute cleanup has not reached yet do not count as a breach.
TELEMETRY_SETTLE = timedelta(minutes=10)
TELEMETRY_DAY = timedelta(days=1)


class NotSetUp(Exception):
    """The system this gate checks is not set up yet (reported, gate skipped)."""


def _zero(column: str):
    import great_expectations as gx

    return gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=0)


# --- telemetry -----------------------------------------------------------------------
def telemetry_health(conn_id: str, logical_date: datetime) -> dict[str, Any]:
    import pandas as pd
    from psycopg import sql

    from dupguard import telemetry
    from dupguard.connections import pg_connect

    end = logical_date - TELEMETRY_SETTLE
    start = end - TELEMETRY_DAY
    rows, missing = [], []
    with pg_connect(conn_id, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '10min'")
        for tbl in telemetry.TABLES:
            try:
                oid = telemetry.check_table(conn, tbl, need_indexes=False)
            except telemetry.TelemetryConfigError as exc:
                missing.append(str(exc))
                continue
            q = sql.SQL(settings.read_sql("health/telemetry_table.sql")).format(**telemetry.idents(tbl))
            ids, dups, size = conn.execute(q, {"start": start, "end": end, "regclass": oid}).fetchone()
            rows.append({"table": tbl.qualified, "ids_in_window": ids, "duplicate_ids": dups,
                         "unique_index": telemetry.valid_unique_index(conn, oid, tbl.id_column) or "",
                         "size_bytes": size})
    report = {"window": [start.isoformat(), end.isoformat()], "tables": rows, "not_set_up": missing}
    _log_rows("telemetry", rows)
    if missing:
        report["status"] = "not set up"
        raise NotSetUp("; ".join(missing))
    report["gate"] = _gate("telemetry_health", [_zero("duplicate_ids")], pd.DataFrame(rows))
    report["status"] = "healthy"
    return report


# --- breezeway -----------------------------------------------------------------------
def breezeway_health(conn_id: str) -> dict[str, Any]:
    import great_expectations as gx
    import pandas as pd
    from psycopg import sql

    from dupguard import breezeway_config as cfg
    from dupguard.connections import pg_connect

    rows, missing = [], []
    with pg_connect(conn_id, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '10min'")
        status = _migration_status(conn)
        for t in cfg.CHILD_TABLES:
            oid = conn.execute("SELECT to_regclass(%s)::oid", (f'"{cfg.SCHEMA}"."{t.name}"',)).fetchone()[0]
            if oid is None:
                missing.append(f"table {t.qualified} does not exist")
                continue
            k1, k2 = t.natural_key
            q = sql.SQL(settings.read_sql("health/breezeway_table.sql")).format(
                table=sql.Identifier(cfg.SCHEMA, t.name), k1=sql.Identifier(k1), k2=sql.Identifier(k2))
            dups, valid, size = conn.execute(q, {"regclass": oid, "constraint": t.constraint}).fetchone()
            rows.append({"table": t.qualified, "duplicate_keys": dups, "constraint_valid": valid, "size_bytes": size})
    report = {"migration": status, "tables": rows, "not_set_up": missing}
    _log_rows("breezeway", rows)
    if missing:
        report["status"] = "not set up"
        raise NotSetUp("; ".join(missing))
    if status != "complete":
        report["status"] = f"migration {status}: duplicates are expected until it completes"
        raise NotSetUp(f"the child-table migration is {status}; run {cfg.MIGRATION_DAG_ID} first "
                       f"(figures: {rows})")
    exps = [_zero("duplicate_keys"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="constraint_valid", min_value=1, max_value=1)]
    report["gate"] = _gate("breezeway_health", exps, pd.DataFrame(rows))
    report["status"] = "healthy"
    return report


def _migration_status(conn) -> str:
    from dupguard.breezeway import ledger_row

    row = ledger_row(conn)
    return row["status"] if row else "not run"


# --- positions -------------------------------------------------------------------------
def positions_health(conn_id: str, logical_date: datetime, *, max_hours_stale: float,
                     min_unresolved_rows: int) -> dict[str, Any]:
    """The refresh DAG's post-publish health gate, run on its own (same figures, same thresholds)."""
    from dupguard import positions
    from dupguard.connections import clickhouse_client

    t = positions.tables_for(conn_id)
    with clickhouse_client(conn_id) as ch:
        if not positions.describe(ch, t.db, t.unified)[0]:
            raise NotSetUp(f"table {t.db}.{t.unified} does not exist yet: the first unified_positions_refresh "
                           f"run creates it")
        result = positions.health_gate(ch, t, as_of=logical_date, max_hours_stale=max_hours_stale,
                                       min_unresolved_rows=min_unresolved_rows)
    return {"table": f"{t.db}.{t.unified}", **result["metrics"],
            "thresholds": {"max_hours_stale": max_hours_stale, "min_unresolved_rows": min_unresolved_rows},
            "gate": {"success": result["gate"]["success"], "data_docs": result["gate"]["data_docs"]},
            "status": "healthy"}


# --- shared ------------------------------------------------------------------------------
def _gate(name: str, expectations: list, df) -> dict[str, Any]:
    from dupguard.gate import run_gate

    summary = run_gate(name, expectations, dataframe=df)
    return {"success": summary["success"], "failed": summary["failed"], "data_docs": summary["data_docs"]}


def _log_rows(system: str, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        log.info("%s health | %s", system, " | ".join(f"{k}={v}" for k, v in r.items()))
