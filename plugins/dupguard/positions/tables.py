"""Where the positions jobs read and write, and how their SQL is rendered.

SQL files (``include/sql/positions/``) use two kinds of placeholder:

* ``{name}`` (no type): filled here before the statement is sent - a table as
  `` `db`.`table` `` (every identifier validated and backquoted by :func:`ident`), a column
  list from :mod:`.config` (``{columns}``, ``{column_defs}`` with types, the lot ``{key}``,
  the sort key ``{order_by}``), or a clause;
* ``{name:Type}``: a value, bound by ClickHouse (server-side query parameter).
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dupguard.common import settings
from dupguard.common.errors import ConfigError
from dupguard.positions import config

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class PositionsError(ConfigError):
    """A precondition of the positions jobs does not hold (the message names it); a retry
    cannot change it."""


def ident(name: str) -> str:
    """`` `name` `` for a plain ClickHouse identifier (letters, digits, underscores); anything
    else is refused with a clear error."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise PositionsError(f"refusing identifier {name!r}: expected letters, digits and underscores")
    return f"`{name}`"


def qualified(db: str, table: str) -> str:
    """`` `db`.`table` ``, both validated."""
    return f"{ident(db)}.{ident(table)}"


@dataclass(frozen=True)
class Tables:
    """Where the job reads and writes. Names are fixed; only the database is configurable."""

    db: str
    fills: str = config.FILLS_TABLE
    resolutions: str = config.RESOLUTIONS_TABLE
    unified: str = config.UNIFIED_TABLE

    def __post_init__(self) -> None:
        for name in (self.db, self.fills, self.resolutions, self.unified):
            ident(name)

    @property
    def staging(self) -> str:
        return self.unified + config.STAGING_SUFFIX

    @property
    def keep(self) -> str:
        return self.unified + config.KEEP_SUFFIX

    @property
    def rollback(self) -> str:
        return self.unified + config.ROLLBACK_SUFFIX

    def q(self, table: str) -> str:
        """`` `db`.`table` `` of a table of this database."""
        return qualified(self.db, table)

    def fragments(self) -> dict[str, str]:
        """The placeholders every positions statement may use."""
        names = {"fills": self.fills, "resolutions": self.resolutions, "unified": self.unified,
                 "staging": self.staging, "keep": self.keep, "rollback": self.rollback}
        return {k: self.q(v) for k, v in names.items()} | {
            "columns": ", ".join(ident(c) for c in config.UNIFIED_COLUMNS),
            "column_defs": ",\n    ".join(f"{ident(c)} {type_}" for c, type_ in config.UNIFIED_SCHEMA),
            "key": ", ".join(ident(c) for c in config.KEY_COLUMNS),
            "order_by": ", ".join(ident(c) for c in config.UNIFIED_ORDER_BY),
        }


def tables_for(conn_id: str, database: str | None = None) -> Tables:
    """Tables in ``database``, or in the connection's schema when None (or empty)."""
    if not database:
        from dupguard.common.connections import get_connection

        database = get_connection(conn_id).schema or "default"
    return Tables(db=database)


def render(text: str, t: Tables | None = None, **fragments: str) -> str:
    """``text`` with its ``{name}`` placeholders filled from ``t.fragments()`` and ``fragments``
    (already quoted SQL); ``{name:Type}`` value placeholders are left for ClickHouse to bind."""
    values = {**(t.fragments() if t else {}), **fragments}

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"SQL placeholder {{{m.group(1)}}} has no value")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(fill, text)


def sql(name: str, t: Tables | None = None, **fragments: str) -> str:
    """``include/sql/positions/<name>.sql`` rendered by :func:`render`."""
    return render(settings.read_sql(f"positions/{name}.sql"), t, **fragments)


def command(client, statement: str, values: dict[str, Any] | None = None, **settings_: Any) -> None:
    """Run a rendered statement; ``values`` bound to its ``{name:Type}`` placeholders."""
    client.command(statement, parameters=values or None, settings=settings_ or None)


def rows(client, statement: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = client.query(statement, parameters=values or None)
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def one(client, statement: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    found = rows(client, statement, values)
    return found[0] if found else {}


def utc(value: datetime) -> datetime:
    """Naive UTC datetime (ClickHouse DateTime columns come back naive, in UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


# --- shape ----------------------------------------------------------------------
def describe(client, db: str, table: str) -> tuple[dict[str, str], str]:
    """({column: type}, partition_key) of ``db.table``; ({}, '') when it does not exist."""
    found = rows(client, sql("describe_table"), {"db": db, "table": table})
    return {r["column"]: r["type"] for r in found}, (found[0]["partition_key"] if found else "")


def exists(client, db: str, table: str) -> bool:
    return bool(describe(client, db, table)[0])


def check_columns(client, db: str, table: str, required: Iterable[str]) -> dict[str, str]:
    columns, _ = describe(client, db, table)
    if not columns:
        raise PositionsError(f"table {db}.{table} does not exist")
    missing = [c for c in required if c not in columns]
    if missing:
        raise PositionsError(f"table {db}.{table} lacks column(s) {', '.join(missing)}")
    return columns


def is_open_partitioned(client, t: Tables) -> bool:
    """True when the unified table is partitioned by open/resolved (atomic swap possible)."""
    _, key = describe(client, t.db, t.unified)
    return key.replace(" ", "") in {k.replace(" ", "") for k in config.OPEN_PARTITION_KEYS}


def create_unified(client, t: Tables, *, partitioned: bool = True) -> None:
    """Create the unified table if missing: partitioned by open/resolved (what the jobs create),
    or production's unpartitioned shape (tests, benchmark, demo)."""
    partition_by = f"PARTITION BY {config.OPEN_PARTITION_BY}" if partitioned else ""
    command(client, sql("create_unified", t, partition_by=partition_by))


def ensure_unified(client, t: Tables) -> bool:
    """Create the unified table (partitioned by open/resolved) when missing; True if created."""
    if exists(client, t.db, t.unified):
        check_columns(client, t.db, t.unified, config.UNIFIED_COLUMNS)
        return False
    create_unified(client, t)
    log.info("created %s.%s partitioned by %s", t.db, t.unified, config.OPEN_PARTITION_BY)
    return True


def create_like_unified(client, t: Tables, name: str) -> None:
    """(Re)create ``name`` with exactly the unified table's structure and partitioning."""
    command(client, f"DROP TABLE IF EXISTS {t.q(name)}")
    command(client, f"CREATE TABLE {t.q(name)} AS {t.q(t.unified)}")


# --- counts ---------------------------------------------------------------------
def count_rows(client, t: Tables, table: str) -> dict[str, int]:
    r = one(client, f"SELECT count() AS total, countIf(resolved_at IS NULL) AS unresolved FROM {t.q(table)}")
    return {"total": int(r["total"]), "unresolved": int(r["unresolved"])}


def partitions(client, t: Tables) -> dict[str, int]:
    return {str(r["partition"]): int(r["rows"]) for r in
            rows(client, sql("count_partitions"), {"db": t.db, "table": t.unified})}


def wallet_ranges(client, t: Tables, table: str, buckets: int) -> list[tuple[str, str]]:
    """``buckets`` ranges [lo, hi) of the wallet sort key with similar row counts ('' = open end)."""
    if buckets <= 1:
        return [("", "")]
    per_wallet = client.query(sql("wallet_rows", table=t.q(table))).result_rows
    total = sum(int(r[1]) for r in per_wallet)
    if not total:
        return [("", "")]
    bounds, acc, step = [], 0, total / buckets
    for wallet, n in per_wallet:
        if acc >= step * (len(bounds) + 1) and (not bounds or bounds[-1] != wallet):
            bounds.append(wallet)
        acc += int(n)
    edges = ["", *bounds, ""]
    return list(zip(edges[:-1], edges[1:]))


def now_epoch() -> float:
    """Wall-clock seconds, only to time a run's duration (never to pick its data window)."""
    return time.time()


def report(client, t: Tables, *, before: dict[str, int], started_at: float | None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts before/after, rows per partition and the run's duration."""
    out = {"table": f"{t.db}.{t.unified}", "before": before, "after": count_rows(client, t, t.unified),
           "rows_per_partition": partitions(client, t), **(extra or {})}
    if started_at is not None:
        out["duration_seconds"] = round(now_epoch() - started_at, 1)
    log.info("report: %s", out)
    return out
