"""The migration's first steps after the claim: check the catalog and snapshot the key sets
(``preflight``), then create the backup tables (``backup``). Nothing is changed in the child
tables; a problem stops the run here with every problem listed."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dupguard.breezeway import ledger, render
from dupguard.breezeway.config import (
    CHILD_TABLES, LEDGER_SCHEMA, PROTECTED_CONSTRAINTS, REQUIRED_COLUMNS, SCHEMA, ChildTable,
)
from dupguard.common import pg
from dupguard.common.connections import pg_connect
from dupguard.common.errors import ConfigError

log = logging.getLogger(__name__)

_REPORTED = ("rows", "distinct_keys", "duplicates", "null_key_rows", "size_bytes")


class PreflightError(ConfigError):
    """A configured table or column is missing, or a table cannot be migrated safely."""


def check_catalog(conn, tables: Sequence[ChildTable] = CHILD_TABLES) -> list[str]:
    """Every configured table and column exists, and no table is referenced by a foreign key."""
    problems = []
    for t in tables:
        if t.constraint in PROTECTED_CONSTRAINTS:
            problems.append(f"{t.qualified}: constraint name {t.constraint} is protected")
        oid = pg.table_oid(conn, SCHEMA, t.name)
        if oid is None:
            problems.append(f"table {t.qualified} does not exist")
            continue
        problems += [f"column {t.qualified}.{c} does not exist"
                     for c in pg.missing_columns(conn, oid, (*t.natural_key, *REQUIRED_COLUMNS))]
        for name, child in conn.execute("SELECT conname, conrelid::regclass::text FROM pg_constraint "
                                        "WHERE contype = 'f' AND confrelid = %s", (oid,)):
            problems.append(f"{t.qualified} is referenced by foreign key {name} of {child}: removing duplicate "
                            "rows could cascade or fail; migrate that table by hand")
    return problems


def preflight(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Check the catalog, snapshot the key sets once, and report the problem table."""
    import psycopg
    from psycopg import sql

    with pg_connect(conn_id) as conn:
        ledger.assert_owner(conn, run_id)
        problems = check_catalog(conn, tables)
        conn.commit()
        if problems:
            raise PreflightError("preflight failed, nothing was changed:\n  - " + "\n  - ".join(problems))
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        report, baseline = [], {}
        for t in tables:
            # the first run keeps its snapshot for the gate; a resumed run only measures
            first = render.own_oid(conn, "keys_before", t) is None
            snap = {} if first else {"keys_before": sql.Identifier("pg_temp", f"bw_keys_now_{t.name}"),
                                     "nullkeys_before": sql.Identifier("pg_temp", f"bw_nullkeys_now_{t.name}")}
            oid = render.oid_of(conn, t)
            conn.execute(render.render("snapshot_keys.sql", t, **snap))
            m = render.fetch_dicts(conn, render.render("measure_snapshot.sql", t, oid=oid, **snap))[0]
            if not first:
                conn.execute(sql.SQL("DROP TABLE {}, {}").format(*snap.values()))
                conn.commit()
            item = {"table": t.name, "rows": m["keyed_rows"] + m["null_key_rows"], "distinct_keys": m["distinct_keys"],
                    "duplicates": m["keyed_rows"] - m["distinct_keys"], "duplicate_keys": m["duplicate_keys"],
                    "max_copies": m["max_copies"], "null_key_rows": m["null_key_rows"], "size_bytes": m["size_bytes"]}
            report.append(item)
            baseline[t.name] = {"rows": item["rows"], "max_id": m["max_id"], "size_bytes": m["size_bytes"],
                                "distinct_keys": m["distinct_keys"], "duplicates": item["duplicates"]}
        conn.isolation_level = None
        totals = {k: sum(r[k] for r in report) for k in _REPORTED}
        log.info("Breezeway child tables before the migration:\n%s", format_report(report, totals))
        ledger.record_step(conn, run_id, "preflight", {"tables": report, "totals": totals}, baseline=baseline)
        return {"tables": report, "totals": totals}


def format_report(rows: list[dict[str, Any]], totals: dict[str, Any]) -> str:
    head = (f"{'table':<20} {'rows':>12} {'distinct keys':>14} {'duplicates':>12} {'factor':>8} {'NULL-key':>9} "
            f"{'size':>10}")
    lines = [head, "-" * len(head)]
    for r in [*rows, {"table": "TOTAL", **totals}]:
        factor = r["rows"] / max(r["distinct_keys"] + r["null_key_rows"], 1)
        lines.append(f"{r['table']:<20} {r['rows']:>12,} {r['distinct_keys']:>14,} {r['duplicates']:>12,} "
                     f"{factor:>7.0f}x {r['null_key_rows']:>9,} {r['size_bytes'] / 2**20:>8.1f}MB")
    return "\n".join(lines)


def backup(conn_id: str, run_id: str, tables: Sequence[ChildTable] = CHILD_TABLES) -> dict[str, Any]:
    """Create ``dupguard.bw_backup_<table>`` (same columns as the table, no index).

    Measured choice: only the rows the dedup removes are kept, each written by the very
    statement (or transaction) that removes it, so the backup can neither miss a removed row
    nor hold one that was not removed, and it costs the size of the removed rows instead of a
    full copy of the table.
    """
    from psycopg import sql

    with pg_connect(conn_id) as conn:
        ledger.assert_owner(conn, run_id)
        out = {}
        for t in tables:
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(
                render.own("backup", t), render.table_ident(t)))
            conn.commit()
            out[t.name] = {"backup_table": f"{LEDGER_SCHEMA}.{render.own_name('backup', t)}",
                           "rows_already_backed_up": render.count(conn, render.own("backup", t))}
        ledger.record_step(conn, run_id, "backup", {"tables": out})
        return {"strategy": "removed rows only, written by the DELETE that removes them", "tables": out}
