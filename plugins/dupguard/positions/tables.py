"""Unified prediction-market positions in ClickHouse: exact FIFO rebuild, gated publish.

The table ``pm_trade_fifo_roi_v3_mat_unified`` holds one row per bought lot (the buy fills
of one ``tx_hash`` for one wallet/condition/outcome) with its FIFO-matched sells. Resolved
rows never change; the open (unresolved) part is rebuilt from the fills every six hours:

* :func:`preflight` - source tables and columns, source freshness, stuck mutations;
* :func:`build` - every open lot of every wallet (plus the lots of markets that resolved
  since they were published as open) into a staging table, FIFO computed set-based in
  ClickHouse (``include/sql/positions/build_positions.sql``);
* :func:`staging_gate` - audit of the staging table before anything is published;
* :func:`publish` - ``REPLACE PARTITION`` when the table is partitioned by open/resolved,
  else a ``DELETE`` mutation waited on by its own id, then an insert;
* :func:`health_gate` and :func:`report`.

:func:`deduplicate` repairs duplicate lot keys anywhere in the table, one wallet range at
a time. Every statement lives in ``include/sql/positions/``; identifiers are bound as
``{name:Identifier}`` query parameters after validation, values as typed parameters.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dupguard import settings

log = logging.getLogger(__name__)

FILLS_TABLE = "pm_canonical_fills_v4"
RESOLUTIONS_TABLE = "pm_condition_resolutions"
UNIFIED_TABLE = "pm_trade_fifo_roi_v3_mat_unified"
KEY_COLUMNS = ("tx_hash", "wallet", "condition_id", "outcome_index")
UNIFIED_COLUMNS = ("tx_hash", "wallet", "condition_id", "outcome_index", "entry_time", "resolved_at", "cost_usd",
                   "tokens", "tokens_sold_early", "tokens_held", "exit_value", "pnl_usd", "roi", "pct_sold_early",
                   "is_maker", "is_short", "is_closed")
REQUIRED_COLUMNS = {
    "fills": ("fill_id", "event_time", "block_number", "tx_hash", "wallet", "condition_id", "outcome_index",
              "tokens_delta", "usdc_delta", "is_maker", "_version"),
    "resolutions": ("condition_id", "payout_numerators", "resolved_at", "is_deleted"),
    "unified": UNIFIED_COLUMNS,
}
# Partition keys meaning "open vs resolved": REPLACE PARTITION can swap the open part.
OPEN_PARTITION_KEYS = ("isNull(resolved_at)", "resolved_at IS NULL")

# Thresholds, one place, with the reason for each (all overridable as DAG params).
DEFAULTS: dict[str, Any] = {
    # Staged open lots below this means the build lost data. Production: 5,000,000 (the
    # original plan's alert threshold, ~13-15M expected); the demo holds ~10k open lots.
    "min_unresolved_rows": 1_000,
    # Staged open lots must be at least this fraction of the currently published open lots:
    # a rebuild that would drop more than half of the open positions at once is refused.
    "max_drop_ratio": 0.5,
    # Newest published entry older than this (hours before the run's logical date): stale.
    # The DAG runs every 6 h; 8 h leaves one run's margin (the original plan's threshold).
    "max_hours_stale": 8,
    # Newest fill older than this before the run's logical date: the feed is stuck, do not
    # rebuild from it (a rebuild from a frozen feed would publish stale positions as fresh).
    "max_source_lag_hours": 6,
    # A mutation pending longer than this on the unified table is stuck: killed by its id.
    "stuck_mutation_minutes": 10,
    # How long publish waits for its own DELETE mutation before failing (never inserts early).
    "mutation_timeout_minutes": 30,
    # Wallet ranges the build is split into (1 = one pass; raise when memory is short).
    "build_buckets": 1,
}
DUST_TOKENS = 0.01
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")


class PositionsError(RuntimeError):
    """A precondition of the positions jobs does not hold (the message names it)."""


class MutationFailed(PositionsError):
    """A mutation this job issued failed, was killed, or did not finish in time."""


def ident(name: str) -> str:
    """``name`` if it is a plain ClickHouse identifier, else a clear error."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise PositionsError(f"refusing identifier {name!r}: expected letters, digits and underscores")
    return name


def qualified(db: str, table: str) -> str:
    """`db`.`table` for the few places ClickHouse takes no identifier parameter (validated first)."""
    return f"`{ident(db)}`.`{ident(table)}`"


@dataclass(frozen=True)
class Tables:
    """Where the job reads and writes. Names are fixed; only the database is configurable."""

    db: str
    fills: str = FILLS_TABLE
    resolutions: str = RESOLUTIONS_TABLE
    unified: str = UNIFIED_TABLE

    def __post_init__(self) -> None:
        for name in (self.db, self.fills, self.resolutions, self.unified):
            ident(name)

    @property
    def staging(self) -> str:
        return f"{self.unified}__staging"

    @property
    def backup(self) -> str:
        return f"{self.unified}__prev_open"

    @property
    def keep(self) -> str:
        return f"{self.unified}__dedupe_keep"

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"db": self.db, "fills": self.fills, "resolutions": self.resolutions, "unified": self.unified,
                "staging": self.staging, "backup": self.backup, "keep": self.keep, **extra}


def tables_for(conn_id: str, database: str | None = None) -> Tables:
    """Tables in ``database`` (a DAG param), or in the connection's schema when blank."""
    if not database:
        from dupguard.connections import get_connection

        database = get_connection(conn_id).schema or "default"
    return Tables(db=ident(database))


def sql(name: str) -> str:
    return settings.read_sql(f"positions/{name}.sql")


def _rows(client, name: str, params: dict[str, Any], settings_: dict[str, Any] | None = None) -> list[dict]:
    result = client.query(sql(name), parameters=params, settings=settings_ or {})
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def _one(client, name: str, params: dict[str, Any]) -> dict[str, Any]:
    rows = _rows(client, name, params)
    return rows[0] if rows else {}


def _utc(value: datetime) -> datetime:
    """Naive UTC datetime (ClickHouse DateTime columns come back naive, in UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


# --- tables -------------------------------------------------------------------
def describe(client, db: str, table: str) -> tuple[dict[str, str], str]:
    """({column: type}, partition_key) of ``db.table``; ({}, '') when it does not exist."""
    rows = _rows(client, "describe_table", {"db": db, "table": table})
    return {r["column"]: r["type"] for r in rows}, (rows[0]["partition_key"] if rows else "")


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
    return key.replace(" ", "") in {k.replace(" ", "") for k in OPEN_PARTITION_KEYS}


def ensure_unified(client, t: Tables) -> bool:
    """Create the unified table (partitioned by open/resolved) when missing; True if created."""
    columns, _ = describe(client, t.db, t.unified)
    if columns:
        check_columns(client, t.db, t.unified, UNIFIED_COLUMNS)
        return False
    client.command(sql("create_unified"), parameters=t.params())
    log.info("created %s.%s partitioned by isNull(resolved_at)", t.db, t.unified)
    return True


def create_like_unified(client, t: Tables, name: str) -> None:
    """(Re)create ``name`` with exactly the unified table's structure and partitioning."""
    client.command("DROP TABLE IF EXISTS {db:Identifier}.{name:Identifier}", parameters={"db": t.db, "name": ident(name)})
    # the AS clause takes no query parameter: validated names in backquotes
    client.command(f"CREATE TABLE {qualified(t.db, name)} AS {qualified(t.db, t.unified)}")


def count_rows(client, t: Tables, table: str) -> dict[str, int]:
    r = client.query("SELECT count() AS total, countIf(resolved_at IS NULL) AS unresolved "
                     "FROM {db:Identifier}.{table:Identifier}", parameters={"db": t.db, "table": ident(table)})
    total, unresolved = r.result_rows[0]
    return {"total": int(total), "unresolved": int(unresolved)}


def partitions(client, t: Tables) -> dict[str, int]:
    return {str(r["partition"]): int(r["rows"]) for r in
            _rows(client, "count_partitions", {"db": t.db, "table": t.unified})}


# --- mutations ----------------------------------------------------------------
def fetch_mutations(client, db: str, table: str) -> list[dict[str, Any]]:
    """Rows of system.mutations for ``db.table`` (tests replace this to simulate a stuck one)."""
    return _rows(client, "list_mutations", {"db": db, "table": table})


def kill_mutation(client, db: str, table: str, mutation_id: str) -> list[Any]:
    result = client.query(sql("kill_mutation"), parameters={"db": db, "table": table, "mutation_id": mutation_id})
    return [list(r) for r in result.result_rows]


def handle_stuck_mutations(client, db: str, table: str, stuck_minutes: float) -> dict[str, Any]:
    """Kill every mutation of ``table`` pending longer than ``stuck_minutes``, one by one by id."""
    pending, killed = [], []
    for m in fetch_mutations(client, db, table):
        if int(m.get("is_done", 0)):
            continue
        info = {"mutation_id": m["mutation_id"], "command": m.get("command", ""),
                "age_minutes": round(float(m.get("age_seconds", 0)) / 60, 1),
                "latest_fail_reason": m.get("latest_fail_reason") or ""}
        if info["age_minutes"] > stuck_minutes:
            log.warning("killing stuck mutation %s on %s.%s (pending %.1f min > %s; latest_fail_reason: %s): %s",
                        info["mutation_id"], db, table, info["age_minutes"], stuck_minutes,
                        info["latest_fail_reason"] or "-", info["command"])
            info["kill_result"] = kill_mutation(client, db, table, m["mutation_id"])
            killed.append(info)
        else:
            log.info("mutation %s on %s.%s pending for %.1f min (not stuck yet; latest_fail_reason: %s)",
                     info["mutation_id"], db, table, info["age_minutes"], info["latest_fail_reason"] or "-")
            pending.append(info)
    return {"killed": killed, "pending": pending}


def run_mutation(client, db: str, table: str, statement: str, params: dict[str, Any], *,
                 timeout_s: float, poll_s: float = 0.5, extra_settings: dict[str, Any] | None = None) -> str:
    """Issue a mutation tagged with a unique run token and wait for exactly that mutation.

    Other pending mutations of the table are not waited on. Raises :class:`MutationFailed`
    on a ``latest_fail_reason``, a kill, or ``timeout_s``.
    """
    token = f"dupguard-{uuid.uuid4().hex}"
    before = {m["mutation_id"] for m in fetch_mutations(client, db, table)}
    client.command(statement, parameters={**params, "run_token": token},
                   settings={"mutations_sync": 0, **(extra_settings or {})})
    mutation_id = None
    deadline = time.monotonic() + timeout_s
    while True:
        mine = [m for m in fetch_mutations(client, db, table)
                if m["mutation_id"] not in before and token in (m.get("command") or "")]
        if mine:
            m = mine[0]
            mutation_id = m["mutation_id"]
            if m.get("latest_fail_reason"):
                raise MutationFailed(f"mutation {mutation_id} on {db}.{table} failed: {m['latest_fail_reason']}")
            if int(m.get("is_killed", 0) or 0):
                raise MutationFailed(f"mutation {mutation_id} on {db}.{table} was killed")
            if int(m.get("is_done", 0)):
                log.info("mutation %s on %s.%s done", mutation_id, db, table)
                return mutation_id
        if time.monotonic() > deadline:
            raise MutationFailed(
                f"mutation {mutation_id or '(not visible in system.mutations)'} on {db}.{table} not done after "
                f"{timeout_s:.0f}s; nothing was inserted. Check system.mutations, then re-run the task")
        time.sleep(poll_s)


# --- preflight ----------------------------------------------------------------
def preflight(client, t: Tables, *, as_of: datetime, max_source_lag_hours: float,
              stuck_mutation_minutes: float) -> dict[str, Any]:
    """Tables and columns, source freshness at ``as_of``, stuck mutations on the unified table."""
    check_columns(client, t.db, t.fills, REQUIRED_COLUMNS["fills"])
    check_columns(client, t.db, t.resolutions, REQUIRED_COLUMNS["resolutions"])
    created = ensure_unified(client, t)
    as_of = _utc(as_of)
    newest = client.query("SELECT max(event_time), count() FROM {db:Identifier}.{fills:Identifier}",
                          parameters=t.params()).result_rows[0]
    newest_fill, fill_rows = newest[0], int(newest[1])
    if not fill_rows:
        raise PositionsError(f"source {t.db}.{t.fills} is empty: nothing to build positions from")
    lag_hours = (as_of - newest_fill).total_seconds() / 3600
    if lag_hours > max_source_lag_hours:
        raise PositionsError(
            f"source {t.db}.{t.fills} is stale: newest fill {newest_fill:%Y-%m-%d %H:%M:%S} UTC is {lag_hours:.1f} h "
            f"before the run's logical date {as_of:%Y-%m-%d %H:%M:%S} (max_source_lag_hours={max_source_lag_hours})")
    mutations = handle_stuck_mutations(client, t.db, t.unified, stuck_mutation_minutes)
    before = count_rows(client, t, t.unified)
    out = {"database": t.db, "created_unified": created, "partitioned_open": is_open_partitioned(client, t),
           "newest_fill": newest_fill.isoformat(), "source_lag_hours": round(lag_hours, 2), "fill_rows": fill_rows,
           "killed_mutations": mutations["killed"], "pending_mutations": mutations["pending"],
           "before": before, "started_at": now_epoch()}
    log.info("preflight %s: %s", t.db, out)
    return out


# --- build --------------------------------------------------------------------
def wallet_ranges(client, t: Tables, table: str, buckets: int) -> list[tuple[str, str]]:
    """``buckets`` ranges [lo, hi) of the wallet sort key with similar row counts ('' = open end)."""
    if buckets <= 1:
        return [("", "")]
    rows = client.query(sql("wallet_rows"), parameters={"db": t.db, "table": ident(table)}).result_rows
    total = sum(int(r[1]) for r in rows)
    if not total:
        return [("", "")]
    bounds, acc, step = [], 0, total / buckets
    for wallet, n in rows:
        if acc >= step * (len(bounds) + 1) and (not bounds or bounds[-1] != wallet):
            bounds.append(wallet)
        acc += int(n)
    edges = ["", *bounds, ""]
    return list(zip(edges[:-1], edges[1:]))


def build(client, t: Tables, *, buckets: int = 1) -> dict[str, Any]:
    """Rebuild every open lot (and the lots of newly resolved markets) into the staging table."""
    started = time.monotonic()
    create_like_unified(client, t, t.staging)
    ranges = wallet_ranges(client, t, t.fills, buckets)
    for i, (lo, hi) in enumerate(ranges, 1):
        t0 = time.monotonic()
        client.command(sql("build_positions"), parameters=t.params(wallet_lo=lo, wallet_hi=hi))
        log.info("build bucket %d/%d wallets [%r, %r) in %.1fs", i, len(ranges), lo, hi, time.monotonic() - t0)
    staged = count_rows(client, t, t.staging)
    out = {"staging": f"{t.db}.{t.staging}", "buckets": len(ranges), "staged_rows": staged["total"],
           "staged_unresolved": staged["unresolved"], "staged_resolved": staged["total"] - staged["unresolved"],
           "seconds": round(time.monotonic() - started, 2)}
    log.info("build: %s", out)
    return out


# --- gates ----------------------------------------------------------------------
def staging_metrics(client, t: Tables) -> dict[str, Any]:
    if not describe(client, t.db, t.staging)[0]:
        raise PositionsError(f"staging table {t.db}.{t.staging} does not exist: run the build task first")
    m = {k: int(v) for k, v in _one(client, "check_staging", t.params()).items()}
    published = m["published_unresolved"]
    m["unresolved_vs_published"] = round(m["staged_unresolved"] / published, 6) if published else 1.0
    return m


def staging_gate(client, t: Tables, *, min_unresolved_rows: int, max_drop_ratio: float) -> dict[str, Any]:
    """Audit staging before publishing: raises GateFailed, leaving the live table untouched."""
    import great_expectations as gx
    import pandas as pd

    from dupguard.gate import run_gate

    m = staging_metrics(client, t)
    zero = lambda col: gx.expectations.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=0)  # noqa: E731
    expectations = [
        zero("duplicate_keys"), zero("negative_tokens_held"), zero("oversold_lots"), zero("empty_keys"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="staged_unresolved", min_value=min_unresolved_rows),
        gx.expectations.ExpectColumnValuesToBeBetween(column="unresolved_vs_published", min_value=max_drop_ratio),
    ]
    summary = run_gate("positions_staging", expectations, dataframe=pd.DataFrame([m]))
    return {"metrics": m, "gate": summary}


def health_metrics(client, t: Tables, *, as_of: datetime) -> dict[str, Any]:
    if not describe(client, t.db, t.staging)[0]:  # health checked without a build: no moved lots
        create_like_unified(client, t, t.staging)
    r = client.query(sql("check_health"), parameters=t.params(as_of=_utc(as_of)))
    row = dict(zip(r.column_names, r.result_rows[0]))
    row["latest_entry"] = row["latest_entry"].isoformat() if row["latest_entry"] else None
    row["hours_stale"] = round(float(row["hours_stale"]), 2)
    for k in ("total", "unresolved", "wallets", "unresolved_duplicates", "moved_lots_in_both"):
        row[k] = int(row[k])
    return row


def health_gate(client, t: Tables, *, as_of: datetime, max_hours_stale: float,
                min_unresolved_rows: int) -> dict[str, Any]:
    import great_expectations as gx
    import pandas as pd

    from dupguard.gate import run_gate

    m = health_metrics(client, t, as_of=as_of)
    expectations = [
        gx.expectations.ExpectColumnValuesToBeBetween(column="unresolved_duplicates", min_value=0, max_value=0),
        gx.expectations.ExpectColumnValuesToBeBetween(column="moved_lots_in_both", min_value=0, max_value=0),
        gx.expectations.ExpectColumnValuesToBeBetween(column="hours_stale", max_value=max_hours_stale),
        gx.expectations.ExpectColumnValuesToBeBetween(column="unresolved", min_value=min_unresolved_rows),
        gx.expectations.ExpectColumnValuesToBeBetween(column="total", min_value=1),
    ]
    frame = pd.DataFrame([{k: v for k, v in m.items() if k != "latest_entry"}])
    summary = run_gate("positions_health", expectations, dataframe=frame)
    return {"metrics": m, "gate": summary}


# --- publish ------------------------------------------------------------------
def publish(client, t: Tables, *, mutation_timeout_s: float) -> dict[str, Any]:
    """Replace the published open part with staging's; insert the newly resolved lots.

    Order (each step safe to repeat): keep a copy of the open part for rollback; insert the
    newly resolved lots not yet present; then swap the open part - ``REPLACE PARTITION``
    (atomic) on a table partitioned by open/resolved, else ``DELETE`` mutation, wait for
    that mutation id, insert.
    """
    staged = count_rows(client, t, t.staging) if describe(client, t.db, t.staging)[0] else None
    if staged is None:
        raise PositionsError(f"staging table {t.db}.{t.staging} does not exist: run build and quality_gate first")
    started = time.monotonic()
    partitioned = is_open_partitioned(client, t)
    create_like_unified(client, t, t.backup)
    client.command(sql("backup_open"), parameters=t.params())
    before = count_rows(client, t, t.unified)
    client.command(sql("publish_resolved"), parameters=t.params())
    moved_inserted = count_rows(client, t, t.unified)["total"] - before["total"]
    out: dict[str, Any] = {"mode": "replace_partition" if partitioned else "delete_mutation_then_insert",
                           "backup": f"{t.db}.{t.backup}", "newly_resolved_inserted": moved_inserted,
                           "open_rows_published": staged["unresolved"], "mutation_id": None}
    t_swap = time.monotonic()
    if partitioned:
        if staged["unresolved"]:
            client.command(f"ALTER TABLE {qualified(t.db, t.unified)} REPLACE PARTITION 1 "
                           f"FROM {qualified(t.db, t.staging)}")
        else:  # nothing open at all (the gate allowed it): drop the open partition
            client.command("ALTER TABLE {db:Identifier}.{unified:Identifier} DROP PARTITION 1", parameters=t.params())
    else:
        out["mutation_id"] = run_mutation(client, t.db, t.unified, sql("delete_open"), t.params(),
                                          timeout_s=mutation_timeout_s)
        client.command(sql("publish_open"), parameters=t.params())
    out["swap_seconds"] = round(time.monotonic() - t_swap, 3)
    out["seconds"] = round(time.monotonic() - started, 3)
    out["after"] = count_rows(client, t, t.unified)
    log.info("publish: %s", out)
    return out


def rollback_open(client, t: Tables, *, mutation_timeout_s: float = 1800) -> dict[str, Any]:
    """Put back the open part saved by the last publish (runbook helper)."""
    if not describe(client, t.db, t.backup)[0]:
        raise PositionsError(f"no backup table {t.db}.{t.backup}")
    saved = count_rows(client, t, t.backup)
    if is_open_partitioned(client, t) and saved["unresolved"]:
        client.command(f"ALTER TABLE {qualified(t.db, t.unified)} REPLACE PARTITION 1 "
                       f"FROM {qualified(t.db, t.backup)}")
    else:
        run_mutation(client, t.db, t.unified, sql("delete_open"), t.params(), timeout_s=mutation_timeout_s)
        client.command(sql("publish_open").replace("{staging:Identifier}", "{backup:Identifier}"),
                       parameters=t.params())
    return {"restored_open_rows": saved["unresolved"]}


def now_epoch() -> float:
    """Wall-clock seconds, only to time a run's duration (never to pick its data window)."""
    return time.time()


def report(client, t: Tables, *, before: dict[str, int], started_at: float | None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    after = count_rows(client, t, t.unified)
    out = {"table": f"{t.db}.{t.unified}", "before": before, "after": after,
           "rows_per_partition": partitions(client, t), **(extra or {})}
    if started_at is not None:
        out["duration_seconds"] = round(now_epoch() - started_at, 1)
    log.info("report: %s", out)
    return out


# --- deduplicate ----------------------------------------------------------------
def table_metrics(client, t: Tables) -> dict[str, int]:
    return {k: int(v) for k, v in _one(client, "check_table", t.params()).items()}


def restore_keepers(client, t: Tables, *, mutation_timeout_s: float) -> int:
    """Re-insert kept copies whose key is absent (after a crash), then empty the keepers table."""
    if not describe(client, t.db, t.keep)[0]:
        create_like_unified(client, t, t.keep)
        return 0
    waiting = [m for m in fetch_mutations(client, t.db, t.unified)
               if not int(m.get("is_done", 0)) and t.keep in (m.get("command") or "")]
    deadline = time.monotonic() + mutation_timeout_s
    while waiting:  # a dedupe DELETE still reading the keepers: let it finish first
        if time.monotonic() > deadline:
            raise MutationFailed(f"dedupe mutation(s) {[m['mutation_id'] for m in waiting]} still pending")
        time.sleep(0.5)
        waiting = [m for m in fetch_mutations(client, t.db, t.unified)
                   if not int(m.get("is_done", 0)) and t.keep in (m.get("command") or "")]
    before = count_rows(client, t, t.unified)["total"]
    client.command(sql("dedupe_restore_keepers"), parameters=t.params())
    restored = count_rows(client, t, t.unified)["total"] - before
    client.command("TRUNCATE TABLE {db:Identifier}.{keep:Identifier}", parameters=t.params())
    return restored


def deduplicate(client, t: Tables, *, buckets: int, mutation_timeout_s: float) -> dict[str, Any]:
    """Remove surplus copies of lot keys, one wallet range at a time, in every partition."""
    check_columns(client, t.db, t.unified, UNIFIED_COLUMNS)
    recovered = restore_keepers(client, t, mutation_timeout_s=mutation_timeout_s)
    done = []
    for lo, hi in wallet_ranges(client, t, t.unified, buckets):
        p = t.params(wallet_lo=lo, wallet_hi=hi)
        counts = _one(client, "dedupe_count_bucket", p)
        surplus = int(counts.get("surplus_rows", 0))
        if not surplus:
            continue
        client.command(sql("dedupe_stage_keepers"), parameters=p)
        mutation_id = run_mutation(client, t.db, t.unified, sql("dedupe_delete_bucket"), p,
                                   timeout_s=mutation_timeout_s,
                                   extra_settings={"allow_nondeterministic_mutations": 1})
        restored = restore_keepers(client, t, mutation_timeout_s=mutation_timeout_s)
        info = {"wallet_lo": lo, "wallet_hi": hi, "rows": int(counts["rows"]), "surplus_rows": surplus,
                "keys_rewritten": restored, "mutation_id": mutation_id}
        log.info("dedupe bucket: %s", info)
        done.append(info)
    return {"buckets_repaired": done, "recovered_from_previous_run": recovered,
            "surplus_rows_removed": sum(b["surplus_rows"] for b in done)}


def dedupe_gate(client, t: Tables, *, expected_keys: int) -> dict[str, Any]:
    """No duplicate key, nothing lost (same distinct keys as before), sane quantities."""
    import great_expectations as gx
    import pandas as pd

    from dupguard.gate import run_gate

    m = table_metrics(client, t)
    zero = lambda col: gx.expectations.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=0)  # noqa: E731
    expectations = [
        zero("duplicate_rows"), zero("negative_tokens_held"), zero("oversold_lots"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="distinct_keys", min_value=expected_keys,
                                                      max_value=expected_keys),
    ]
    summary = run_gate("positions_dedupe", expectations, dataframe=pd.DataFrame([m]))
    return {"metrics": m, "gate": summary}


# --- DAG glue -----------------------------------------------------------------
@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """A failed gate or precondition fails the task without retries (retrying the same data
    gives the same answer); database and mutation errors keep the normal retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from dupguard.gate import GateFailed

    try:
        yield
    except MutationFailed:
        raise
    except (GateFailed, PositionsError) as exc:
        raise AirflowFailException(str(exc)) from exc


@contextlib.contextmanager
def task_client(conn_id: str) -> Iterator[Any]:
    """What every positions task opens: the ClickHouse client, inside :func:`fail_fast`."""
    from dupguard.connections import clickhouse_client

    with fail_fast(), clickhouse_client(conn_id) as client:
        yield client


def run_as_of(context: dict[str, Any]) -> datetime:
    """The moment a run checks freshness against: its logical date (manual runs without
    one use the time the run was due), never the wall clock of the worker."""
    from dupguard.dagkit import run_time

    try:
        return run_time(context)
    except ValueError as exc:
        raise PositionsError(str(exc)) from exc


def run_params(context: dict[str, Any]) -> dict[str, Any]:
    """DAG params with defaults, type-checked (a bad value fails the first task clearly)."""
    raw = {**DEFAULTS, **{k: v for k, v in (context.get("params") or {}).items() if v is not None}}
    out: dict[str, Any] = {"database": str(raw.get("database") or "")}
    for name in ("min_unresolved_rows", "stuck_mutation_minutes", "build_buckets", "dedupe_buckets"):
        if name in raw:
            out[name] = int(raw[name])
    for name in ("max_drop_ratio", "max_hours_stale", "max_source_lag_hours", "mutation_timeout_minutes"):
        out[name] = float(raw[name])
    if not 0 <= out["max_drop_ratio"] <= 1:
        raise PositionsError(f"max_drop_ratio must be within [0, 1], got {out['max_drop_ratio']}")
    return out
