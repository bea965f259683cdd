"""The migration's ledger, ``dupguard.migration_ledger``: one row per one-shot migration saying
which run holds it, its status (``running`` -> ``complete``; ``rolling_back`` -> ``rolled_back``),
the figures of every step that completed and the history of claims and takeovers.

Every step first checks that its run holds the claim (:func:`assert_owner`), so a run that lost
the claim never touches a table, and records its figures when done (:func:`record_step`), so a
run that died is resumed by the next trigger where it stopped.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from dupguard.breezeway import render
from dupguard.breezeway.config import (
    CHILD_TABLES, LEDGER_SCHEMA, MIGRATION_DAG_ID, MIGRATION_ID, MIGRATION_STEPS, ROLLBACK_DAG_ID,
    STALE_CLAIM_MINUTES,
)
from dupguard.common import pg, settings
from dupguard.common.connections import pg_connect
from dupguard.common.errors import ConfigError

log = logging.getLogger(__name__)

#: ``run_state(dag_id, run_id)`` -> the Airflow state of a run ("running", "failed", ...) or None
#: when unknown; supplied by the task adapter, so the library never asks Airflow itself.
RunState = Callable[[str, str], "str | None"]


class MigrationRefused(ConfigError):
    """Another live run holds the claim, or the ledger is in a state this run may not touch."""


def _sql(name: str) -> str:
    return settings.read_sql(f"breezeway/{name}.sql")


def _params(run_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"migration_id": MIGRATION_ID, "run_id": run_id, **extra}


def _event(kind: str, run_id: str, **extra: Any) -> str:
    return json.dumps([{"event": kind, "run_id": run_id, "at": datetime.now(timezone.utc).isoformat(), **extra}])


def ensure(conn) -> None:
    conn.execute(_sql("create_ledger"))
    conn.commit()


def ledger_row(conn, *, lock: bool = False) -> dict[str, Any] | None:
    """The migration's ledger row (None when there is none, or no ledger yet)."""
    from psycopg import sql
    from psycopg.rows import dict_row

    if pg.table_oid(conn, LEDGER_SCHEMA, "migration_ledger") is None:
        return None
    query = sql.SQL(_sql("select_ledger")).format(lock=sql.SQL("FOR UPDATE" if lock else ""))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, _params()).fetchone()


def heartbeat(conn, run_id: str) -> None:
    conn.execute(_sql("update_heartbeat"), _params(run_id))
    conn.commit()


def assert_owner(conn, run_id: str, statuses: Sequence[str] = ("running",)) -> dict[str, Any]:
    """The ledger row, after checking that ``run_id`` holds the claim in one of ``statuses``;
    refreshes the heartbeat. Raises :class:`MigrationRefused` otherwise."""
    row = ledger_row(conn)
    if row is None or row["run_id"] != run_id or row["status"] not in statuses:
        held = "no claim" if row is None else f"status {row['status']} held by run {row['run_id']}"
        raise MigrationRefused(f"run {run_id} does not hold the migration claim ({held}); not touching any table")
    heartbeat(conn, run_id)
    return row


def record_step(conn, run_id: str, step: str, figures: dict[str, Any], *, baseline: dict | None = None) -> None:
    payload = {"at": datetime.now(timezone.utc).isoformat(), **figures}
    conn.execute(_sql("record_step"), _params(run_id, step=step, figures=json.dumps(payload, default=str)))
    if baseline is not None:
        conn.execute(_sql("record_baseline"), _params(baseline=json.dumps(baseline)))
    conn.commit()


def baseline(row: dict[str, Any]) -> dict[str, Any]:
    """The preflight figures of the first run (rows, max id, size per table)."""
    base = (row.get("steps") or {}).get("baseline")
    if not base:
        raise MigrationRefused("the ledger has no preflight baseline: the preflight step has not run")
    return base


def _owner_alive(row: dict[str, Any], run_state: RunState | None) -> bool:
    state = run_state(row["dag_id"], row["run_id"]) if run_state else None
    if state is not None:
        return state in ("running", "queued")
    return datetime.now(timezone.utc) - row["heartbeat_at"] < timedelta(minutes=STALE_CLAIM_MINUTES)


def _take(conn, run_id: str, dag_id: str, status: str, event: str, *, reset_steps: bool = False, **extra) -> None:
    conn.execute(_sql("update_claim"), _params(run_id, status=status, dag_id=dag_id, reset_steps=reset_steps,
                                               event=_event(event, run_id, **extra)))
    conn.commit()


def _claimed(action: str, run_id: str, msg: str) -> dict[str, Any]:
    log.info(msg)
    return {"action": action, "run_id": run_id, "message": msg}


def claim(conn_id: str, run_id: str, *, force: bool = False, dag_id: str = MIGRATION_DAG_ID,
          run_state: RunState | None = None) -> dict[str, Any]:
    """Claim the one-shot migration: ``INSERT ... ON CONFLICT DO NOTHING`` on its id.

    Returns ``action``: ``run`` (first claim), ``resume`` (this run's retry, or a takeover
    from a run that died), ``force`` (re-check and repair after completion), ``noop``
    (already complete). Raises :class:`MigrationRefused` while another run is alive.
    """
    with pg_connect(conn_id) as conn:
        ensure(conn)
        inserted = conn.execute(_sql("insert_claim"), _params(run_id, dag_id=dag_id,
                                                              event=_event("claimed", run_id))).fetchone()
        conn.commit()
        if inserted:
            return _claimed("run", run_id, f"claimed migration {MIGRATION_ID}")
        row = ledger_row(conn, lock=True)
        status, owner = row["status"], row["run_id"]
        if status == "running" and owner == run_id:
            conn.commit()
            return _claimed("resume", run_id, "this run already holds the claim (task retry): resuming")
        if status == "complete":
            if not force:
                conn.commit()
                msg = (f"migration {MIGRATION_ID} already completed at {row['finished_at']} by run {owner}: "
                       "nothing to do (trigger with force=true to re-check and repair)")
                log.info(msg)
                return {"action": "noop", "run_id": run_id, "message": msg}
            _take(conn, run_id, dag_id, "running", "force", previous=owner)
            return _claimed("force", run_id, "force: re-checking and repairing a completed migration")
        if status == "rolled_back":
            _take(conn, run_id, dag_id, "running", "claimed_after_rollback", reset_steps=True, previous=owner)
            return _claimed("run", run_id, "previous migration was rolled back: migrating again")
        if _owner_alive(row, run_state):
            conn.commit()
            raise MigrationRefused(
                f"migration {MIGRATION_ID} is being run by {row['dag_id']} run {owner} (status {status}, "
                f"last heartbeat {row['heartbeat_at']}): refusing a second concurrent run")
        if status == "rolling_back":
            conn.commit()
            raise MigrationRefused(f"rollback run {owner} did not finish: trigger {ROLLBACK_DAG_ID} again to finish "
                                   "it before migrating again")
        done = [s for s in MIGRATION_STEPS if s in (row.get("steps") or {})]
        _take(conn, run_id, dag_id, "running", "takeover", previous=owner, steps_done=done)
        return _claimed("resume", run_id, f"run {owner} died after steps {done or 'none'}: this run resumes it")


def claim_rollback(conn_id: str, run_id: str, *, dag_id: str = ROLLBACK_DAG_ID,
                   run_state: RunState | None = None) -> dict[str, Any]:
    """Take the ledger for a rollback; a no-op when there is nothing to roll back."""
    with pg_connect(conn_id) as conn:
        ensure(conn)
        row = ledger_row(conn, lock=True)
        if row is None or row["status"] == "rolled_back":
            conn.commit()
            msg = "no migration to roll back" if row is None else f"already rolled back by run {row['run_id']}"
            log.info(msg)
            return {"action": "noop", "message": msg}
        if row["run_id"] == run_id:
            conn.commit()
            return _claimed("resume", run_id, "this run already holds the rollback claim: resuming")
        if row["status"] in ("running", "rolling_back") and _owner_alive(row, run_state):
            conn.commit()
            raise MigrationRefused(f"{row['dag_id']} run {row['run_id']} is active (status {row['status']}): "
                                   "refusing to roll back underneath it")
        _take(conn, run_id, dag_id, "rolling_back", "rollback", previous=row["run_id"], previous_status=row["status"])
        return _claimed("run", run_id, f"rolling back migration {MIGRATION_ID} (was {row['status']})")


def complete(conn, run_id: str, status: str, figures: dict[str, Any] | None = None) -> None:
    """End the migration (``complete``, with its figures) or its rollback (``rolled_back``)."""
    conn.execute(_sql("complete_ledger"), _params(
        run_id, status=status, figures=json.dumps(figures) if figures is not None else None,
        event=_event(status, run_id, **(figures or {}))))
    conn.commit()


def finish(conn_id: str, run_id: str) -> dict[str, Any]:
    """Mark the ledger complete with the figures of every step."""
    with pg_connect(conn_id) as conn:
        row = assert_owner(conn, run_id)
        steps = row["steps"] or {}
        figures = {
            "removed": sum(v.get("removed", 0) for v in (steps.get("dedup", {}).get("tables") or {}).values()),
            "size_before": sum(v["size_bytes"] for v in baseline(row).values()),
            "size_after": sum(render.size(conn, render.oid_of(conn, t)) for t in CHILD_TABLES),
        }
        complete(conn, run_id, "complete", figures)
    log.info("migration %s complete: %s", MIGRATION_ID, figures)
    return {"status": "complete", **figures}
