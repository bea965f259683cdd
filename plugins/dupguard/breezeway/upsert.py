"""The ETL fix: child-table upsert on the natural key (never ``ON CONFLICT`` without a target).

    from dupguard.breezeway.upsert import upsert_children
    with pg_connect(BREEZEWAY_CONN_ID) as conn:
        upsert_children(conn, "task_photos", rows)   # rows: list of dicts
        conn.commit()

Each batch is COPYed into a temporary table, then
``INSERT ... SELECT DISTINCT ON (<natural key>) ... ON CONFLICT (<natural key>) DO UPDATE
SET <non-key columns> = EXCLUDED.<column>`` (``created_at`` keeps the first load time).
The natural key comes from :mod:`dupguard.breezeway.config`, the same place the migration
reads, and the statement needs the migration's UNIQUE constraint: before the migration
it fails with a message saying so.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dupguard.breezeway.config import SCHEMA, UPSERT_PRESERVED_COLUMNS, ChildTable, table as child_table
from dupguard.common import pg
from dupguard.common.errors import ConfigError


class MigrationRequired(ConfigError):
    """The table has no UNIQUE constraint on its natural key yet."""


def build_upsert(t: ChildTable, columns: Sequence[str], staging: str = "bw_upsert_stage"):
    """The upsert statement from the staging table (a ``psycopg.sql.Composed``)."""
    from psycopg import sql

    missing = [k for k in t.natural_key if k not in columns]
    if missing:
        raise ValueError(f"{t.qualified}: rows lack natural key column(s) {', '.join(missing)}")
    updates = [c for c in columns if c not in t.natural_key and c not in UPSERT_PRESERVED_COLUMNS and c != "id"]
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    key = sql.SQL(", ").join(map(sql.Identifier, t.natural_key))
    action = (sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates)) if updates else sql.SQL(
        "DO NOTHING")
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} "
        "ORDER BY {key}, dupguard_ord DESC ON CONFLICT ({key}) {action}").format(
        table=sql.Identifier(SCHEMA, t.name), cols=cols, key=key, stage=sql.Identifier(staging), action=action)


def has_unique_natural_key(conn, t: ChildTable, oid: int) -> bool:
    """A valid unique index on the natural key (in either order): ``ON CONFLICT`` can infer it."""
    return any(pg.valid_unique_index(conn, oid, cols) for cols in (t.natural_key, t.natural_key[::-1]))


def upsert_children(conn, table: str, rows: Iterable[Mapping[str, Any]], *, batch_size: int = 5_000) -> int:
    """Upsert ``rows`` into ``breezeway.<table>`` on its natural key; returns rows sent.

    Within a batch the last row of a key wins. The caller commits.
    """
    from psycopg import sql

    t = child_table(table)
    oid = pg.table_oid(conn, SCHEMA, t.name)
    if oid is None:
        raise ConfigError(f"table {t.qualified} does not exist")
    if not has_unique_natural_key(conn, t, oid):
        raise MigrationRequired(
            f"{t.qualified} has no UNIQUE constraint on ({', '.join(t.natural_key)}): ON CONFLICT on the natural key "
            "needs it. Run the Airflow DAG child_tables_dedup_migration first (it removes the existing duplicates "
            "and adds the constraint), then re-run this load.")
    table_cols = pg.columns(conn, oid)
    sent, batch, columns = 0, [], None
    for row in rows:
        if columns is None:
            columns = list(row)
            unknown = [c for c in columns if c not in table_cols]
            if unknown:
                raise ValueError(f"{t.qualified} has no column(s) {', '.join(unknown)}")
            conn.execute("DROP TABLE IF EXISTS bw_upsert_stage")
            conn.execute(sql.SQL("CREATE TEMP TABLE bw_upsert_stage ON COMMIT DROP AS SELECT {}, 0::bigint AS "
                                 "dupguard_ord FROM {} WITH NO DATA").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(SCHEMA, t.name)))
            stmt = build_upsert(t, columns)
        batch.append([row.get(c) for c in columns])
        if len(batch) >= batch_size:
            sent += _flush(conn, columns, batch, stmt, sent)
            batch = []
    if batch:
        sent += _flush(conn, columns, batch, stmt, sent)
    if columns is not None:
        conn.execute("DROP TABLE IF EXISTS bw_upsert_stage")
    return sent


def _flush(conn, columns, batch, stmt, offset: int) -> int:
    from psycopg import sql

    conn.execute("TRUNCATE bw_upsert_stage")
    copy = sql.SQL("COPY bw_upsert_stage ({}, dupguard_ord) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur, cur.copy(copy) as cp:
        for n, values in enumerate(batch):
            cp.write_row([*values, offset + n])
    conn.execute(stmt)
    return len(batch)
