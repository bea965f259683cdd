"""Publishing the open part of the unified table, and rolling it back, crash-safe.

A publish, named by its run token:

1. completes any swap a killed predecessor left half done (:func:`resume`);
2. saves the open part it replaces as a generation ``<table>__open_gen_<token>``, before
   anything is deleted (an empty open part is not saved: it is no backup);
3. records ``start`` in the publish ledger ``<table>__publish_log`` (source = the gated
   staging table, by uuid and open-row count);
4. inserts the lots of markets resolved since (skipping those already present as resolved);
5. swaps the open part in: ``REPLACE PARTITION`` (atomic) on a table partitioned by
   open/resolved, else a ``DELETE`` mutation waited on by its own id, then an insert;
6. records ``done`` and keeps the last ``KEEP_GENERATIONS`` generations (and always the
   newest *good* one: at least ``min_unresolved_rows`` open rows and at least
   ``max_drop_ratio`` x the previous good one - the staging gate's thresholds).

A kill between the ``DELETE`` and the insert (unpartitioned shape only) leaves a ``start``
without ``done``: the next attempt (Airflow's retry, a cleared task, the next run's preflight,
or a rollback) inserts the recorded source's open part if it is still the gated one, else
restores the generation it saved. A rollback swaps the newest good generation back the same
way. Every step is safe to repeat.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from dupguard.positions import config
from dupguard.positions.mutations import run_mutation, wait_for_pending
from dupguard.positions.tables import (PositionsError, Tables, check_columns, command, count_rows, create_like_unified,
                                       exists, ident, is_open_partitioned, one, rows, sql)

log = logging.getLogger(__name__)

_OPEN_COLUMNS = ", ".join(ident(c) for c in config.UNIFIED_COLUMNS if c != "resolved_at")
_LOG_DEFAULTS = {"generation": "", "generation_open": 0, "good": 0, "source": "", "source_uuid": "",
                 "source_open": 0, "outcome": ""}


def run_token(run_id: str | None = None) -> str:
    """A generation-safe token for a run: the run id's letters and digits plus a short hash
    (the same run id always gives the same token); a fresh one when there is no run id."""
    if not run_id:
        return f"adhoc_{datetime.now(timezone.utc):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    readable = re.sub(r"[^A-Za-z0-9]+", "_", run_id).strip("_")[:60]
    return f"{readable}_{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


def _log_sql(name: str, t: Tables, **fragments: str) -> str:
    return sql(name, t, publish_log=t.q(t.unified + config.PUBLISH_LOG_SUFFIX), **fragments)


def _record(client, t: Tables, token: str, action: str, step: str, **values: Any) -> None:
    command(client, _log_sql("log_publish_step", t),
            {**_LOG_DEFAULTS, **values, "token": token, "action": action, "step": step})


def ledger(client, t: Tables) -> list[dict[str, Any]]:
    """The publish ledger, oldest first ([] before the first publish)."""
    if not exists(client, t.db, t.unified + config.PUBLISH_LOG_SUFFIX):
        return []
    return rows(client, _log_sql("list_publish_log", t))


def _uuid(client, t: Tables, table: str) -> str:
    return str(one(client, sql("table_uuid"), {"db": t.db, "table": table}).get("uuid", ""))


def generations(client, t: Tables) -> list[dict[str, Any]]:
    """Saved generations that still exist, oldest first: {name, token, open_rows, good}."""
    present = {r["name"] for r in rows(client, sql("list_generations"),
                                       {"db": t.db, "prefix": t.unified + config.GENERATION_INFIX})}
    return [{"name": r["generation"], "token": r["token"], "open_rows": int(r["generation_open"]),
             "good": bool(r["good"])}
            for r in ledger(client, t) if r["step"] == "start" and r["generation"] in present]


def last_good_generation(client, t: Tables) -> dict[str, Any] | None:
    good = [g for g in generations(client, t) if g["good"] and g["open_rows"]]
    return good[-1] if good else None


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


def _published(client, t: Tables, source: str, source_open: int) -> bool:
    """True when the unified table's open part is exactly ``source``'s (``source_open`` rows)."""
    if count_rows(client, t, t.unified)["unresolved"] != source_open:
        return False
    matching = one(client, sql("count_open_matching", t, source=t.q(source), open_columns=_OPEN_COLUMNS))
    return int(matching["matching"]) == source_open


def resume(client, t: Tables, *, mutation_timeout_s: float) -> dict[str, Any] | None:
    """Complete the swap a killed publish or rollback left half done; None when there is none.

    The last ``start`` without ``done``: if its source is still the table it gated (same uuid,
    same open rows), its open part is swapped in (unless already fully there); otherwise, if
    the open part is empty, the generation that run saved is put back. Older unfinished ones
    are superseded (only the last swap decides the open part)."""
    entries = ledger(client, t)
    finished = {r["token"] for r in entries if r["step"] == "done"}
    pending = [r for r in entries if r["step"] == "start" and r["token"] not in finished]
    if not pending:
        return None
    for old in pending[:-1]:
        _record(client, t, old["token"], old["action"], "done", outcome="superseded")
    last = pending[-1]
    source, source_open = last["source"], int(last["source_open"])
    wait_for_pending(client, t.db, t.unified, "dupguard-", timeout_s=mutation_timeout_s)  # the killed DELETE
    out: dict[str, Any] = {"token": last["token"], "action": last["action"], "source": source, "mode": None}
    if source and exists(client, t.db, source) and _uuid(client, t, source) == last["source_uuid"] \
            and count_rows(client, t, source)["unresolved"] == source_open:
        if last["action"] == "publish":
            command(client, sql("publish_resolved", t))   # idempotent: skips lots already resolved
        if _published(client, t, source, source_open):
            out["outcome"] = "already_complete"
        else:
            out.update(_swap_open(client, t, source, mutation_timeout_s=mutation_timeout_s), outcome="completed")
    elif not count_rows(client, t, t.unified)["unresolved"] and last["generation"] \
            and exists(client, t.db, last["generation"]):
        out.update(_swap_open(client, t, last["generation"], mutation_timeout_s=mutation_timeout_s),
                   outcome="restored_generation")
    else:
        out["outcome"] = "source_gone_left_as_is"
    _record(client, t, last["token"], last["action"], "done", outcome=out["outcome"])
    out["after"] = count_rows(client, t, t.unified)
    log.warning("resumed the interrupted %s %s: %s", last["action"], last["token"], out)
    return out


def _save_generation(client, t: Tables, token: str, *, min_unresolved_rows: int,
                     max_drop_ratio: float) -> dict[str, Any]:
    """Copy the published open part into ``<table>__open_gen_<token>``; {} when it is empty."""
    current = count_rows(client, t, t.unified)["unresolved"]
    if not current:
        return {}
    name = t.unified + config.GENERATION_INFIX + token
    create_like_unified(client, t, name)
    command(client, sql("copy_open", t, target=t.q(name), source=t.q(t.unified)))
    saved = count_rows(client, t, name)["unresolved"]
    previous = last_good_generation(client, t)
    good = saved >= max(min_unresolved_rows, 1) and (not previous or saved >= max_drop_ratio * previous["open_rows"])
    return {"generation": name, "generation_open": saved, "good": int(good)}


def _prune(client, t: Tables, keep: int) -> list[str]:
    """Drop generations beyond the newest ``keep`` (never the newest good one) and orphans
    (saved by an attempt killed before its ledger row)."""
    gens = generations(client, t)
    newest_good = last_good_generation(client, t)
    kept = {g["name"] for g in gens[-keep:]} | ({newest_good["name"]} if newest_good else set())
    present = [r["name"] for r in rows(client, sql("list_generations"),
                                       {"db": t.db, "prefix": t.unified + config.GENERATION_INFIX})]
    dropped = sorted(n for n in present if n not in kept)
    for name in dropped:
        command(client, f"DROP TABLE IF EXISTS {t.q(name)}")
    return dropped


def publish(client, t: Tables, *, mutation_timeout_s: float, token: str | None = None, min_unresolved_rows: int = 0,
            max_drop_ratio: float = 0.0, keep: int = config.KEEP_GENERATIONS) -> dict[str, Any]:
    """Replace the published open part with staging's; insert the newly resolved lots."""
    if not exists(client, t.db, t.staging):
        raise PositionsError(f"staging table {t.db}.{t.staging} does not exist: run build and quality_gate first")
    token = token or run_token()
    started = time.monotonic()
    command(client, _log_sql("create_publish_log", t))
    resumed = resume(client, t, mutation_timeout_s=mutation_timeout_s)
    base = {"token": token, "resumed": resumed}
    if any(r["token"] == token and r["step"] == "done" for r in ledger(client, t)):   # this run's swap is done
        log.info("publish %s already done: %s", token, resumed)
        return {**base, "mode": resumed["mode"] if resumed else None, "already_published": True,
                "after": count_rows(client, t, t.unified)}
    staged = count_rows(client, t, t.staging)
    saved = _save_generation(client, t, token, min_unresolved_rows=min_unresolved_rows, max_drop_ratio=max_drop_ratio)
    _record(client, t, token, "publish", "start", **saved, source=t.staging, source_uuid=_uuid(client, t, t.staging),
            source_open=staged["unresolved"])
    before = count_rows(client, t, t.unified)
    command(client, sql("publish_resolved", t))
    moved_inserted = count_rows(client, t, t.unified)["total"] - before["total"]
    swap = _swap_open(client, t, t.staging, mutation_timeout_s=mutation_timeout_s)
    _record(client, t, token, "publish", "done", outcome="published")
    out = {**base, "mode": swap["mode"], "backup": saved.get("generation"), "backup_open_rows":
           saved.get("generation_open", 0), "backup_good": bool(saved.get("good")),
           "newly_resolved_inserted": moved_inserted, "open_rows_published": staged["unresolved"],
           "mutation_id": swap["mutation_id"], "swap_seconds": swap["swap_seconds"],
           "generations_dropped": _prune(client, t, keep), "seconds": round(time.monotonic() - started, 3),
           "after": count_rows(client, t, t.unified)}
    log.info("publish: %s", out)
    return out


def rollback_open(client, t: Tables, *, mutation_timeout_s: float, token: str | None = None) -> dict[str, Any]:
    """Put back the newest good generation of the open part, except the lots published as
    resolved since (a lot is never both open and resolved).

    Completes an interrupted publish first (so the two never fight). Refuses when no good
    generation holds an open row. Safe to repeat: generations only change with a publish.
    """
    check_columns(client, t.db, t.unified, config.UNIFIED_COLUMNS)
    token = token or run_token()
    if exists(client, t.db, t.unified + config.PUBLISH_LOG_SUFFIX):
        resume(client, t, mutation_timeout_s=mutation_timeout_s)
    generation = last_good_generation(client, t)
    if not generation:
        raise PositionsError(f"no saved generation of {t.db}.{t.unified}'s open part holding open rows "
                             f"({t.unified}{config.GENERATION_INFIX}*): nothing was published yet, nothing to roll back")
    before = count_rows(client, t, t.unified)
    create_like_unified(client, t, t.rollback)
    command(client, sql("stage_rollback", t, backup=t.q(generation["name"])))
    restored = count_rows(client, t, t.rollback)["unresolved"]
    _record(client, t, token, "rollback", "start", source=t.rollback, source_uuid=_uuid(client, t, t.rollback),
            source_open=restored)
    swap = _swap_open(client, t, t.rollback, mutation_timeout_s=mutation_timeout_s)
    _record(client, t, token, "rollback", "done", outcome="rolled_back")
    command(client, f"DROP TABLE IF EXISTS {t.q(t.rollback)}")
    out = {"backup": f"{t.db}.{generation['name']}", "saved_open_rows": generation["open_rows"],
           "restored_open_rows": restored, "skipped_resolved_since": generation["open_rows"] - restored, **swap,
           "before": before, "after": count_rows(client, t, t.unified)}
    log.info("rollback: %s", out)
    return out
