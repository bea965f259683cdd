"""The positions gates, declared as data: each is a one-row aggregate computed in ClickHouse
(``include/sql/positions/check_*.sql``) checked by :func:`dupguard.common.gate.run_gate`.
Bounds that are DAG params are named by the param (bound at run time)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from dupguard.common.gate import Check, GateSpec, at_least, at_most, run_gate, zero
from dupguard.positions import config
from dupguard.positions.tables import PositionsError, Tables, create_like_unified, exists, one, sql, utc

_STAGING_TABLE = config.UNIFIED_TABLE + config.STAGING_SUFFIX
_NEGATIVE = "FIFO never sells more tokens than a lot holds: a negative holding is a build bug"
_OVERSOLD = "a lot cannot have sold more tokens than it bought: a build bug or corrupt fills"

#: Staging, before anything is published (a failure leaves the live table untouched).
STAGING = GateSpec("positions_staging", (
    zero("duplicate_keys", "one row per lot key: a second row would double-count the lot once published"),
    zero("negative_tokens_held", _NEGATIVE),
    zero("oversold_lots", _OVERSOLD),
    zero("empty_keys", "a lot without wallet, condition or tx_hash cannot be read by anyone"),
    at_least("staged_unresolved", "min_unresolved_rows", "fewer open lots than this means the build lost data"),
    at_least("unresolved_vs_published", "max_drop_ratio",
             "a rebuild that would drop this large a share of the published open lots at once is refused"),
), tables=(_STAGING_TABLE,))

#: The published table, after publish (and in dedup_health_daily, with the same thresholds).
HEALTH = GateSpec("positions_health", (
    zero("unresolved_duplicates", "an open lot published twice double-counts a position"),
    zero("moved_lots_in_both", "a lot of a market that resolved is either open or resolved, never both"),
    at_most("hours_stale", "max_hours_stale", "the refresh runs every 6 h: no newer entry means the feed or the "
                                              "refresh stopped"),
    at_least("unresolved", "min_unresolved_rows", "fewer open lots than this means data was lost"),
    at_least("total", 1, "an empty table means the publish emptied it"),
), tables=(config.UNIFIED_TABLE,))

#: The whole table after a dedupe: nothing duplicated, nothing lost.
DEDUPE = GateSpec("positions_dedupe", (
    zero("duplicate_rows", "the dedupe leaves one row per lot key"),
    zero("negative_tokens_held", _NEGATIVE),
    zero("oversold_lots", _OVERSOLD),
    Check("distinct_keys", "every lot key present before the dedupe is still there (one copy kept of each)",
          min="expected_keys", max="expected_keys"),
), tables=(config.UNIFIED_TABLE,))


def _gate(spec: GateSpec, metrics: dict[str, Any], **bounds: Any) -> dict[str, Any]:
    """Validate the checked columns of ``metrics`` against ``spec``: {"metrics", "gate"}."""
    import pandas as pd

    checked = {c.column for c in spec.checks}
    frame = pd.DataFrame([{k: v for k, v in metrics.items() if k in checked}])
    return {"metrics": metrics, "gate": run_gate(spec, dataframe=frame, bounds=bounds)}


def staging_metrics(client, t: Tables) -> dict[str, Any]:
    if not exists(client, t.db, t.staging):
        raise PositionsError(f"staging table {t.db}.{t.staging} does not exist: run the build task first")
    m = {k: int(v) for k, v in one(client, sql("check_staging", t)).items()}
    published = m["published_unresolved"]
    m["unresolved_vs_published"] = round(m["staged_unresolved"] / published, 6) if published else 1.0
    return m


def staging_gate(client, t: Tables, *, min_unresolved_rows: int, max_drop_ratio: float) -> dict[str, Any]:
    """Audit staging before publishing: raises GateFailed, leaving the live table untouched."""
    return _gate(STAGING, staging_metrics(client, t), min_unresolved_rows=min_unresolved_rows,
                 max_drop_ratio=max_drop_ratio)


def health_metrics(client, t: Tables, *, as_of: datetime) -> dict[str, Any]:
    if not exists(client, t.db, t.staging):  # health checked without a build: no moved lots
        create_like_unified(client, t, t.staging)
    row = one(client, sql("check_health", t), {"as_of": utc(as_of)})
    row["latest_entry"] = row["latest_entry"].isoformat() if row["latest_entry"] else None
    row["hours_stale"] = round(float(row["hours_stale"]), 2)
    for k in ("total", "unresolved", "wallets", "unresolved_duplicates", "moved_lots_in_both"):
        row[k] = int(row[k])
    return row


def health_gate(client, t: Tables, *, as_of: datetime, max_hours_stale: float,
                min_unresolved_rows: int) -> dict[str, Any]:
    """The published table: no duplicate open lot, no lot both open and resolved, fresh, enough open lots."""
    return _gate(HEALTH, health_metrics(client, t, as_of=as_of), max_hours_stale=max_hours_stale,
                 min_unresolved_rows=min_unresolved_rows)


def table_metrics(client, t: Tables) -> dict[str, int]:
    return {k: int(v) for k, v in one(client, sql("check_table", t)).items()}


def dedupe_gate(client, t: Tables, *, expected_keys: int) -> dict[str, Any]:
    """No duplicate key, nothing lost (same distinct keys as before), sane quantities."""
    return _gate(DEDUPE, table_metrics(client, t), expected_keys=expected_keys)


# --- unified_positions_adopt_partitioning ------------------------------------------------------
_ADOPT_COPY_TABLE = config.UNIFIED_TABLE + config.ADOPT_SUFFIX

#: The partitioned copy before it is exchanged with the table: the same rows, the same keys.
ADOPT = GateSpec("positions_adopt_partitioning", (
    zero("row_difference", "the copy holds exactly the table's rows: one lost or doubled row is refused"),
    zero("rows_differ", "every column of every row is the same (checksum of all rows): a changed value is refused"),
    zero("keys_differ", "the same lot keys with the same multiplicity: readers find every lot they found before"),
    zero("misplaced_rows", "open rows in partition 1, resolved in 0: what REPLACE PARTITION relies on"),
), tables=(_ADOPT_COPY_TABLE,))


def adopt_gate(client, t: Tables) -> dict[str, Any]:
    """The partitioned copy against the table (``partitioning.adoption_metrics``); the alert
    lists the wallet ranges that differ."""
    import pandas as pd

    from dupguard.positions import partitioning

    metrics = partitioning.adoption_metrics(client, t)
    frame = pd.DataFrame([{c.column: metrics[c.column] for c in ADOPT.checks}])

    def offending() -> list[str]:
        return [f"wallets [{lo!r}, {hi!r})" for _, lo, hi in partitioning.differing_ranges(client, t)[:10]]

    return {"metrics": metrics, "gate": run_gate(ADOPT, dataframe=frame, offending=offending)}
