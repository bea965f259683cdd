"""The idempotent insert an ingestion service should use for telemetry rows.

A client retry resends the same row with the same id. This helper inserts it only once:

- while the id column has no valid unique index:
  ``INSERT INTO t (...) SELECT ... WHERE NOT EXISTS (SELECT 1 FROM t WHERE id = $id)``
  (one probe of the id index; two truly simultaneous copies can still both land, the
  per-minute cleanup removes them);
- once it has one: ``INSERT INTO t (...) VALUES (...) ON CONFLICT (id) DO NOTHING``.

The mode is read from the catalog and re-checked every ``recheck_seconds``. A unique
violation (a unique index being built concurrently already enforces uniqueness) means the
id is there: the insert reports "already present" instead of failing.

    from dupguard.common.connections import pg_connect
    from dupguard.common.settings import TELEMETRY_CONN_ID
    from dupguard.telemetry.config import table_config

    with pg_connect(TELEMETRY_CONN_ID, autocommit=True) as conn:
        ins = IdempotentInserter(conn, table_config("blocks"))
        inserted = ins.insert({"block_id": ..., "stream_id": ..., "insert_time": ...})
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dupguard.telemetry.catalog import check_table, unique_index
from dupguard.telemetry.config import TelemetryTable

log = logging.getLogger(__name__)

NOT_EXISTS = "not_exists"
ON_CONFLICT = "on_conflict"


class IdempotentInserter:
    """Insert rows of one table at most once per id on a psycopg 3 connection."""

    def __init__(self, conn, tbl: TelemetryTable, columns: Sequence[str] | None = None, *,
                 recheck_seconds: float = 60.0):
        self.conn = conn
        self.tbl = tbl
        self.recheck_seconds = recheck_seconds
        with conn.transaction():
            self._oid = check_table(conn, tbl, need_indexes=False)
            types = dict(conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (self._oid,)).fetchall())
        self.columns = list(columns) if columns is not None else list(types)
        unknown = [c for c in self.columns if c not in types]
        if unknown:
            raise ValueError(f"{tbl.qualified} has no column(s) {', '.join(unknown)}")
        if tbl.id_column not in self.columns:
            raise ValueError(f"the inserted columns must include the id column {tbl.id_column}")
        self._types = types
        self._id_pos = self.columns.index(tbl.id_column)
        self._statements = {NOT_EXISTS: self._not_exists_sql(), ON_CONFLICT: self._on_conflict_sql()}
        self._mode: str | None = None
        self._checked_at = 0.0

    # --- statements ---------------------------------------------------------
    def _not_exists_sql(self):
        from psycopg import sql

        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        # explicit casts: a SELECT list does not take its types from the target columns
        values = sql.SQL(", ").join(sql.SQL("CAST(%s AS {})").format(sql.SQL(self._types[c])) for c in self.columns)
        return sql.SQL("INSERT INTO {t} ({cols}) SELECT {values} WHERE NOT EXISTS "
                       "(SELECT 1 FROM {t} WHERE {id} = CAST(%s AS {idtype}))").format(
            t=sql.Identifier(self.tbl.schema, self.tbl.table), cols=cols, values=values,
            id=sql.Identifier(self.tbl.id_column), idtype=sql.SQL(self._types[self.tbl.id_column]))

    def _on_conflict_sql(self):
        from psycopg import sql

        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        values = sql.SQL(", ").join(sql.Placeholder() for _ in self.columns)
        return sql.SQL("INSERT INTO {t} ({cols}) VALUES ({values}) ON CONFLICT ({id}) DO NOTHING").format(
            t=sql.Identifier(self.tbl.schema, self.tbl.table), cols=cols, values=values,
            id=sql.Identifier(self.tbl.id_column))

    # --- mode -----------------------------------------------------------------
    @property
    def mode(self) -> str:
        now = time.monotonic()
        if self._mode is None or now - self._checked_at >= self.recheck_seconds:
            self.refresh()
        return self._mode  # type: ignore[return-value]

    def refresh(self) -> str:
        with self.conn.transaction():
            unique = unique_index(self.conn, self.tbl, self._oid)
        new = ON_CONFLICT if unique else NOT_EXISTS
        if new != self._mode:
            log.info("%s inserts: %s", self.tbl.qualified,
                     f"ON CONFLICT DO NOTHING (unique index {unique})" if unique else "INSERT ... WHERE NOT EXISTS")
        self._mode, self._checked_at = new, time.monotonic()
        return new

    # --- insert ---------------------------------------------------------------
    def params(self, row: Mapping[str, Any] | Sequence[Any], mode: str) -> list[Any]:
        values = [row.get(c) for c in self.columns] if isinstance(row, Mapping) else list(row)
        if len(values) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} values ({', '.join(self.columns)}), got {len(values)}")
        if values[self._id_pos] is None:
            raise ValueError(f"{self.tbl.qualified}: refusing to insert a row with a NULL {self.tbl.id_column}")
        return values + [values[self._id_pos]] if mode == NOT_EXISTS else values

    def insert(self, row: Mapping[str, Any] | Sequence[Any]) -> bool:
        """Insert ``row`` unless its id is already there. True when a row was written."""
        import psycopg

        mode = self.mode
        for _ in range(2):
            try:
                if self.conn.autocommit:  # one round trip per insert
                    cur = self.conn.execute(self._statements[mode], self.params(row, mode))
                else:  # inside the caller's transaction: a savepoint keeps it usable on conflict
                    with self.conn.transaction():
                        cur = self.conn.execute(self._statements[mode], self.params(row, mode))
                return cur.rowcount == 1
            except psycopg.errors.UniqueViolation:
                return False  # a unique index (even one being built) already holds this id
            except psycopg.errors.InvalidColumnReference:
                # ON CONFLICT without a matching valid unique index: the index is gone
                mode = self.refresh()
                if mode == ON_CONFLICT:
                    raise
        raise RuntimeError("unreachable")
