"""The facts of the positions jobs: tables, the lot key, the unified table's columns, the
thresholds with the reason for each, and the DAG params built from them."""
from __future__ import annotations

from typing import Any

FILLS_TABLE = "pm_canonical_fills_v4"
RESOLUTIONS_TABLE = "pm_condition_resolutions"
UNIFIED_TABLE = "pm_trade_fifo_roi_v3_mat_unified"
# Work tables next to the unified table (same database, name = unified table + suffix).
STAGING_SUFFIX = "__staging"      # the build's output, gated before publish, kept until the next build
KEEP_SUFFIX = "__dedupe_keep"     # one kept copy per duplicated key while a dedupe bucket is repaired
ROLLBACK_SUFFIX = "__rollback"    # the open part a rollback swaps in (the backup minus lots resolved since)
# The open part each publish replaces is saved first as its own generation
# <table>__open_gen_<run token>; the publish ledger <table>__publish_log records each swap's
# start and end, so a killed swap is completed by the next attempt (docs/positions.md).
GENERATION_INFIX = "__open_gen_"
PUBLISH_LOG_SUFFIX = "__publish_log"
#: Generations kept (newest first); the newest good one is kept even when older than these.
KEEP_GENERATIONS = 3
# unified_positions_adopt_partitioning (the unpartitioned table moved to the partitioned shape):
ADOPT_SUFFIX = "__partitioned"         # the new partitioned copy, exchanged with the table when complete
PRE_PARTITIONING_SUFFIX = "__pre_partitioning"  # the original after the exchange, kept until drop_old
ADOPT_LEDGER_SUFFIX = "__adopt_ledger"  # the copy's wallet ranges and which are done (resumable)
#: The adopt copy's wallet ranges: at least this many (a crash redoes at most one range), more
#: when the table's rows exceed max_bucket_fills per range.
ADOPT_MIN_RANGES = 16
#: Catch-up passes before the gate: each re-copies the ranges whose rows changed since their
#: copy; with writers paused one pass suffices, more means a writer is still publishing.
ADOPT_CATCH_UP_ROUNDS = 3

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
    # A refresh still running this long after it started sends one LATE alert (common/deadline).
    "late_after_minutes": 90,
    # How long publish waits for its own DELETE mutation before failing (never inserts early).
    "mutation_timeout_minutes": 30,
    # Wallet ranges the build is split into; None = chosen from the memory budget below
    # (ceil(fills / max_bucket_fills), from the fills table's row count); a number overrides it.
    "build_buckets": None,
    # Memory budget of one build bucket, in fills (the dedupe's budget too, in rows of the
    # unified table: lighter per row, so it is conservative there). Sized from the build's peak
    # RSS in one bucket (bench/bench_positions.py, docs/benchmarks.md): 0.60 GB at 1M fills,
    # 1.34-1.64 GB at 20M, i.e. ~40-55 bytes per fill over a ~0.55 GB base: 15M fills peak at
    # ~1.2-1.4 GB, under ~1.5 GB. Smaller buckets do not lower the peak further (fixed costs)
    # but cost CPU (each re-reads the resolutions): 3 buckets at 20M took +40% CPU.
    "max_bucket_fills": 15_000_000,
    # Wallet ranges the dedupe repairs one at a time: each DELETE mutation rewrites only the
    # parts of one range, and a crash loses at most one range's progress.
    "dedupe_buckets": 16,
    # None = the connection's schema (the database holding the three tables).
    "database": None,
    # unified_positions_adopt_partitioning: keep <table>__pre_partitioning (the unpartitioned
    # original) after the exchange until a run with drop_old=true: the way back if readers object.
    "drop_old": False,
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
    "late_after_minutes": {"type": "number", "minimum": 0.01, "title": "Late after (minutes)",
                           "description": "A run still going this long after it started sends one LATE alert."},
    "mutation_timeout_minutes": {"type": "number", "minimum": 1, "title": "Mutation timeout (minutes)",
                                 "description": "How long to wait for each DELETE mutation this run issues."},
    "build_buckets": {"type": ["null", "integer"], "minimum": 1, "maximum": 256, "title": "Build buckets",
                      "description": "Wallet ranges the build is split into; empty = from max_bucket_fills."},
    "max_bucket_fills": {"type": "integer", "minimum": 1, "title": "Maximum fills per bucket",
                         "description": "Memory budget of one wallet range: buckets = ceil(rows / this)."},
    "dedupe_buckets": {"type": "integer", "minimum": 1, "maximum": 4096, "title": "Dedupe buckets",
                       "description": "Wallet ranges repaired one at a time."},
    "drop_old": {"type": "boolean", "title": "Drop the old table",
                 "description": "Adopt partitioning: drop <table>__pre_partitioning (the unpartitioned original)."},
    "database": {"type": ["null", "string"], "title": "Database",
                 "description": "ClickHouse database of the tables; empty = the connection's schema."},
}
