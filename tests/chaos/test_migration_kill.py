"""The Breezeway migration (``airflow dags test child_tables_dedup_migration``) SIGKILLed, its
whole process group, at a seeded moment taken from what the database shows (a ledger step
recorded, a dedup DELETE batch or a copy-swap in ``pg_stat_activity``, a constraint build in
``pg_stat_progress_create_index``), while the old ETL keeps writing; then recovered as the
runbook says and checked from the data.

What the operator sees after the kill: the killed ``dags test`` run stays "running" in the
metadata database (no scheduler fails a ``dags test`` run), so a new trigger's claim is
refused while the killed run held the claim. Recovery, as the runbook's "claim refused" entry
says: mark the dead run failed (UI "Mark as failed", or PATCH the run's state), trigger again:
the new run takes the claim over and resumes where the ledger says. Then the rollback.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from dupguard.breezeway import ledger as bw_ledger
from dupguard.breezeway.config import CHILD_TABLES, MIGRATION_DAG_ID
from tests.breezeway.conftest import SCALE, add_edge_cases, expected_keepers
from tests.chaos.conftest import TRIALS
from tests.chaos.invariants import (
    EtlWriter, backends, bw_snapshot, check_migrated, check_rolled_back, kill_group, wait_backends_gone, wait_until,
)
from tools.demo_breezeway import create_schema, load

ROOT = Path(__file__).resolve().parents[2]
MIG, RB = MIGRATION_DAG_ID, "child_tables_dedup_rollback"
DEFAULTS = {"force": False, "stop_after": None, "batch_ids": 50_000, "max_hours": 4}
#: the moments a kill may land at, each a condition on what PostgreSQL shows
MOMENTS = ("claimed", "preflight recorded", "backup recorded", "dedup statement", "dedup recorded",
           "reclaim recorded", "constraint build")


def ledger_steps(conn) -> tuple[str | None, list[str]]:
    row = bw_ledger.ledger_row(conn)
    conn.commit()
    return (None, []) if row is None else (row["run_id"], list((row.get("steps") or {}).keys()))


def reached(conn, moment: str) -> bool:
    owner, steps = ledger_steps(conn)
    if moment == "claimed":
        return owner is not None
    if moment.endswith(" recorded"):
        return moment.split()[0] in steps
    if moment == "dedup statement":   # a keepers aggregate, a DELETE batch or a copy-swap statement
        hit = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dupguard-dedup' "
                           "AND state = 'active'").fetchone()[0]
    else:   # a CREATE UNIQUE INDEX CONCURRENTLY of the constraints step
        hit = conn.execute("SELECT count(*) FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                           "WHERE c.relnamespace = 'breezeway'::regnamespace").fetchone()[0]
    conn.commit()
    # a transient statement that was never caught: the ledger has moved past its step
    later = {"dedup statement": "dedup", "constraint build": "constraints"}[moment]
    return bool(hit) or later in steps


def fresh_breezeway(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS breezeway, dupguard CASCADE")
    with psycopg.connect(dsn) as conn:
        create_schema(conn)
        load(conn, SCALE)
        add_edge_cases(conn)
        conn.execute("ANALYZE")
        conn.commit()


def mark_run_failed(dag_id: str, run_id: str) -> None:
    """What the UI's "Mark as failed" on the run (PATCH .../dagRuns/<run> state=failed) does."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as s:
        dag = SerializedDagModel.get_dag(dag_id, session=s)
        set_dag_run_state_to_failed(dag=dag, run_id=run_id, commit=True, session=s)


def dags_test(dag_id: str, logical_date: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_migration_resumes_and_loses_nothing(trial, pg_cluster, run_dag, rng, figures, tmp_path):
    dsn = pg_cluster.dsn("breezeway")
    fresh_breezeway(dsn)
    watch = psycopg.connect(dsn)
    before, keep = bw_snapshot(watch), expected_keepers(watch)
    existing = sorted({(r[1], r[2]) for r in before["task_requirements"].values()   # keys with a dated row: a
                       if r[2] is not None and r[6] is not None})       # writer copy (now) is never older
    moment, delay = rng.choice(MOMENTS), round(rng.uniform(0, 0.4), 3)
    writer = EtlWriter(dsn, existing, seed=rng.randrange(10**6))
    writer.start()
    date = f"2026-03-{trial % 28 + 1:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00+00:00"
    proc = dags_test(MIG, date, tmp_path / "killed.log")
    t0 = time.monotonic()
    try:
        wait_until(f"moment {moment!r}", lambda: reached(watch, moment) or proc.poll() is not None, timeout=240)
        assert proc.poll() is None, f"the migration ended before {moment!r}:\n{(tmp_path / 'killed.log').read_text()[-2000:]}"
        time.sleep(delay)   # the seeded offset past the moment (no synchronisation rests on it)
        at_kill = backends(watch, "dupguard%")
        kill_group(proc)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    killed_after = round(time.monotonic() - t0, 2)
    watch.commit()
    owner, steps_at_kill = ledger_steps(watch)
    backend_s = wait_backends_gone(watch, [b["pid"] for b in at_kill])
    recovery = []
    try:
        again = run_dag(MIG, conf=DEFAULTS)          # the runbook: trigger again
        if owner is not None:
            # the killed run held the claim and is still "running" in the metadata database: refused
            assert again.state == "failed" and again.task_states["claim"] == "failed", again.task_states
            assert ledger_steps(watch) == (owner, steps_at_kill)   # nothing touched
            recovery.append("trigger: claim refused (killed run still running)")
            mark_run_failed(MIG, owner)                            # the runbook's manual step
            again = run_dag(MIG, conf=DEFAULTS)
            recovery.append("mark killed run failed")
        assert again.state == "success", again.task_states
        action = again.returns["claim"]["action"]
        assert action == ("resume" if owner else "run"), again.returns["claim"]
        recovery.append(f"trigger: {action}")
    finally:
        writer.halt()
    assert writer.errors == [], writer.errors[:3]
    removed = check_migrated(watch, before, keep, writer)
    history = [h["event"] for h in (bw_ledger.ledger_row(watch) or {}).get("history", [])]
    watch.commit()
    rb = run_dag(RB)
    assert rb.state == "success", rb.task_states
    check_rolled_back(watch, before, writer)
    watch.close()
    figures.append({"test": "killed_migration", "trial": trial, "moment": moment, "delay_s": delay,
                    "killed_after_s": killed_after, "ledger_steps_at_kill": steps_at_kill,
                    "statements_at_kill": [b["query"] for b in at_kill if b["state"] == "active"],
                    "backends_ended_after_s": backend_s, "recovery": recovery, "ledger_history": history,
                    "rows_removed": sum(removed.values()), "writer_rows": len(writer.rows[EtlWriter.TABLE]),
                    "invariants": "keys kept, no duplicates, constraints valid, no INVALID index, backup exact, "
                                  "rollback exact, writer rows present"})
