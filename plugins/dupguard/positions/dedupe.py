"""Repair of duplicate lot keys anywhere in the unified table (open and resolved rows), one
wallet range at a time: one copy per duplicated key is set aside in ``<table>__dedupe_keep``,
every copy is deleted by a mutation waited on by its own id, the kept copy is inserted back.
A crash at any point is recovered by the next run (kept copies whose key is absent first)."""
from __future__ import annotations

import logging
from typing import Any

from dupguard.positions import config
from dupguard.positions.build import bucket_count
from dupguard.positions.gates import table_metrics
from dupguard.positions.mutations import handle_stuck_mutations, run_mutation, wait_for_pending
from dupguard.positions.tables import (Tables, check_columns, command, count_rows, create_like_unified, exists,
                                       now_epoch, one, sql, wallet_ranges)

log = logging.getLogger(__name__)


def preflight(client, t: Tables, *, stuck_mutation_minutes: float) -> dict[str, Any]:
    """The table and its columns; stuck mutations killed by id; rows and distinct keys counted."""
    check_columns(client, t.db, t.unified, config.UNIFIED_COLUMNS)
    mutations = handle_stuck_mutations(client, t.db, t.unified, stuck_mutation_minutes)
    return {"before": table_metrics(client, t), "killed_mutations": mutations["killed"],
            "pending_mutations": mutations["pending"], "started_at": now_epoch()}


def restore_keepers(client, t: Tables, *, mutation_timeout_s: float) -> int:
    """Re-insert kept copies whose key is absent (after a crash), then empty the keepers table."""
    if not exists(client, t.db, t.keep):
        create_like_unified(client, t, t.keep)
        return 0
    # a dedupe DELETE still reading the keepers: let it finish first
    wait_for_pending(client, t.db, t.unified, t.keep, timeout_s=mutation_timeout_s)
    before = count_rows(client, t, t.unified)["total"]
    command(client, sql("dedupe_restore_keepers", t))
    restored = count_rows(client, t, t.unified)["total"] - before
    command(client, f"TRUNCATE TABLE {t.q(t.keep)}")
    return restored


def deduplicate(client, t: Tables, *, buckets: int, mutation_timeout_s: float,
                max_bucket_fills: int = config.DEFAULTS["max_bucket_fills"]) -> dict[str, Any]:
    """Remove surplus copies of lot keys, one wallet range at a time, in every partition:
    at least ``buckets`` ranges, more when the table's rows exceed the memory budget."""
    check_columns(client, t.db, t.unified, config.UNIFIED_COLUMNS)
    recovered = restore_keepers(client, t, mutation_timeout_s=mutation_timeout_s)
    buckets = max(buckets, bucket_count(client, t, t.unified, max_bucket_fills=max_bucket_fills))
    ranges = wallet_ranges(client, t, t.unified, buckets)
    done = []
    for lo, hi in ranges:
        bucket = {"wallet_lo": lo, "wallet_hi": hi}
        counts = one(client, sql("dedupe_count_bucket", t), bucket)
        surplus = int(counts.get("surplus_rows", 0))
        if not surplus:
            continue
        command(client, sql("dedupe_stage_keepers", t), bucket)
        mutation_id = run_mutation(client, t.db, t.unified, sql("dedupe_delete_bucket", t), bucket,
                                   timeout_s=mutation_timeout_s,
                                   extra_settings={"allow_nondeterministic_mutations": 1})
        restored = restore_keepers(client, t, mutation_timeout_s=mutation_timeout_s)
        info = {"wallet_lo": lo, "wallet_hi": hi, "rows": int(counts["rows"]), "surplus_rows": surplus,
                "keys_rewritten": restored, "mutation_id": mutation_id}
        log.info("dedupe bucket: %s", info)
        done.append(info)
    return {"buckets": len(ranges), "buckets_repaired": done, "recovered_from_previous_run": recovered,
            "surplus_rows_removed": sum(b["surplus_rows"] for b in done)}
