"""Tasks killed under the real scheduler: one ``airflow standalone`` (LocalExecutor) with a short
``[scheduler] task_instance_heartbeat_timeout``; the three workflows are triggered at once and
one task of each loses its worker: the task runner's process group and its supervisor (the
LocalExecutor worker process) get SIGKILL, at a moment taken from what the database shows:

- ``child_tables_dedup_migration.dedup`` once ``pg_stat_activity`` shows its statement waiting
  on a row lock of ``task_photos`` (the fifth table; a session holds the lock and lets go
  right after the kill, so the dead client's statement ends);
- ``telemetry_unique_indexes.build_unique_index_blocks`` once ``pg_stat_progress_create_index``
  shows its ``CREATE UNIQUE INDEX CONCURRENTLY`` waiting for an open write transaction (let go
  right after the kill);
- ``unified_positions_refresh.publish`` a seeded time after the metadata database shows it
  running and its process holds the chDB directory (``/proc/locks``; chDB, embedded, cannot be
  read while the task holds it): within 1.3 x the publish time of an undisturbed run of
  the same inputs, taken in-process before the standalone boots; the publish log read right
  after the kill says where it landed.

Expected, with no manual step: the scheduler fails the lost try after the heartbeat timeout,
the retry resumes the work, every run ends green, and the data holds the invariants (every key
kept, no duplicate, constraints and unique indexes valid, no INVALID index, removed rows exactly
in the backup, published open lots equal to the undisturbed run's and never 0 after recovery).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import psycopg
import pytest
from psycopg import sql

from dupguard.common import settings
from tests.chaos.invariants import bw_snapshot, check_migrated, wait_until
from tests.chaos.test_migration_kill import fresh_breezeway
from tests.standalone import Standalone

HEARTBEAT_TIMEOUT_S = 15    # [scheduler] task_instance_heartbeat_timeout (default 300)
HEARTBEAT_EVERY_S = 3       # [workers] min_heartbeat_interval: several heartbeats within the timeout
STANDALONE_ENV = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(HEARTBEAT_EVERY_S),
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",          # only the runs the test triggers
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",  # parse once: 2 cores are shared
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
}
MIG, IDX, REFRESH = "child_tables_dedup_migration", "telemetry_unique_indexes", "unified_positions_refresh"
VICTIMS = {MIG: "dedup", IDX: "build_unique_index_blocks", REFRESH: "publish"}
LOCKED_TABLE = "task_photos"
TELEMETRY = {"blocks": "block_id", "streams": "stream_id", "processes": "process_id"}
FIGURES: dict = {}


def say(line: str) -> None:
    sys.__stdout__.write(f"[scheduler-kills] {line}\n")
    sys.__stdout__.flush()


# --- data ---------------------------------------------------------------------------------
def fresh_telemetry(dsn: str, rng) -> dict[str, set]:
    """The three telemetry tables with a history of retried copies; their ids."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
        c.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
        ids = {}
        for table, col in TELEMETRY.items():
            t, k = sql.Identifier(table), sql.Identifier(col)
            c.execute(sql.SQL("INSERT INTO {t} ({k}, insert_time) SELECT id, now() - c * interval '1 minute' "
                              "FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(1, %s) g) s, "
                              "generate_series(0, CASE WHEN g %% 5 = 0 THEN 2 ELSE 0 END) c").format(t=t, k=k),
                      (rng.randint(20_000, 30_000),))
            ids[table] = {r[0] for r in c.execute(sql.SQL("SELECT DISTINCT {} FROM {}").format(k, t))}
        c.execute("ANALYZE")
    return ids


def open_positions(client) -> list[tuple]:
    """Every open lot of the unified table, all columns, sorted."""
    from dupguard.positions import config

    return sorted(tuple(r) for r in client.query(
        "SELECT * FROM {t:Identifier} WHERE resolved_at IS NULL", parameters={"t": config.UNIFIED_TABLE}).result_rows)


def positions_reference(run_dag) -> dict:
    """The demo's positions data, refreshed once undisturbed (in-process): what the killed
    run must publish, and how long its publish took."""
    from dupguard.common.connections import clickhouse_client
    from tools import demo_polymarket

    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        for (table,) in ch.query("SHOW TABLES").result_rows:
            ch.command("DROP TABLE IF EXISTS {t:Identifier}", parameters={"t": table})
    demo_polymarket.setup()
    t0 = time.monotonic()
    ref = run_dag(REFRESH)
    assert ref.state == "success", ref.task_states
    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        rows = open_positions(ch)
    assert rows
    return {"open": rows, "publish_s": float(ref.returns["publish"].get("seconds") or 1.0),
            "run_s": round(time.monotonic() - t0, 1)}


def positions_tables():
    from dupguard.positions.tasks import run_params, tables_for

    return tables_for(settings.CLICKHOUSE_CONN_ID, run_params(None)["database"])


def chdb_held(chdb_dir) -> bool:
    """Whether a process holds the chDB directory's lock (``/proc/locks``: read, never taken)."""
    inode = os.stat(f"{chdb_dir}.lock").st_ino
    with open("/proc/locks") as f:
        return any(line.split()[1] == "FLOCK" and line.split()[5].endswith(f":{inode}") for line in f)


# --- the REST API and the processes of a task ----------------------------------------------
def task_instance(meta, dag_id: str, run_id: str, task_id: str) -> dict:
    """State, pid and try of a task instance, from the standalone's metadata database (polled
    often: cheaper than the REST API on a loaded machine)."""
    row = meta.execute("SELECT state, pid, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s "
                       "AND task_id = %s AND map_index = -1", (dag_id, run_id, task_id)).fetchone()
    return dict(zip(("state", "pid", "try_number"), row)) if row else {"state": None, "pid": None, "try_number": 0}


def tries(api, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    rows = api._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")["task_instances"]
    return sorted(rows, key=lambda t: t["try_number"])


def xcom(api, dag_id: str, run_id: str, task_id: str):
    """The task's return value (its last try's: the retry's)."""
    try:
        return api._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                            params={"deserialize": True, "stringify": False})["value"]
    except RuntimeError as exc:   # no return value: say so in the figures
        return f"unavailable: {exc}"


def kill_task(meta, dag_id: str, run_id: str, task_id: str) -> dict:
    """SIGKILL the running try of ``task_id``: the task runner's process group and its
    supervisor (the LocalExecutor worker that forked it), as the loss of that worker would."""
    import psutil

    def running():
        t = task_instance(meta, dag_id, run_id, task_id)
        assert t["state"] in (None, "queued", "scheduled", "running"), f"{dag_id}.{task_id} already {t['state']}"
        return t if t["state"] == "running" and t.get("pid") else None

    ti = wait_until(f"{dag_id}.{task_id} running with a pid", running, timeout=60, every=0.1)
    runner = psutil.Process(ti["pid"])
    supervisor = runner.parent()
    assert supervisor is not None and "LocalExecutor" in " ".join(supervisor.cmdline()), supervisor
    group = os.getpgid(runner.pid)
    assert group != os.getpgid(supervisor.pid) and group != os.getpgrp()
    os.killpg(group, signal.SIGKILL)
    supervisor.send_signal(signal.SIGKILL)
    return {"killed_at": datetime.now(timezone.utc), "try_number": ti["try_number"], "runner_pid": runner.pid,
            "supervisor_pid": supervisor.pid}


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- the scenario -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenario(pg_cluster, chdb_dir, run_dag, tmp_path_factory):
    import random

    from tests.chaos.conftest import SEED

    rng = random.Random(f"{SEED}:scheduler_kills")
    t_start = time.monotonic()
    standalone = Standalone(pg_cluster, tmp_path_factory.mktemp("airflow_chaos"), "airflow_chaos", STANDALONE_ENV)
    boot_error: list[BaseException] = []

    def boot() -> None:
        try:
            standalone.boot()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            boot_error.append(exc)

    booting = threading.Thread(target=boot, name="standalone-boot", daemon=True)
    booting.start()   # the metadata database migrates while the data loads
    try:
        yield from _run_scenario(standalone, booting, boot_error, pg_cluster, chdb_dir, run_dag, rng, t_start)
    finally:
        booting.join(300)
        standalone.stop()


def _run_scenario(standalone, booting, boot_error, pg_cluster, chdb_dir, run_dag, rng, t_start):
    from dupguard.common.connections import clickhouse_client
    from dupguard.positions import publish
    from tests.breezeway.conftest import expected_keepers
    from tests.chaos.test_publish_kill import ledger_state

    bw_dsn, tm_dsn = pg_cluster.dsn("breezeway"), pg_cluster.dsn("telemetry")
    fresh_breezeway(bw_dsn)
    with psycopg.connect(bw_dsn) as c:
        before, keep = bw_snapshot(c), expected_keepers(c)
    ids = fresh_telemetry(tm_dsn, rng)
    reference = positions_reference(run_dag)
    # as tests/chaos/test_publish_kill.py: within 1.3 x an undisturbed publish after chDB is open
    publish_delay = round(rng.uniform(0, 1.3 * reference["publish_s"]), 3)
    out: dict = {"before": before, "keep": keep, "ids": ids, "reference": reference, "kills": {}}
    prepared_s = round(time.monotonic() - t_start, 1)
    booting.join(300)
    if boot_error:
        raise RuntimeError("airflow standalone did not boot") from boot_error[0]
    api = standalone.wait_ready()
    booted_s = round(time.monotonic() - t_start, 1)
    api.wait_for_dags(list(VICTIMS), timeout=180)
    for dag_id in VICTIMS:
        api.set_paused(dag_id, False)
    bw_lock = psycopg.connect(bw_dsn)
    bw_lock.execute(sql.SQL("SELECT id FROM breezeway.{} FOR UPDATE").format(sql.Identifier(LOCKED_TABLE)))
    tm_write = psycopg.connect(tm_dsn)
    written = uuid.uuid4()
    tm_write.execute("INSERT INTO blocks (block_id, insert_time) VALUES (%s, now())", (written,))
    ids["blocks"].add(written)   # the write commits after the kill
    watch_bw = psycopg.connect(bw_dsn, autocommit=True)
    watch_tm = psycopg.connect(tm_dsn, autocommit=True)
    meta = psycopg.connect(pg_cluster.dsn(standalone.database), autocommit=True)
    runs = {dag_id: api.trigger(dag_id) for dag_id in VICTIMS}
    out["runs"] = runs
    pending = dict(VICTIMS)
    publish_seen: float | None = None
    deadline = time.monotonic() + 240
    try:
        while pending:
            assert time.monotonic() < deadline, f"kill moments not reached: {pending}"
            if MIG in pending and watch_bw.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (bw_lock.info.backend_pid,)).fetchone()[0]:
                out["kills"][MIG] = {**kill_task(meta, MIG, runs[MIG], "dedup"),
                                     "moment": f"dedup waiting on a row lock of {LOCKED_TABLE}"}
                bw_lock.rollback()
                pending.pop(MIG)
            phase = watch_tm.execute("SELECT p.phase FROM pg_stat_progress_create_index p "
                                     "WHERE p.relid = 'blocks'::regclass").fetchone()
            if IDX in pending and phase:
                out["kills"][IDX] = {**kill_task(meta, IDX, runs[IDX], VICTIMS[IDX]),
                                     "moment": f"CREATE UNIQUE INDEX CONCURRENTLY: {phase[0]}"}
                tm_write.commit()
                pending.pop(IDX)
            if REFRESH in pending:
                if publish_seen is None and chdb_held(chdb_dir) and task_instance(
                        meta, REFRESH, runs[REFRESH], "publish")["state"] == "running":   # publish opened chDB
                    publish_seen = time.monotonic()
                if publish_seen is not None and time.monotonic() - publish_seen >= publish_delay:
                    out["kills"][REFRESH] = {**kill_task(meta, REFRESH, runs[REFRESH], "publish"),
                                             "moment": f"publish {publish_delay} s after it opened chDB"}
                    pending.pop(REFRESH)
                    token = publish.run_token(runs[REFRESH])
                    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:  # the dead task's lock is free
                        t = positions_tables()
                        out["kills"][REFRESH].update(publish_log_at_kill=ledger_state(publish.ledger(ch, t), token),
                                                     open_rows_after_kill=len(open_positions(ch)))
            time.sleep(0.05)
    finally:
        bw_lock.rollback()
        tm_write.commit()
        for c in (bw_lock, tm_write, watch_bw, watch_tm, meta):
            c.close()
    out["states"] = {d: api.wait_for_run(d, r, timeout=300)["state"] for d, r in runs.items()}
    out["tries"] = {d: tries(api, d, runs[d], task) for d, task in VICTIMS.items()}
    out["tis"] = {d: api.task_instances(d, runs[d]) for d in runs}
    out["retry_returned"] = {d: xcom(api, d, runs[d], task) for d, task in VICTIMS.items()}
    out["booted_s"], out["prepared_s"] = booted_s, prepared_s
    out["total_s"] = round(time.monotonic() - t_start, 1)
    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        out["open_after"] = open_positions(ch)
        out["publish_log"] = publish.ledger(ch, positions_tables())
    say(f"data and reference ready after {prepared_s} s, standalone up after {booted_s} s; kills "
        f"{[(d, k['moment']) for d, k in out['kills'].items()]}; runs {out['states']}; {out['total_s']} s in all")
    yield out


def _killed_then_retried(scenario, dag_id: str) -> dict:
    """The lost try failed by the heartbeat timeout, the retry succeeded; the figures."""
    task_tries, kill = scenario["tries"][dag_id], scenario["kills"][dag_id]
    assert scenario["states"][dag_id] == "success", scenario["tis"][dag_id]
    assert [t["state"] for t in task_tries] == ["failed", "success"], task_tries
    first, last = task_tries
    assert first["try_number"] == kill["try_number"]
    detected_s = (_ts(first["end_date"]) - kill["killed_at"]).total_seconds()
    # failed once no heartbeat came for the timeout (the last came at most one interval before the kill)
    assert HEARTBEAT_TIMEOUT_S - HEARTBEAT_EVERY_S - 1 <= detected_s <= HEARTBEAT_TIMEOUT_S + 30, detected_s
    fig = {"task": f"{dag_id}.{VICTIMS[dag_id]}", "moment": kill["moment"], "failed_after_s": round(detected_s, 1),
           "retry_started_after_s": round((_ts(last["start_date"]) - kill["killed_at"]).total_seconds(), 1),
           "retry_s": round((_ts(last["end_date"]) - _ts(last["start_date"])).total_seconds(), 1),
           "retry_did": retry_did(dag_id, scenario["retry_returned"][dag_id]), "manual_step": None}
    FIGURES[dag_id] = fig
    return fig


def retry_did(dag_id: str, value) -> object:
    """What the retry's return value says it did, in a line."""
    if not isinstance(value, dict):
        return value
    if dag_id == MIG:
        return {"removed_per_table": {t: v.get("removed") for t, v in (value.get("tables") or {}).items()}}
    if dag_id == IDX:
        return {k: value.get(k) for k in ("status", "attempts", "dropped_invalid", "index") if k in value}
    resumed = value.get("resumed") or {}
    return {"resumed": resumed.get("outcome") if isinstance(resumed, dict) else resumed, "mode": value.get("mode"),
            "already_published": value.get("already_published"), "open_rows": value.get("open_rows_published")}


def test_killed_migration_dedup_is_failed_then_retried_and_loses_nothing(scenario, pg_cluster, figures):
    fig = _killed_then_retried(scenario, MIG)
    with psycopg.connect(pg_cluster.dsn("breezeway")) as c:
        removed = check_migrated(c, scenario["before"], scenario["keep"])
    assert sum(removed.values()) > 0
    figures.append({"test": "scheduler_kill", **fig, "rows_removed": sum(removed.values()),
                    "invariants": "keys kept, keep rule, no duplicates, constraints valid, no INVALID index, "
                                  "backup exact"})
    say(f"{fig}")


def test_killed_index_build_is_failed_then_retried_and_the_index_is_valid(scenario, pg_cluster, figures):
    fig = _killed_then_retried(scenario, IDX)
    with psycopg.connect(pg_cluster.dsn("telemetry")) as c:
        for table, col in TELEMETRY.items():
            now = [r[0] for r in c.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(col),
                                                                              sql.Identifier(table)))]
            assert set(now) == scenario["ids"][table], f"{table}: ids lost or invented"
            assert len(now) == len(set(now)), f"{table}: duplicates left"
            assert c.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisunique "
                             "AND indisvalid", (table,)).fetchone()[0] == 1, f"{table}: no valid unique index"
            assert c.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND NOT indisvalid",
                             (table,)).fetchone()[0] == 0, f"{table}: INVALID index left"
    figures.append({"test": "scheduler_kill", **fig, "invariants": "ids kept, no duplicates, unique indexes valid, "
                                                                    "no INVALID index"})
    say(f"{fig}")


def test_killed_publish_is_failed_then_retried_and_publishes_the_undisturbed_result(scenario, figures):
    fig = _killed_then_retried(scenario, REFRESH)
    kill = scenario["kills"][REFRESH]
    assert len(scenario["open_after"]) > 0
    assert scenario["open_after"] == scenario["reference"]["open"]
    fig.update(publish_log_at_kill=kill["publish_log_at_kill"], open_rows_after_kill=kill["open_rows_after_kill"],
               open_rows=len(scenario["open_after"]), undisturbed_publish_s=scenario["reference"]["publish_s"])
    figures.append({"test": "scheduler_kill", **fig, "invariants": "open lots = undisturbed run's, > 0 after recovery"})
    say(f"{fig}")
