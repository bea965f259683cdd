"""The configured tables as the database sees them: checked against the catalog before any
step touches them, and their SQL composed with identifiers quoted by the driver."""
from __future__ import annotations

from typing import Any

from dupguard.common import pg, settings
from dupguard.telemetry.config import TelemetryConfigError, TelemetryTable


def idents(tbl: TelemetryTable) -> dict[str, Any]:
    """psycopg ``sql`` pieces for the table's identifiers (quoted by the driver)."""
    from psycopg import sql

    return {"table": sql.Identifier(tbl.schema, tbl.table), "id": sql.Identifier(tbl.id_column),
            "time": sql.Identifier(tbl.time_column)}


def compose(text: str, tbl: TelemetryTable, **extra: Any):
    """``text`` with the table's identifiers filled in, and ``{delete_extra_copies}``: the keep rule
    and its delete (``include/sql/telemetry/delete_extra_copies.sql``) shared by every delete."""
    from psycopg import sql

    ids = idents(tbl)
    keep_rule = sql.SQL(settings.read_sql("telemetry/delete_extra_copies.sql")).format(**ids)
    return sql.SQL(text).format(**ids, delete_extra_copies=keep_rule, **extra)


def render(relative: str, tbl: TelemetryTable, **extra: Any):
    """``include/sql/telemetry/<relative>`` composed for ``tbl`` (see :func:`compose`)."""
    return compose(settings.read_sql(f"telemetry/{relative}"), tbl, **extra)


def check_table(conn, tbl: TelemetryTable, *, need_indexes: bool = True) -> int:
    """Validate that the table and its columns exist (and are indexed); returns the table oid.

    Raises :class:`TelemetryConfigError` naming what is missing.
    """
    oid = pg.table_oid(conn, tbl.schema, tbl.table)
    if oid is None:
        raise TelemetryConfigError(f"telemetry table {tbl.qualified} does not exist "
                                   f"(configured as '{tbl.key}' in dupguard.telemetry.config.TABLES)")
    cols = pg.columns(conn, oid)
    roles = (("id", tbl.id_column), ("time", tbl.time_column))
    for role, col in roles:
        if col not in cols:
            raise TelemetryConfigError(f"column {tbl.qualified}.{col} does not exist (configured as the {role} "
                                       f"column of '{tbl.key}'; the table has: {', '.join(sorted(cols))})")
    if need_indexes:
        for role, col in roles:
            if not pg.leading_index_exists(conn, oid, col):
                raise TelemetryConfigError(
                    f"no index leads with {tbl.qualified}.{col} (the {role} column): the cleanup would scan "
                    f"the whole table every minute; create it first, e.g. CREATE INDEX CONCURRENTLY ON "
                    f"{tbl.qualified} ({col})")
    return oid


def unique_index(conn, tbl: TelemetryTable, oid: int) -> str | None:
    """Name of a valid unique btree index on exactly the id column, or None."""
    return pg.valid_unique_index(conn, oid, [tbl.id_column])


def invalid_indexes(conn, tbl: TelemetryTable, oid: int) -> list[str]:
    """INVALID unique indexes on exactly the id column that are *ready* (one cheap catalog
    query): what a ``CREATE UNIQUE INDEX CONCURRENTLY`` killed after its build phase leaves.
    PostgreSQL maintains and enforces such an index, so plain writers' retried inserts fail
    until it is dropped. (An unready leftover - a build that failed on a duplicate - rejects
    nothing; the unique-index DAG's build drops it.)"""
    ready = {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s AND i.indisunique AND i.indisready AND NOT i.indisvalid", (oid,))}
    if not ready:
        return []
    return [ix["index_name"] for ix in pg.indexes_on(conn, oid, [tbl.id_column]) if ix["index_name"] in ready]


def drop_invalid_leftovers(ac, tbl: TelemetryTable, oid: int, why: str) -> dict[str, Any]:
    """``DROP INDEX CONCURRENTLY`` the INVALID indexes on the id column (``ac``: autocommit),
    unless a concurrent build of this table is running now (its index is INVALID until it
    finishes): {"dropped": [...], "build_in_progress": bool}."""
    if ac.execute("SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = %s", (oid,)).fetchone()[0]:
        return {"dropped": [], "build_in_progress": True}
    pg.set_timeouts(ac, lock_timeout_ms=1_000, local=False)   # never queue writers behind the drop
    return {"dropped": pg.drop_invalid_indexes(ac, tbl.schema, oid, [tbl.id_column], why),
            "build_in_progress": False}
