"""Moving production's unpartitioned unified table to the ``PARTITION BY isNull(resolved_at)``
shape online (``unified_positions_adopt_partitioning``), so every later refresh publishes by an
atomic ``REPLACE PARTITION`` instead of a ``DELETE`` mutation + insert (readers see no gap).

1. :func:`copy` - ``<table>__partitioned`` is created with the partitioned shape and filled
   wallet range by wallet range; the ranges are planned once in ``<table>__adopt_ledger`` and
   each is marked done after its insert, so a killed run resumes at the first range not done
   (a range begun but not marked is cleared first: no row twice);
2. :func:`catch_up` - rows written to the table meanwhile: every range whose checksum (rows x
   every column) differs between the table and the copy is cleared and copied again;
3. the gate (:func:`dupguard.positions.gates.adopt_gate`) - same rows, same keys;
4. :func:`exchange` - ``EXCHANGE TABLES`` (atomic), then the original is renamed
   ``<table>__pre_partitioning`` and the ledger dropped;
5. :func:`cleanup` - drops ``<table>__pre_partitioning`` only when asked (``drop_old``).

Every step finds where the previous run stopped from the tables themselves, so a re-run (or a
retry) converges, and a run after the exchange changes nothing.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from dupguard.positions import config
from dupguard.positions.build import bucket_count
from dupguard.positions.mutations import run_mutation
from dupguard.positions.tables import (PositionsError, Tables, check_columns, command, describe, exists,
                                       is_open_partitioned, now_epoch, one, partitions, rows, sql, wallet_ranges)

log = logging.getLogger(__name__)

ADOPTED, EXCHANGED, TO_ADOPT = "adopted", "exchanged", "to_adopt"


def work_tables(t: Tables) -> dict[str, str]:
    """The adoption's tables next to the unified one (same database)."""
    return {"copy": t.unified + config.ADOPT_SUFFIX, "old": t.unified + config.PRE_PARTITIONING_SUFFIX,
            "ledger": t.unified + config.ADOPT_LEDGER_SUFFIX}


def _sql(name: str, t: Tables, **tables_: str) -> str:
    return sql(name, t, **{k: t.q(v) for k, v in tables_.items()})


def state(client, t: Tables) -> str:
    """``to_adopt`` (the table is unpartitioned), ``exchanged`` (partitioned, the original still
    under the copy's name: the rename is left), or ``adopted``."""
    check_columns(client, t.db, t.unified, config.UNIFIED_COLUMNS)
    w = work_tables(t)
    if not is_open_partitioned(client, t):
        if exists(client, t.db, w["old"]):
            raise PositionsError(f"{t.db}.{w['old']} exists while {t.db}.{t.unified} is unpartitioned: an earlier "
                                 "adoption was undone by hand; rename or drop it first")
        return TO_ADOPT
    copy_ = describe(client, t.db, w["copy"])
    if copy_[0] and not copy_[1]:
        return EXCHANGED
    return ADOPTED


def preflight(client, t: Tables) -> dict[str, Any]:
    """State, rows and partitions of the table; the ranges already copied by an earlier run."""
    st = state(client, t)
    w = work_tables(t)
    done = len(_ledger(client, t, "done")) if exists(client, t.db, w["ledger"]) else 0
    out = {"table": f"{t.db}.{t.unified}", "state": st, "rows": int(one(client, f"SELECT count() AS n FROM "
                                                                            f"{t.q(t.unified)}")["n"]),
           "ranges_done_before": done, "old_kept": exists(client, t.db, w["old"]), "started_at": now_epoch()}
    log.info("adopt preflight: %s", out)
    return out


# --- copy -------------------------------------------------------------------------------------
def _ledger(client, t: Tables, kind: str) -> dict[int, tuple[str, str]]:
    found = rows(client, f"SELECT bucket, wallet_lo, wallet_hi FROM {t.q(work_tables(t)['ledger'])} "
                         "WHERE state = {state:String} ORDER BY bucket", {"state": kind})
    return {int(r["bucket"]): (r["wallet_lo"], r["wallet_hi"]) for r in found}


def _mark(client, t: Tables, kind: str, entries: list[tuple[int, str, str, int]]) -> None:
    client.insert(work_tables(t)["ledger"], [[b, lo, hi, kind, n] for b, lo, hi, n in entries],
                  column_names=["bucket", "wallet_lo", "wallet_hi", "state", "rows"], database=t.db)


def _range(lo: str, hi: str) -> dict[str, str]:
    return {"wallet_lo": lo, "wallet_hi": hi}


def _checksum(client, t: Tables, table: str, lo: str, hi: str) -> tuple[int, int]:
    r = one(client, _sql("range_checksum", t, table=table), _range(lo, hi))
    return int(r["rows"]), int(r["row_hash"] or 0)


def _copy_range(client, t: Tables, lo: str, hi: str, *, mutation_timeout_s: float) -> int:
    """(Re)copy one wallet range into the copy: cleared first when it holds rows already."""
    w = work_tables(t)
    if _checksum(client, t, w["copy"], lo, hi)[0]:
        run_mutation(client, t.db, w["copy"], _sql("delete_wallet_range", t, target=w["copy"]), _range(lo, hi),
                     timeout_s=mutation_timeout_s)
    command(client, _sql("copy_wallet_range", t, target=w["copy"], source=t.unified), _range(lo, hi))
    return _checksum(client, t, w["copy"], lo, hi)[0]


def _plan(client, t: Tables, *, max_bucket_fills: int) -> dict[int, tuple[str, str]]:
    """The copy's wallet ranges: planned once (ledger), the same on every resumed run."""
    planned = _ledger(client, t, "planned")
    if not planned:
        n = max(config.ADOPT_MIN_RANGES, bucket_count(client, t, t.unified, max_bucket_fills=max_bucket_fills))
        ranges = wallet_ranges(client, t, t.unified, n)
        _mark(client, t, "planned", [(i, lo, hi, 0) for i, (lo, hi) in enumerate(ranges)])
        planned = _ledger(client, t, "planned")
    return planned


def copy(client, t: Tables, *, max_bucket_fills: int, mutation_timeout_s: float) -> dict[str, Any]:
    """Create the partitioned copy and fill it with the ranges not copied yet."""
    if state(client, t) != TO_ADOPT:
        return {"skipped": "already partitioned"}
    started = time.monotonic()
    w = work_tables(t)
    command(client, sql("create_unified", t, unified=t.q(w["copy"]),
                        partition_by=f"PARTITION BY {config.OPEN_PARTITION_BY}"))
    command(client, _sql("create_adopt_ledger", t, ledger=w["ledger"]))
    planned = _plan(client, t, max_bucket_fills=max_bucket_fills)
    done = _ledger(client, t, "done")
    copied = 0
    for bucket, (lo, hi) in planned.items():
        if bucket in done:
            continue
        n = _copy_range(client, t, lo, hi, mutation_timeout_s=mutation_timeout_s)
        _mark(client, t, "done", [(bucket, lo, hi, n)])
        copied += n
        log.info("adopt copy range %d/%d [%r, %r): %d rows", bucket + 1, len(planned), lo, hi, n)
    out = {"ranges": len(planned), "ranges_copied_now": len(planned) - len(done), "rows_copied_now": copied,
           "seconds": round(time.monotonic() - started, 2)}
    log.info("adopt copy: %s", out)
    return out


def differing_ranges(client, t: Tables) -> list[tuple[int, str, str]]:
    """Ranges whose rows differ between the table and its copy (rows x every column)."""
    copy_ = work_tables(t)["copy"]
    return [(b, lo, hi) for b, (lo, hi) in _ledger(client, t, "planned").items()
            if _checksum(client, t, t.unified, lo, hi) != _checksum(client, t, copy_, lo, hi)]


def catch_up(client, t: Tables, *, mutation_timeout_s: float,
             rounds: int = config.ADOPT_CATCH_UP_ROUNDS) -> dict[str, Any]:
    """Copy again the ranges written since their copy, until none differs (at most ``rounds``)."""
    if state(client, t) != TO_ADOPT:
        return {"skipped": "already partitioned"}
    started, recopied = time.monotonic(), []
    for _ in range(rounds):
        stale = differing_ranges(client, t)
        if not stale:
            break
        for bucket, lo, hi in stale:
            _copy_range(client, t, lo, hi, mutation_timeout_s=mutation_timeout_s)
            recopied.append(bucket)
    out = {"ranges_recopied": recopied, "seconds": round(time.monotonic() - started, 2)}
    log.info("adopt catch-up: %s", out)
    return out


# --- exchange and cleanup ---------------------------------------------------------------------
def adoption_metrics(client, t: Tables) -> dict[str, int]:
    """The gate's one-row aggregate over the table (source) and its copy (target)."""
    w = work_tables(t)
    if not exists(client, t.db, w["copy"]):
        raise PositionsError(f"{t.db}.{w['copy']} does not exist: run the copy task first")
    return {k: int(v) for k, v in one(client, _sql("check_adoption", t, source=t.unified,
                                                   target=w["copy"])).items()}


def exchange(client, t: Tables, *, gated: dict[str, Any]) -> dict[str, Any]:
    """Swap the copy in atomically (``EXCHANGE TABLES``) and keep the original as
    ``<table>__pre_partitioning``. Refuses when the table changed since the gate passed
    (``gated``: its metrics): re-run the DAG to catch up and gate again."""
    w = work_tables(t)
    st = state(client, t)
    swap_s = None
    if st == TO_ADOPT:
        now = adoption_metrics(client, t)
        if (now["source_rows"], now["rows_differ"]) != (gated["source_rows"], 0):
            raise PositionsError(f"{t.db}.{t.unified} changed after the gate ({gated['source_rows']} -> "
                                 f"{now['source_rows']} rows): pause its writers and re-run the DAG")
        t0 = time.monotonic()
        command(client, f"EXCHANGE TABLES {t.q(t.unified)} AND {t.q(w['copy'])}")
        swap_s = round(time.monotonic() - t0, 3)
        st = EXCHANGED
    if st == EXCHANGED:
        command(client, f"RENAME TABLE {t.q(w['copy'])} TO {t.q(w['old'])}")
    command(client, f"DROP TABLE IF EXISTS {t.q(w['ledger'])}")
    out = {"exchange_seconds": swap_s, "partitioned": is_open_partitioned(client, t),
           "old": f"{t.db}.{w['old']}" if exists(client, t.db, w["old"]) else None}
    log.info("adopt exchange: %s", out)
    return out


def cleanup(client, t: Tables, *, drop_old: bool) -> dict[str, Any]:
    """Drop ``<table>__pre_partitioning`` when asked; report the table's partitions."""
    old = work_tables(t)["old"]
    dropped = False
    if drop_old and state(client, t) == ADOPTED and exists(client, t.db, old):
        command(client, f"DROP TABLE {t.q(old)}")
        dropped = True
    out = {"partitioned": is_open_partitioned(client, t), "rows_per_partition": partitions(client, t),
           "old_dropped": dropped, "old_kept": exists(client, t.db, old)}
    log.info("adopt cleanup: %s", out)
    return out
