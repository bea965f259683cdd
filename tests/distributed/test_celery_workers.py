"""The three workflows on two Celery workers (the docker-compose shape, as processes), one worker
killed with SIGKILL in the middle of the Breezeway migration.

One scenario, checked by the tests below in file order: the three workflows are triggered at
once through the REST API (FAB login) on planted data. A row lock on the migration's fifth
table holds its dedup step mid-work; the worker running it is SIGKILLed (its whole process
tree, as a lost machine would be), the lock released. Airflow fails that try after the
heartbeat timeout, the retry runs on the other worker; the killed worker is restarted once
the retry runs (docker compose's ``restart: always``), so the ClickHouse queue is served again.
When the migration ends, what it left is recorded and its rollback triggered at once (the
other workflows may still be running).

The figures (the interrupted try and its retry, run times) are printed past pytest's capture
and kept in ``tests/output/distributed.json``. ``DUPGUARD_SCALING_FIGURES=1`` also runs the
three workflows on 1 and on 2 workers for docs/scaling.md (several minutes; off by default).
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from tests.distributed.conftest import HEARTBEAT_EVERY_S, HEARTBEAT_TIMEOUT_S, WORKER_SLOTS

pytestmark = pytest.mark.distributed

WORKFLOWS = ("blocks_duplicate_cleanup", "child_tables_dedup_migration", "unified_positions_refresh")
MIGRATION, ROLLBACK = "child_tables_dedup_migration", "child_tables_dedup_rollback"
TELEMETRY = (("blocks", "block_id"), ("streams", "stream_id"), ("processes", "process_id"))
UNIFIED = "pm_trade_fifo_roi_v3_mat_unified"
PLANTED_IDS = 20              # per telemetry table, each given two retried copies a minute before the run
LOCKED_TABLE = "task_photos"  # the dedup reaches it fifth, after committing its work on four tables
BOTH = ["worker1", "worker2"]
FIGURES: dict = {}


def say(line: str) -> None:
    """Print past pytest's capture: the lead quotes these lines."""
    import sys

    sys.__stdout__.write(f"[distributed] {line}\n")
    sys.__stdout__.flush()


@pytest.fixture(scope="module", autouse=True)
def keep_figures(output_dir):
    yield
    if FIGURES:
        (output_dir / "distributed.json").write_text(json.dumps(FIGURES, indent=2, default=str))


@pytest.fixture(scope="module")
def api(celery_cluster):
    api = celery_cluster.wait_ready()
    api.wait_for_dags([*WORKFLOWS, ROLLBACK], timeout=180)
    for dag_id in (*WORKFLOWS, ROLLBACK):
        api.set_paused(dag_id, False)
    return api


@pytest.fixture(scope="module")
def positions_data(chdb_dir):
    """The demo's fills, resolutions and damaged unified table in the session's chDB (the refresh
    rebuilds every open lot, so one load serves every run)."""
    from dupguard.common.connections import clickhouse_client
    from tools import demo_polymarket

    with clickhouse_client("polymarket_clickhouse") as ch:
        for (table,) in ch.query("SHOW TABLES").result_rows:
            ch.command("DROP TABLE IF EXISTS {t:Identifier}", parameters={"t": table})
    demo_polymarket.setup()


# --- data -----------------------------------------------------------------------------------
def reset_postgres_data(pg_cluster) -> dict[str, list]:
    """Fresh demo schemas in ``telemetry`` and ``breezeway``; in each telemetry table the
    newest ``PLANTED_IDS`` ids get two retried copies inserted a minute ago. Returns them."""
    from tools import demo_breezeway, demo_telemetry

    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
        c.execute("DROP TYPE IF EXISTS micromegas_property CASCADE")
    with psycopg.connect(pg_cluster.dsn("breezeway"), autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS breezeway, dupguard CASCADE")
    demo_telemetry.setup()
    demo_breezeway.setup()
    planted = {}
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        for table, col in TELEMETRY:
            t, k = sql.Identifier(table), sql.Identifier(col)
            c.execute(sql.SQL("CREATE TEMP TABLE planted AS SELECT * FROM {} ORDER BY insert_time DESC NULLS LAST "
                              "LIMIT %s").format(t), (PLANTED_IDS,))
            c.execute("UPDATE planted SET insert_time = now() - interval '1 minute'")
            for _ in range(2):
                c.execute(sql.SQL("INSERT INTO {} SELECT * FROM planted").format(t))
            planted[table] = [r[0] for r in c.execute(sql.SQL("SELECT {} FROM planted").format(k))]
            c.execute("DROP TABLE planted")
    return planted


def check_database_state(pg_cluster, planted: dict[str, list], breezeway: dict | None = None) -> None:
    """No duplicates in the cleanup's window, the six constraints valid (``breezeway``: the facts
    of :func:`breezeway_state`, when taken earlier), no duplicate open lot."""
    from dupguard.breezeway.config import CHILD_TABLES
    from dupguard.common.connections import clickhouse_client

    with psycopg.connect(pg_cluster.dsn("telemetry")) as c:
        for table, col in TELEMETRY:
            t, k = sql.Identifier(table), sql.Identifier(col)
            copies = c.execute(sql.SQL("SELECT {k}, count(*) FROM {t} WHERE {k} = ANY(%s) GROUP BY 1").format(
                t=t, k=k), (planted[table],)).fetchall()
            assert sorted(n for _, n in copies) == [1] * PLANTED_IDS, f"{table}: planted retries left: {copies}"
            dups = c.execute(sql.SQL(
                "SELECT count(*) FROM (SELECT {k} FROM {t} WHERE {k} IN (SELECT {k} FROM {t} "
                "WHERE insert_time >= now() - interval '4 minutes') GROUP BY 1 HAVING count(*) > 1) d").format(
                t=t, k=k)).fetchone()[0]
            assert dups == 0, f"{table}: {dups} ids of the window still duplicated"
    breezeway = breezeway or breezeway_state(pg_cluster)
    assert not any(breezeway["duplicated_keys"].values()), breezeway["duplicated_keys"]
    expected = {t.constraint for t in CHILD_TABLES} | {"task_tags_unique"}
    assert {n for n in expected if breezeway["constraints"].get(n)} == expected, breezeway["constraints"]
    with clickhouse_client("polymarket_clickhouse") as ch:
        open_rows, open_keys = ch.query(
            "SELECT countIf(resolved_at IS NULL), "
            "uniqExactIf((tx_hash, wallet, condition_id, outcome_index), resolved_at IS NULL) "
            "FROM {t:Identifier}", parameters={"t": UNIFIED}).result_rows[0]
    assert open_rows > 0 and open_rows == open_keys, (open_rows, open_keys)


def breezeway_state(pg_cluster) -> dict:
    """Duplicated natural keys per table, and each unique constraint of ``breezeway`` -> valid."""
    from dupguard.breezeway.config import CHILD_TABLES

    with psycopg.connect(pg_cluster.dsn("breezeway")) as c:
        dups = {}
        for t in CHILD_TABLES:
            k1, k2 = (sql.Identifier(k) for k in t.natural_key)
            dups[t.name] = c.execute(sql.SQL(
                "SELECT count(*) FROM (SELECT 1 FROM breezeway.{} WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL "
                "GROUP BY {k1}, {k2} HAVING count(*) > 1) x").format(sql.Identifier(t.name), k1=k1, k2=k2)).fetchone()[0]
        valid = dict(c.execute("SELECT c.conname, i.indisvalid FROM pg_constraint c JOIN pg_index i "
                               "ON i.indexrelid = c.conindid WHERE c.contype = 'u' "
                               "AND c.connamespace = 'breezeway'::regnamespace").fetchall())
    return {"duplicated_keys": dups, "constraints": valid}


def _columns(conn, qualified: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                       "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (qualified,))]


def breezeway_rows(pg_cluster, *, backup: bool = False) -> dict[str, set[tuple]]:
    """Every row of the six tables (or of their migration backups), in the table's own columns."""
    from dupguard.breezeway.config import CHILD_TABLES

    out = {}
    with psycopg.connect(pg_cluster.dsn("breezeway")) as c:
        for t in CHILD_TABLES:
            cols = sql.SQL(", ").join(map(sql.Identifier, _columns(c, t.qualified)))
            src = sql.Identifier("dupguard", f"bw_backup_{t.name}") if backup else sql.Identifier("breezeway", t.name)
            out[t.name] = set(c.execute(sql.SQL("SELECT {} FROM {}").format(cols, src)).fetchall())
    return out


def natural_keys(pg_cluster, rows: dict[str, set[tuple]]) -> dict[str, set[tuple]]:
    from dupguard.breezeway.config import CHILD_TABLES

    out = {}
    with psycopg.connect(pg_cluster.dsn("breezeway")) as c:
        for t in CHILD_TABLES:
            cols = _columns(c, t.qualified)
            i, j = (cols.index(k) for k in t.natural_key)
            out[t.name] = {(r[i], r[j]) for r in rows[t.name]}
    return out


# --- runs -----------------------------------------------------------------------------------
def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _seconds(tis) -> float:
    tis = [t for t in tis if t.get("start_date") and t.get("end_date")]
    return round((max(_ts(t["end_date"]) for t in tis) - min(_ts(t["start_date"]) for t in tis)).total_seconds(), 1)


def wait_all(api, runs: dict[str, str], timeout: float = 240) -> dict:
    """Wait for every run; states, task instances, each run's time (first task start to last
    task end) and the wall time from the first trigger to the last run's end."""
    done = {dag_id: api.wait_for_run(dag_id, run_id, timeout=timeout) for dag_id, run_id in runs.items()}
    tis = {dag_id: api.tis(dag_id, run_id) for dag_id, run_id in runs.items()}
    wall = max(_ts(r["end_date"]) for r in done.values()) - min(_ts(r["queued_at"]) for r in done.values())
    return {"runs": runs, "states": {d: r["state"] for d, r in done.items()}, "tis": tis,
            "run_s": {d: _seconds(tis[d].values()) for d in runs}, "wall_s": round(wall.total_seconds(), 1)}


def _waits_for(watcher, holder_pid: int) -> bool:
    """Whether a session waits for a lock ``holder_pid`` holds (``watcher`` in autocommit: inside a
    transaction pg_stat_activity is a snapshot)."""
    return watcher.execute("SELECT count(*) > 0 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                           (holder_pid,)).fetchone()[0]


@pytest.fixture(scope="module")
def scenario(request, celery_cluster, positions_data, pg_cluster):
    """Run the scenario once (see the module docstring); the tests read what it recorded."""
    planted = reset_postgres_data(pg_cluster)  # while the cluster boots
    before = breezeway_rows(pg_cluster)
    api = request.getfixturevalue("api")
    celery_cluster.ensure_workers(BOTH)
    locker = psycopg.connect(pg_cluster.dsn("breezeway"))
    watcher = psycopg.connect(pg_cluster.dsn("breezeway"), autocommit=True)
    try:
        locker.execute(sql.SQL("SELECT id FROM breezeway.{} FOR UPDATE").format(sql.Identifier(LOCKED_TABLE)))
        runs = {dag_id: api.trigger(dag_id) for dag_id in WORKFLOWS}
        deadline = time.monotonic() + 150
        while not _waits_for(watcher, locker.info.backend_pid):  # the dedup reached the locked table
            assert time.monotonic() < deadline, f"the dedup never reached {LOCKED_TABLE}"
            time.sleep(0.2)
        dedup = api.tis(MIGRATION, runs[MIGRATION])["dedup"]
        assert dedup["state"] == "running" and dedup["hostname"], dedup
        victim = dedup["hostname"]
        killed_at = datetime.now().astimezone()
        celery_cluster.kill_worker(victim)
    finally:
        locker.rollback()
        locker.close()
        watcher.close()
    deadline = time.monotonic() + 150
    while True:  # the retry running elsewhere; then the lost worker comes back (restart: always)
        dedup = api.tis(MIGRATION, runs[MIGRATION]).get("dedup", {})
        if dedup.get("try_number", 1) >= 2 and dedup.get("state") in ("running", "success"):
            break
        assert dedup.get("state") not in ("failed", "upstream_failed"), dedup
        assert time.monotonic() < deadline, f"the dedup was not retried: {dedup}"
        time.sleep(1)
    celery_cluster.ensure_workers(BOTH)
    facts = {"planted": planted, "victim": victim, "killed_at": killed_at, "before": before}
    if api.wait_for_run(MIGRATION, runs[MIGRATION], timeout=240)["state"] == "success":
        # what the migration left, then its rollback while the other workflows may still run
        facts.update(breezeway=breezeway_state(pg_cluster), after=breezeway_rows(pg_cluster),
                     backup=breezeway_rows(pg_cluster, backup=True), rollback_run=api.trigger(ROLLBACK))
    result = wait_all(api, runs)
    result.update(facts, tries=api.tries(MIGRATION, runs[MIGRATION], "dedup"))
    if "rollback_run" in facts:
        rb = api.wait_for_run(ROLLBACK, facts["rollback_run"], timeout=150)
        result.update(rollback_state=rb["state"], restored=breezeway_rows(pg_cluster),
                      rollback_tis={t: ti["state"] for t, ti in api.tis(ROLLBACK, facts["rollback_run"]).items()})
    say(f"three workflows on 2 workers with one worker killed: {result['wall_s']} s wall, runs {result['run_s']}")
    return result


def test_every_run_succeeds_and_leaves_clean_data(scenario, pg_cluster):
    failed = {d: {t: ti["state"] for t, ti in scenario["tis"][d].items()}
              for d, s in scenario["states"].items() if s != "success"}
    assert not failed, f"runs not successful: {failed}"
    check_database_state(pg_cluster, scenario["planted"], scenario["breezeway"])


def test_tasks_ran_on_both_workers_and_clickhouse_tasks_on_worker1_only(scenario):
    placement = sorted((d, ti["task_id"], ti["queue"], ti["hostname"])
                       for d, tis in scenario["tis"].items() for ti in tis.values() if ti["state"] == "success")
    per_host = {h: sum(1 for *_, x in placement if x == h) for h in {p[3] for p in placement}}
    assert set(per_host) == set(BOTH), f"tasks did not run on both workers: {placement}"
    on_clickhouse = [(d, t, h) for d, t, q, h in placement if q == "clickhouse"]
    positions = scenario["tis"]["unified_positions_refresh"]
    assert sorted(t for d, t, _ in on_clickhouse) == sorted(positions), "ClickHouse tasks = the refresh's tasks"
    assert len(on_clickhouse) >= 6
    assert {h for *_, h in on_clickhouse} == {"worker1"}, f"a ClickHouse task ran off worker1: {on_clickhouse}"
    assert {q for _, _, q, _ in placement} == {"default", "clickhouse"}
    FIGURES["placement"] = {"per_worker": per_host, "tasks": placement}
    say(f"task instances per worker {per_host}; ClickHouse tasks: {len(on_clickhouse)}, all on worker1")


def test_the_killed_dedup_is_retried_on_the_other_worker(scenario):
    victim, killed_at, tries = scenario["victim"], scenario["killed_at"], scenario["tries"]
    survivor = ({"worker1", "worker2"} - {victim}).pop()
    first, last = tries[0], tries[-1]
    assert len(tries) == 2, tries
    assert (first["hostname"], first["state"]) == (victim, "failed"), first
    assert (last["hostname"], last["state"]) == (survivor, "success"), last
    failed_at, retried_at = _ts(first["end_date"]), _ts(last["start_date"])
    detected_s = (failed_at - killed_at).total_seconds()
    # failed once no heartbeat came for the timeout (the last one came at most one interval before the kill)
    assert HEARTBEAT_TIMEOUT_S - HEARTBEAT_EVERY_S - 1 <= detected_s <= HEARTBEAT_TIMEOUT_S + 30, detected_s
    tis = scenario["tis"][MIGRATION]
    FIGURES["worker_kill"] = {
        "task": f"{MIGRATION}.dedup", "killed_worker": victim, "killed_at": killed_at,
        "try1": {k: first[k] for k in ("hostname", "state", "start_date", "end_date")},
        "try2": {k: last[k] for k in ("hostname", "state", "start_date", "end_date")},
        "failed_after_s": round(detected_s, 1), "retry_started_after_s": round((retried_at - killed_at).total_seconds(), 1),
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S, "migration_run_s": scenario["run_s"][MIGRATION]}
    say(f"worker kill: {MIGRATION}.dedup try 1 on {victim} (started {first['start_date']}) SIGKILLed at "
        f"{killed_at.isoformat(timespec='seconds')} while waiting on {LOCKED_TABLE}; the try was failed "
        f"{detected_s:.0f} s later (heartbeat timeout {HEARTBEAT_TIMEOUT_S} s); try 2 started on {survivor} at "
        f"{last['start_date']} ({(retried_at - killed_at).total_seconds():.0f} s after the kill) and succeeded; "
        f"the migration ran {scenario['run_s'][MIGRATION]} s; reclaim..finish on "
        f"{sorted({tis[t]['hostname'] for t in ('reclaim', 'constraints', 'quality_gate', 'finish')})}")


def test_nothing_is_lost_and_the_rollback_is_exact(scenario, pg_cluster):
    assert "after" in scenario, "the migration did not succeed"
    before, after, backup = scenario["before"], scenario["after"], scenario["backup"]
    keys_before, keys_after = natural_keys(pg_cluster, before), natural_keys(pg_cluster, after)
    removed = 0
    for table in before:
        assert keys_after[table] == keys_before[table], f"{table}: natural keys lost"
        assert after[table] | backup[table] == before[table], f"{table}: rows neither kept nor in the backup"
        assert not {r[0] for r in after[table]} & {r[0] for r in backup[table]}, f"{table}: kept and backed up"
        removed += len(backup[table])
    assert removed > 0
    assert scenario["rollback_state"] == "success", scenario["rollback_tis"]
    assert scenario["restored"] == before, "the rollback did not restore the tables exactly"
    FIGURES["worker_kill_rows_removed_then_restored"] = removed
    say(f"nothing lost: every natural key kept, {removed} removed rows all in the backup; rollback exact")


@pytest.mark.skipif(not os.environ.get("DUPGUARD_SCALING_FIGURES"),
                    reason="measurement for docs/scaling.md; set DUPGUARD_SCALING_FIGURES=1 (several minutes)")
def test_scaling_figures_one_vs_two_workers(celery_cluster, api, positions_data, pg_cluster):
    """A warm-up run, then DUPGUARD_SCALING_ROUNDS rounds of the three workflows on 1 and on 2
    workers (alternating); prints every figure and the medians."""
    import statistics

    rounds = int(os.environ.get("DUPGUARD_SCALING_ROUNDS", "3"))
    figures: dict[str, list] = {"1": [], "2": []}
    for i, workers in enumerate([BOTH] + [w for _ in range(rounds) for w in (["worker1"], BOTH)]):
        celery_cluster.ensure_workers(workers)
        planted = reset_postgres_data(pg_cluster)
        load = os.getloadavg()[0]
        result = wait_all(api, {dag_id: api.trigger(dag_id) for dag_id in WORKFLOWS})
        assert set(result["states"].values()) == {"success"}, result["states"]
        check_database_state(pg_cluster, planted)
        label = "warm-up" if i == 0 else f"{len(workers)} worker(s)"
        say(f"{label}: three workflows in {result['wall_s']} s wall, runs {result['run_s']} (load {load:.1f})")
        if i:
            figures[str(len(workers))].append({"wall_s": result["wall_s"], "run_s": result["run_s"], "load": load})
    medians = {n: {"wall_s": statistics.median(f["wall_s"] for f in runs),
                   **{d: statistics.median(f["run_s"][d] for f in runs) for d in WORKFLOWS}}
               for n, runs in figures.items()}
    say(f"medians over {rounds} rounds: {medians}")
    FIGURES["scaling"] = {"rounds": figures, "medians": medians, "worker_slots": WORKER_SLOTS}
    celery_cluster.ensure_workers(BOTH)
