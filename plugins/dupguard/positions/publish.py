"""Publishing the open part of the unified table, and rolling it back.

A publish keeps a copy of the published open part (``<table>__prev_open``), inserts the lots
of markets resolved since (not yet present as resolved), then swaps the open part in:
``REPLACE PARTITION`` (atomic) on a table partitioned by open/resolved, else a ``DELETE``
mutation waited on by its own id, then an insert. A rollback swaps the saved copy back the
same way. Each step is safe to repeat.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from dupguard.positions import config
from dupguard.positions.mutations import run_mutation
from dupguard.positions.tables import (PositionsError, Tables, check_columns, command, count_rows, create_like_unified,
                                       exists, is_open_partitioned, sql)

log = logging.getLogger(__name__)


def _swap_open(client, t: Tables, source: str, *, mutation_timeout_s: float) -> dict[str, Any]:
    """Make the open rows of ``source`` (a table shaped like the unified one) the published open part."""
    started = time.monotonic()
    out: dict[str, Any] = {"mode": "replace_partition", "mutation_id": None}
    if is_open_partitioned(client, t):
        if count_rows(client, t, source)["unresolved"]:
            command(client, f"ALTER TABLE {t.q(t.unified)} REPLACE PARTITION 1 FROM {t.q(source)}")
        else:  # nothing open at all (the gate allowed it): drop the open partition
            command(client, f"ALTER TABLE {t.q(t.unified)} DROP PARTITION 1")
    else:
        out["mode"] = "delete_mutation_then_insert"
        out["mutation_id"] = run_mutation(client, t.db, t.unified, sql("delete_open", t), timeout_s=mutation_timeout_s)
        command(client, sql("copy_open", t, target=t.q(t.unified), source=t.q(source)))
    out["swap_seconds"] = round(time.monotonic() - started, 3)
    return out


def publish(client, t: Tables, *, mutation_timeout_s: float) -> dict[str, Any]:
    """Replace the published open part with staging's; insert the newly resolved lots."""
    if not exists(client, t.db, t.staging):
        raise PositionsError(f"staging table {t.db}.{t.staging} does not exist: run build and quality_gate first")
    staged = count_rows(client, t, t.staging)
    started = time.monotonic()
    create_like_unified(client, t, t.backup)
    command(client, sql("copy_open", t, target=t.q(t.backup), source=t.q(t.unified)))
    before = count_rows(client, t, t.unified)
    command(client, sql("publish_resolved", t))
    moved_inserted = count_rows(client, t, t.unified)["total"] - before["total"]
    swap = _swap_open(client, t, t.staging, mutation_timeout_s=mutation_timeout_s)
    out = {"mode": swap["mode"], "backup": f"{t.db}.{t.backup}", "newly_resolved_inserted": moved_inserted,
           "open_rows_published": staged["unresolved"], "mutation_id": swap["mutation_id"],
           "swap_seconds": swap["swap_seconds"], "seconds": round(time.monotonic() - started, 3),
           "after": count_rows(client, t, t.unified)}
    log.info("publish: %s", out)
    return out


def rollback_open(client, t: Tables, *, mutation_timeout_s: float) -> dict[str, Any]:
    """Put back the open part saved by the last publish (``<table>__prev_open``), except the
    lots published as resolved since (a lot is never both open and resolved).

    Refuses when there is no backup, or when it holds no open row (restoring it would empty
    the open part). Safe to repeat: the backup is only rewritten by the next publish.
    """
    check_columns(client, t.db, t.unified, config.UNIFIED_COLUMNS)
    if not exists(client, t.db, t.backup):
        raise PositionsError(f"no backup table {t.db}.{t.backup}: nothing was published yet, nothing to roll back")
    saved = count_rows(client, t, t.backup)["unresolved"]
    if not saved:
        raise PositionsError(f"backup {t.db}.{t.backup} holds no open rows: restoring it would empty the open part")
    before = count_rows(client, t, t.unified)
    create_like_unified(client, t, t.rollback)
    command(client, sql("stage_rollback", t))
    restored = count_rows(client, t, t.rollback)["unresolved"]
    swap = _swap_open(client, t, t.rollback, mutation_timeout_s=mutation_timeout_s)
    command(client, f"DROP TABLE IF EXISTS {t.q(t.rollback)}")
    out = {"backup": f"{t.db}.{t.backup}", "saved_open_rows": saved, "restored_open_rows": restored,
           "skipped_resolved_since": saved - restored, **swap, "before": before,
           "after": count_rows(client, t, t.unified)}
    log.info("rollback: %s", out)
    return out
