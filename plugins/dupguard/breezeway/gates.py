"""The Breezeway gates, as data, and the figures they judge.

PostgreSQL computes one aggregate row per child table (``gate_table.sql``,
``gate_rollback_table.sql``, ``measure_table_health.sql``, unioned); great-expectations
validates those few rows as a DataFrame (it would re-run a query once per metric).
The migration's and the rollback's verdicts are recorded in the ledger, failed ones too.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from dupguard.breezeway import ledger, render
from dupguard.breezeway.config import CHILD_TABLES, PROTECTED_CONSTRAINTS, SCHEMA, ChildTable
from dupguard.common.connections import pg_connect
from dupguard.common.gate import Check, GateFailed, GateSpec, run_gate, zero

log = logging.getLogger(__name__)

_TABLES = tuple(t.qualified for t in CHILD_TABLES)
_ONE_ROW_PER_TABLE = Check(None, "one row of figures per child table checked (the 'tables' bound: how many)",
                           kind="rows", min="tables")

#: What must hold for every child table once the migration is done, every day after.
KEYS_UNIQUE = (
    zero("duplicate_keys", "two rows with one natural key are what the migration removes; one left means a "
                           "duplicate survived or came back"),
    Check("constraint_valid", "the <table>_natural_key constraint keeps new duplicates out: present, "
                              "validated and its index valid (1)", min=1, max=1),
)

MIGRATION = GateSpec("breezeway_child_tables_dedup", (
    _ONE_ROW_PER_TABLE,
    *KEYS_UNIQUE,
    zero("missing_keys", "every natural key of the preflight snapshot keeps one row: the migration removes "
                         "copies, never a key"),
    zero("nullkey_rows_changed", "rows whose key has a NULL are never duplicates: left exactly as they were"),
    zero("removed_without_keeper", "a duplicate removed after the preflight (a writer's) left a row of its key"),
    Check("protected_constraints", f"the constraints nothing may drop ({', '.join(sorted(PROTECTED_CONSTRAINTS))}) "
                                   "are all still there",
          min=len(PROTECTED_CONSTRAINTS), max=len(PROTECTED_CONSTRAINTS)),
), _TABLES)

ROLLBACK = GateSpec("breezeway_child_tables_rollback", (
    _ONE_ROW_PER_TABLE,
    Check("rows_now", "rows now = rows at the preflight + rows written since: every removed row came back "
                      "and nothing else was lost", kind="equal", other="rows_expected"),
    zero("backup_rows_not_restored", "every backed-up row is in its table again, byte for byte"),
    zero("original_rows_missing", "every row present at the preflight (id up to the preflight's max id) is there"),
    zero("migration_constraint_left", "the rollback drops the constraints the migration added"),
), _TABLES)

HEALTH = GateSpec("breezeway_health", KEYS_UNIQUE, _TABLES)


def figures(conn, template: str, tables: Sequence[ChildTable],
            per_table: Callable[[ChildTable], dict[str, Any]] = lambda t: {},
            params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row of ``template`` per table, computed in one query."""
    from psycopg import sql

    parts = [render.render(template, t, oid=render.oid_of(conn, t), **per_table(t)) for t in tables]
    return render.fetch_dicts(conn, sql.SQL("\nUNION ALL\n").join(parts), params)


def health_figures(conn, tables: Sequence[ChildTable] = CHILD_TABLES) -> list[dict[str, Any]]:
    """Duplicate keys, constraint validity and size per table (the daily health check's figures)."""
    return figures(conn, "measure_table_health.sql", tables)


def _judge(conn_id: str, run_id: str, step: str, spec: GateSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``spec`` on ``rows`` and record the figures and the verdict in the ledger, a failed one
    too (``passed: false`` with the failed expectations), before the same :class:`GateFailed`
    fails the task."""
    import pandas as pd

    try:
        summary = run_gate(spec, dataframe=pd.DataFrame(rows), bounds={"tables": len(rows)})
    except GateFailed as exc:
        with pg_connect(conn_id) as conn:
            ledger.record_step(conn, run_id, step, {"tables": rows, "passed": False,
                                                    "failed": [f["description"] for f in exc.failures]})
        raise
    with pg_connect(conn_id) as conn:
        ledger.record_step(conn, run_id, step, {"tables": rows, "passed": True})
    return {"tables": rows, "evaluated": summary["evaluated"], "data_docs": summary["data_docs"]}


def quality_gate(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Zero duplicate keys, the constraints valid, every key of the preflight snapshot
    present, NULL-key rows unchanged, every removed row's key kept, task_tags_unique intact."""
    from psycopg import sql

    with pg_connect(conn_id) as conn:
        base = ledger.baseline(ledger.assert_owner(conn, run_id))
        before = lambda t: {"size_before": sql.Literal(base[t.name]["size_bytes"]),  # noqa: E731
                            "max_id_before": sql.Literal(base[t.name]["max_id"])}
        rows = figures(conn, "gate_table.sql", tables, before,
                       {"protected": sorted(PROTECTED_CONSTRAINTS), "schema": SCHEMA})
    return _judge(conn_id, run_id, "quality_gate", MIGRATION, rows)


def rollback_gate(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Every removed row back byte for byte; row counts = original + rows written since."""
    from psycopg import sql

    with pg_connect(conn_id) as conn:
        base = ledger.baseline(ledger.assert_owner(conn, run_id, ("rolling_back",)))
        if not all(render.own_oid(conn, "backup", t) for t in tables):
            raise ledger.MigrationRefused("backup tables are missing: the rollback cannot prove the restore")
        rows = figures(conn, "gate_rollback_table.sql", tables, lambda t: {
            "rows_before": sql.Literal(base[t.name]["rows"]), "max_id_before": sql.Literal(base[t.name]["max_id"])})
    return _judge(conn_id, run_id, "rollback_gate", ROLLBACK, rows)
