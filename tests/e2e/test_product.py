"""The whole product in a real ``airflow standalone``: REST API, scheduler, LocalExecutor, browser.

Small demo data is loaded into the session's databases, each workflow is triggered through
``POST /api/v2/dags/{id}/dagRuns`` and polled to its end, and the database state after is
checked. A planted gate failure must produce exactly one alert email. A headless Chromium
logs into the UI and looks at the runs of ``blocks_duplicate_cleanup``.
"""
from __future__ import annotations

import shutil
import time

import psycopg
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import USER, chromium_driver, login

pytestmark = pytest.mark.e2e

WORKFLOWS = ("blocks_duplicate_cleanup", "child_tables_dedup_migration", "unified_positions_refresh")


@pytest.fixture(scope="module")
def api(airflow_server, demo_data):
    airflow_server.wait_for_dags(list(WORKFLOWS) + ["dedup_health_daily"], timeout=240)
    return airflow_server


def _trigger_and_wait(api, dag_id, conf=None, timeout=420):
    api.set_paused(dag_id, False)
    run_id = api.trigger(dag_id, conf)
    run = api.wait_for_run(dag_id, run_id, timeout=timeout)
    return run_id, run


def test_rest_login_rejects_a_wrong_password(airflow_server):
    import httpx

    r = httpx.post(f"{airflow_server.base_url}/auth/token", json={"username": USER, "password": "wrong"})
    assert r.status_code in (401, 403)


def test_three_workflows_succeed_and_leave_clean_tables(api, demo_data):
    results = {}
    for dag_id in WORKFLOWS:
        run_id, run = _trigger_and_wait(api, dag_id)
        results[dag_id] = (run_id, run["state"], api.task_instances(dag_id, run_id))
    failed = {d: r for d, r in results.items() if r[1] != "success"}
    assert not failed, failed

    # telemetry: every id with a row in the run's window has exactly one row
    with psycopg.connect(demo_data.dsn("telemetry")) as c:
        for table, col in (("blocks", "block_id"), ("streams", "stream_id"), ("processes", "process_id")):
            dups = c.execute(f"""SELECT count(*) FROM (SELECT DISTINCT {col} FROM {table}
                                   WHERE insert_time >= now() - interval '4 minutes') w
                                 WHERE (SELECT count(*) FROM {table} x WHERE x.{col} = w.{col}) > 1""").fetchone()[0]
            assert dups == 0, table
    # breezeway: no duplicate natural key, the six constraints valid, task_tags_unique untouched
    from dupguard.breezeway.config import CHILD_TABLES

    with psycopg.connect(demo_data.dsn("breezeway")) as c:
        for t in CHILD_TABLES:
            k1, k2 = t.natural_key
            d = c.execute(f"SELECT count(*) FROM (SELECT 1 FROM breezeway.{t.name} WHERE {k1} IS NOT NULL "
                          f"AND {k2} IS NOT NULL GROUP BY {k1}, {k2} HAVING count(*) > 1) x").fetchone()[0]
            assert d == 0, t.name
        names = {r[0] for r in c.execute("SELECT conname FROM pg_constraint WHERE contype = 'u' "
                                          "AND connamespace = 'breezeway'::regnamespace")}
        assert {t.constraint for t in CHILD_TABLES} | {"task_tags_unique"} <= names
    # positions: no duplicate open lot in the published table
    from dupguard.common.connections import clickhouse_client

    with clickhouse_client("polymarket_clickhouse") as ch:
        total, open_rows, open_keys = ch.query(
            "SELECT count(), countIf(resolved_at IS NULL), "
            "uniqExactIf((tx_hash, wallet, condition_id, outcome_index), resolved_at IS NULL) "
            "FROM pm_trade_fifo_roi_v3_mat_unified").result_rows[0]
    assert open_rows > 0 and open_rows == open_keys and total >= open_rows


def test_planted_gate_failure_sends_one_failed_then_after_the_fix_one_recovered(api, demo_data, smtp_sink):
    # old duplicates (2 hours back: outside the per-minute window, inside the daily health window)
    with psycopg.connect(demo_data.dsn("telemetry"), autocommit=True) as c:
        c.execute("""INSERT INTO blocks (block_id, stream_id, process_id, insert_time)
                     SELECT b, gen_random_uuid(), gen_random_uuid(), now() - interval '2 hours'
                     FROM (SELECT gen_random_uuid() AS b FROM generate_series(1, 3)) ids, generate_series(1, 2)""")
    smtp_sink.clear()
    run_id, run = _trigger_and_wait(api, "dedup_health_daily",
                                    conf={"max_hours_stale": 1_000_000, "min_unresolved_rows": 0})
    assert run["state"] == "failed"
    states = api.task_instances("dedup_health_daily", run_id)
    assert states["gate_telemetry"] == "failed", states
    assert states["gate_breezeway"] == "success", states
    assert states["gate_positions"] == "success", states
    msgs = smtp_sink.wait_for(1, timeout=30)
    time.sleep(5)  # a second alert, if one were sent, would arrive by now
    msgs = smtp_sink.messages
    assert len(msgs) == 1, [m["Subject"] for m in msgs]
    assert msgs[0]["Subject"] == f"[dupguard] FAILED dedup_health_daily.gate_telemetry run {run_id}"
    body = msgs[0].get_body(preferencelist=("html", "plain")).get_content()
    assert "duplicate_ids" in body

    # the fix (the planted copies removed), a new run: one RECOVERED, nothing else
    with psycopg.connect(demo_data.dsn("telemetry"), autocommit=True) as c:
        c.execute("""DELETE FROM blocks b USING blocks o WHERE o.block_id = b.block_id AND o.ctid < b.ctid
                     AND b.insert_time < now() - interval '90 minutes'""")
    smtp_sink.clear()
    run_id2, run = _trigger_and_wait(api, "dedup_health_daily",
                                     conf={"max_hours_stale": 1_000_000, "min_unresolved_rows": 0})
    assert run["state"] == "success", api.task_instances("dedup_health_daily", run_id2)
    smtp_sink.wait_for(1, timeout=30)
    time.sleep(5)
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert len(subjects) == 1, subjects
    assert subjects[0].startswith("[dupguard] RECOVERED dedup_health_daily.gate_telemetry after 1 failed runs ("), \
        subjects


def test_ui_shows_the_successful_runs(api, output_dir):
    from selenium.webdriver.common.by import By

    driver = chromium_driver()
    shot = output_dir / "ui_blocks_duplicate_cleanup_runs.png"
    try:
        wait = login(driver, api.base_url)
        driver.get(f"{api.base_url}/dags/blocks_duplicate_cleanup/runs")
        wait.until(lambda d: "blocks_duplicate_cleanup" in d.find_element(By.TAG_NAME, "body").text)
        wait.until(lambda d: "success" in d.find_element(By.TAG_NAME, "body").text.lower())
        time.sleep(2)
        driver.save_screenshot(str(shot))
        text = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    assert "blocks_duplicate_cleanup" in text
    assert "manual__" in text or "scheduled__" in text
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, ROOT / "tests" / "output" / "ui.png")
