"""ClickHouse mutations of the unified table: issue one and wait for exactly it, kill stuck
ones by id. A mutation that fails or times out raises :class:`MutationFailed`, which Airflow
retries (the statements around it are idempotent)."""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from dupguard.positions.tables import command, rows, sql

log = logging.getLogger(__name__)


class MutationFailed(RuntimeError):
    """A mutation this job issued failed, was killed, or did not finish in time (retried:
    the cause is usually transient, and every step around it is idempotent)."""


def fetch_mutations(client, db: str, table: str) -> list[dict[str, Any]]:
    """Rows of system.mutations for ``db.table`` (tests replace this to simulate a stuck one)."""
    return rows(client, sql("list_mutations"), {"db": db, "table": table})


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


def _poll(check: Callable[[], bool], *, timeout_s: float, poll_s: float, on_timeout: Callable[[], str]) -> None:
    """Call ``check`` until it returns True; :class:`MutationFailed` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise MutationFailed(on_timeout())
        time.sleep(poll_s)


def run_mutation(client, db: str, table: str, statement: str, values: dict[str, Any] | None = None, *,
                 timeout_s: float, poll_s: float = 0.5, extra_settings: dict[str, Any] | None = None) -> str:
    """Issue ``statement`` (a rendered mutation with a ``{run_token:String}`` placeholder) tagged
    with a unique run token and wait for exactly that mutation; return its id.

    Other pending mutations of the table are not waited on. Raises :class:`MutationFailed`
    on a ``latest_fail_reason``, a kill, or ``timeout_s``.
    """
    token = f"dupguard-{uuid.uuid4().hex}"
    before = {m["mutation_id"] for m in fetch_mutations(client, db, table)}
    command(client, statement, {**(values or {}), "run_token": token}, mutations_sync=0, **(extra_settings or {}))
    seen: dict[str, Any] = {}

    def done() -> bool:
        mine = [m for m in fetch_mutations(client, db, table)
                if m["mutation_id"] not in before and token in (m.get("command") or "")]
        if not mine:
            return False
        m = mine[0]
        seen["id"] = m["mutation_id"]
        if m.get("latest_fail_reason"):
            raise MutationFailed(f"mutation {seen['id']} on {db}.{table} failed: {m['latest_fail_reason']}")
        if int(m.get("is_killed", 0) or 0):
            raise MutationFailed(f"mutation {seen['id']} on {db}.{table} was killed")
        return bool(int(m.get("is_done", 0)))

    _poll(done, timeout_s=timeout_s, poll_s=poll_s, on_timeout=lambda: (
        f"mutation {seen.get('id', '(not visible in system.mutations)')} on {db}.{table} not done after "
        f"{timeout_s:.0f}s; nothing was inserted. Check system.mutations, then re-run the task"))
    log.info("mutation %s on %s.%s done", seen["id"], db, table)
    return seen["id"]


def wait_for_pending(client, db: str, table: str, marker: str, *, timeout_s: float, poll_s: float = 0.5) -> None:
    """Wait until no pending mutation of ``table`` mentions ``marker`` (e.g. a work table a
    mutation still reads)."""
    waiting: list[str] = []

    def clear() -> bool:
        waiting[:] = [m["mutation_id"] for m in fetch_mutations(client, db, table)
                      if not int(m.get("is_done", 0)) and marker in (m.get("command") or "")]
        return not waiting

    _poll(clear, timeout_s=timeout_s, poll_s=poll_s,
          on_timeout=lambda: f"mutation(s) {waiting} on {db}.{table} reading {marker} still pending")
