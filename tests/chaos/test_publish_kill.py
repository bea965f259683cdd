"""The positions publish killed (SIGKILL of its whole process group) at seeded random moments,
on both table shapes; recovered as the runbook says (Airflow's retry of the same run, or the
next run's preflight then a full run); checked from the data: open lots equal an undisturbed
publish of the same staging, resolved rows untouched, no duplicate key, the saved generation
of the previous open part intact, a rollback exact, the chDB directory usable after the kill.

The kill moment is drawn in [0, 1.3 x an undisturbed publish's duration] after the worker has
opened chDB; what the database showed at that moment (the publish ledger, the open rows) is
recorded, so the figures say which window each trial hit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dupguard.positions import build, publish, tables
from tests.chaos.conftest import TRIALS
from tests.positions import scenario as sc
from tests.positions.conftest import Db, ch
from tests.positions.test_publish_crash import first_publish_then_new_trades, open_rows
from tools.demo_polymarket import create_sources

ROOT = Path(__file__).resolve().parents[2]


def prepare(name: str, shape: str):
    """A published open part (``first``), new trades, and a built staging (``staged``)."""
    db = Db(name)
    with ch() as client:
        client.command(f"DROP DATABASE IF EXISTS {tables.ident(name)}")
        client.command(f"CREATE DATABASE {tables.ident(name)}")
        create_sources(client, db.tables)
    return (db, *first_publish_then_new_trades(db, shape))


def run_worker(db: Db, token: str, kill_after: float | None) -> tuple[str, float]:
    """Run a publish in a subprocess; SIGKILL its process group ``kill_after`` s after it opened chDB."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    worker = subprocess.Popen([sys.executable, "-m", "tests.chaos.publish_worker", db.name, token], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)

    def line(prefix: str) -> str:   # the worker's own lines (its log lines go to stdout too)
        for text in worker.stdout:
            if text.startswith(prefix):
                return text.strip()
        raise AssertionError(f"worker exited without {prefix!r} (rc {worker.wait(30)})")

    try:
        line("ready")
        t0 = time.monotonic()
        if kill_after is None:
            out = line("done")
            worker.wait(120)
            return "completed", float(out.split()[1])
        time.sleep(kill_after)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
        return "killed", time.monotonic() - t0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)


def ledger_state(entries, token: str) -> str:
    steps = [r["step"] for r in entries if r["token"] == token]
    return "done" if "done" in steps else "started (swap in flight)" if "start" in steps else "not started"


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_publish_converges(trial, rng, figures):
    shape = rng.choice(["partitioned", "unpartitioned"])
    recovery = rng.choice(["retry_same_run", "next_run"])
    db, first, staged = prepare(f"chaos_publish_{trial}", shape)
    try:
        # an undisturbed publish's duration on these inputs, on a copy of the database's state
        ref, _, ref_staged = prepare(f"chaos_publish_{trial}_ref", shape)
        _, duration = run_worker(ref, "run2", None)
        with ch() as client:
            assert open_rows(ref, client) == ref_staged == staged        # the undisturbed result
            client.command(f"DROP DATABASE IF EXISTS {tables.ident(ref.name)}")
        kill_after = round(rng.uniform(0, 1.3 * duration), 3)
        outcome, _ = run_worker(db, "run2", kill_after)
        with ch() as client:   # chDB usable after the kill (the dead process's lock is gone)
            entries = publish.ledger(client, db.tables)
            moment = ledger_state(entries, "run2")
            open_at_kill = len(open_rows(db, client))
            if recovery == "retry_same_run":
                out = publish.publish(client, db.tables, mutation_timeout_s=30, token="run2", min_unresolved_rows=1,
                                      max_drop_ratio=0.5)
                did = (out["resumed"] or {}).get("outcome") or ("already published" if out.get("already_published")
                                                               else "published afresh")
            else:
                resumed = publish.resume(client, db.tables, mutation_timeout_s=30)
                did = (resumed or {}).get("outcome", "nothing to resume")
                assert len(open_rows(db, client)) > 0                   # never 0 between runs
                build.build(client, db.tables)
                publish.publish(client, db.tables, mutation_timeout_s=30, token="run3", min_unresolved_rows=1,
                                max_drop_ratio=0.5)
            rows = db.rows(client)
            assert open_rows(db, client) == staged                      # = an undisturbed run's
            assert [r["tx_hash"] for r in rows if r["resolved_at"] is not None] == ["0xo1"]
            keys = [sc.key(r) for r in rows]
            assert len(keys) == len(set(keys))                          # no duplicate key
            gens = publish.generations(client, db.tables)
            saved = {g["name"]: open_rows(db, client, g["name"]) for g in gens}
            assert first in saved.values()                              # the backup of `first` intact
            good = publish.last_good_generation(client, db.tables)
            expected = saved[good["name"]]
            publish.rollback_open(client, db.tables, mutation_timeout_s=30, token="rb")
            assert open_rows(db, client) == expected                    # rollback exact, by content
    finally:
        with ch() as client:
            client.command(f"DROP DATABASE IF EXISTS {tables.ident(db.name)}")
    figures.append({"test": "killed_publish", "trial": trial, "shape": shape, "undisturbed_publish_s": round(duration, 3),
                    "kill_after_s": kill_after, "worker": outcome, "ledger_at_kill": moment,
                    "open_rows_at_kill": open_at_kill, "open_rows_before": len(first), "recovery": recovery,
                    "recovery_did": did, "generations": len(gens)})
