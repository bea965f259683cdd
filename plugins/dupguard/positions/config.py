"""The facts of the positions jobs: tables, the lot key, the unified table's columns, the
thresholds with the reason for each, and the DAG params built from them."""
from __future__ import annotations

from typing import Any

FILLS_TABLE = "pm_canonical_fills_v4"
RESOLUTIONS_TABLE = "pm_condition_resolutions"
UNIFIED_TABLE = "pm_trade_fifo_roi_v3_mat_unified"
# Work tables next to the unified table (same database, name = unified table + suffix).
STAGING_SUFFIX = "__staging"      # the build's output, gated before publish, kept until the next build
BACKUP_SUFFIX = "__prev_open"     # the open part before the last publish: what a rollback restores
KEEP_SUFFIX = "__dedupe_keep"     # one kept copy per duplicated key while a dedupe bucket is repaired
ROLLBACK_SUFFIX = "__rollback"    # the open part a rollback swaps in (the backup minus lots resolved since)

#: One row per bought lot: the buy fills of one tx_hash for one wallet/condition/outcome
#: (rendered into the SQL as ``{key}``).
KEY_COLUMNS = ("tx_hash", "wallet", "condition_id", "outcome_index")

#: The unified table's columns, in order, with their ClickHouse types (production's shape).
#: Every statement that lists them renders them from here (``{columns}``, ``{column_defs}``).
UNIFIED_SCHEMA: tuple[tuple[str, str], ...] = (
    ("tx_hash", "String"),
    ("wallet", "LowCardinality(String)"),
    ("condition_id", "String"),
    ("outcome_index", "UInt8"),
    ("entry_time", "DateTime"),
    ("resolved_at", "Nullable(DateTime)"),
    ("cost_usd", "Float64"),
    ("tokens", "Float64"),
    ("tokens_sold_early", "Float64"),
    ("tokens_held", "Float64"),
    ("exit_value", "Float64"),
    ("pnl_usd", "Float64"),
    ("roi", "Float64"),
    ("pct_sold_early", "Float64"),
    ("is_maker", "UInt8"),
    ("is_short", "UInt8"),
    ("is_closed", "UInt8"),
)
UNIFIED_COLUMNS = tuple(name for name, _ in UNIFIED_SCHEMA)
#: Sort key: a wallet range is read through the primary index (build and dedupe buckets).
UNIFIED_ORDER_BY = ("wallet", "condition_id", "outcome_index", "tx_hash")
#: How the jobs create the unified table: partition 1 = open lots, swapped atomically with
#: ``REPLACE PARTITION``; resolved rows (partition 0) are never rewritten.
OPEN_PARTITION_BY = "isNull(resolved_at)"
# Partition keys meaning "open vs resolved" as system.tables spells them.
OPEN_PARTITION_KEYS = ("isNull(resolved_at)", "resolved_at IS NULL")

#: Source columns the build reads (checked by preflight; the unified table: UNIFIED_COLUMNS).
REQUIRED_COLUMNS = {
    "fills": ("fill_id", "event_time", "block_number", "tx_hash", "wallet", "condition_id", "outcome_index",
              "tokens_delta", "usdc_delta", "is_maker", "_version"),
    "resolutions": ("condition_id", "payout_numerators", "resolved_at", "is_deleted"),
}

#: A lot of fewer tokens gets no row (its tokens are still held and sold FIFO); an open lot
#: holding fewer is closed. The position contract's dust threshold (docs/positions.md).
DUST_TOKENS = 0.01

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
    # Wallet ranges the dedupe repairs one at a time: each DELETE mutation rewrites only the
    # parts of one range, and a crash loses at most one range's progress.
    "dedupe_buckets": 16,
    # None = the connection's schema (the database holding the three tables).
    "database": None,
}

#: The DAG params: JSON-schema type, bounds, title and description (defaults: DEFAULTS).
PARAMS: dict[str, dict[str, Any]] = {
    "min_unresolved_rows": {"type": "integer", "minimum": 0, "title": "Minimum open lots",
                            "description": "Fewest open lots staging and the published table may hold "
                                           "(production: 5000000)."},
    "max_drop_ratio": {"type": "number", "minimum": 0, "maximum": 1, "title": "Maximum drop ratio",
                       "description": "Staged open lots must be at least this fraction of the published open lots."},
    "max_hours_stale": {"type": "number", "minimum": 0, "title": "Maximum hours stale",
                        "description": "Newest published entry at most this many hours before the logical date."},
    "max_source_lag_hours": {"type": "number", "minimum": 0, "title": "Maximum source lag (hours)",
                             "description": "Newest fill at most this many hours before the logical date."},
    "stuck_mutation_minutes": {"type": "integer", "minimum": 1, "title": "Stuck mutation (minutes)",
                               "description": "Kill (by id) mutations of the unified table pending longer than this."},
    "mutation_timeout_minutes": {"type": "number", "minimum": 1, "title": "Mutation timeout (minutes)",
                                 "description": "How long to wait for each DELETE mutation this run issues."},
    "build_buckets": {"type": "integer", "minimum": 1, "maximum": 256, "title": "Build buckets",
                      "description": "Wallet ranges the build is split into (lower memory)."},
    "dedupe_buckets": {"type": "integer", "minimum": 1, "maximum": 4096, "title": "Dedupe buckets",
                       "description": "Wallet ranges repaired one at a time."},
    "database": {"type": ["null", "string"], "title": "Database",
                 "description": "ClickHouse database of the tables; empty = the connection's schema."},
}
