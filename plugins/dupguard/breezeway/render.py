"""The SQL of the Breezeway steps: ``include/sql/breezeway/*.sql`` rendered for one child table,
identifiers quoted by the driver, and the names of dupguard's per-table objects.

Every template may use ``{table}``, ``{k1}``, ``{k2}`` (the natural key); the literals
``{name}``, ``{qualified}`` and ``{constraint}``; dupguard's objects ``{backup}``,
``{keys_before}``, ``{nullkeys_before}``, ``{keepers}``, ``{compact}``; and, when the caller
looked the table's oid up, ``{oid}``. Fragments: ``{select_keepers}`` (the keep rule, for the
dedup pass and the constraints step's clean), ``{duplicate_keys}`` and ``{constraint_valid}``
(with ``{oid}``: figures the gate, the constraints step and the daily health check all use), so
each is written once.
"""
from __future__ import annotations

from typing import Any

from dupguard.breezeway.config import LEDGER_SCHEMA, SCHEMA, ChildTable
from dupguard.common import pg, settings
from dupguard.common.errors import ConfigError

#: dupguard's per-table objects: ``dupguard.bw_<kind>_<table>``.
OWN_KINDS = ("backup", "keys_before", "nullkeys_before", "keepers", "compact")
_FRAGMENTS = {"duplicate_keys": "count_duplicate_keys.sql", "constraint_valid": "count_valid_constraint.sql"}


def table_ident(t: ChildTable):
    from psycopg import sql

    return sql.Identifier(SCHEMA, t.name)


def own_name(kind: str, t: ChildTable) -> str:
    return f"bw_{kind}_{t.name}"


def own(kind: str, t: ChildTable):
    """``dupguard.bw_<kind>_<table>`` as a quoted identifier."""
    from psycopg import sql

    return sql.Identifier(LEDGER_SCHEMA, own_name(kind, t))


def render(relative: str, t: ChildTable, *, oid: int | None = None, **extra: Any):
    """``include/sql/breezeway/<relative>`` for ``t`` (a ``psycopg.sql.Composed``)."""
    from psycopg import sql

    k1, k2 = t.natural_key
    names = {"table": table_ident(t), "k1": sql.Identifier(k1), "k2": sql.Identifier(k2),
             "name": sql.Literal(t.name), "qualified": sql.Literal(t.qualified),
             "constraint": sql.Literal(t.constraint),
             **{kind: own(kind, t) for kind in OWN_KINDS}}
    names["select_keepers"] = sql.SQL(settings.read_sql("breezeway/select_keepers.sql")).format(**names)
    if oid is not None:
        names["oid"] = sql.Literal(oid)
        for key, fragment in _FRAGMENTS.items():
            names[key] = sql.SQL(settings.read_sql(f"breezeway/{fragment}")).format(**names)
    return sql.SQL(settings.read_sql(f"breezeway/{relative}")).format(**{**names, **extra})


def oid_of(conn, t: ChildTable) -> int:
    """oid of the child table; a :class:`ConfigError` naming it when it does not exist."""
    oid = pg.table_oid(conn, SCHEMA, t.name)
    if oid is None:
        raise ConfigError(f"table {t.qualified} does not exist")
    return oid


def own_oid(conn, kind: str, t: ChildTable) -> int | None:
    """oid of ``dupguard.bw_<kind>_<table>``, or None when it does not exist."""
    return pg.table_oid(conn, LEDGER_SCHEMA, own_name(kind, t))


def count(conn, ident) -> int:
    from psycopg import sql

    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0])


def size(conn, oid: int) -> int:
    """Bytes of the relation ``oid`` with its indexes and TOAST."""
    return int(conn.execute("SELECT pg_total_relation_size(%s::oid::regclass)", (oid,)).fetchone()[0])


def fetch_dicts(conn, query, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of ``query`` as dicts (integers as Python ints); the transaction is closed after."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    conn.commit()
    return rows
