"""The dupguard view and the trigger forms in a real ``airflow standalone``, in headless Chromium.

The api-server lists the plugin; the **dupguard** navigation entry opens the dashboard, whose charts
have one point per run of the workflows run here; a gate's Data Docs page opens from it; a run's
page has the dupguard tab; every DAG's Trigger form submits with its defaults. Screenshots go to
``tests/output/``.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.e2e

CLEANUP, REFRESH, MIGRATION = "blocks_duplicate_cleanup", "unified_positions_refresh", "child_tables_dedup_migration"


@pytest.fixture(scope="module")
def api(airflow_server, demo_data):
    airflow_server.wait_for_dags([CLEANUP, REFRESH, MIGRATION], timeout=240)
    return airflow_server


def _dupguard_dags(api) -> list[str]:
    return sorted(d["dag_id"] for d in api._request("GET", "/dags", params={"limit": 100, "tags": "dupguard"})["dags"])


def _patiently(call, timeout: float = 180):
    """``call()``, retried while the api-server does not answer: on this 2-core machine it stops
    answering for 10-40 s while task processes start (seen with and without this plugin)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except httpx.TimeoutException:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _wait_idle(api, dag_id: str, timeout: float = 420) -> None:
    deadline = time.monotonic() + timeout
    while any(r["state"] in ("queued", "running") for r in _patiently(lambda: api.runs(dag_id, limit=20))):
        assert time.monotonic() < deadline, f"{dag_id} still has active runs"
        time.sleep(2)


def _wait_for_run(api, dag_id: str, run_id: str, timeout: float = 420) -> str:
    deadline = time.monotonic() + timeout
    while (state := _patiently(lambda: api.run(dag_id, run_id))["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"{dag_id} {run_id} still {state}"
        time.sleep(2)
    return state


@pytest.fixture(scope="module")
def workflows(api):
    """Real runs: the per-minute cleanup twice by hand (plus whatever the scheduler adds), the
    migration and the positions refresh once each; then every DAG paused and idle, so the
    dashboard and the REST API see the same runs."""
    runs = {}
    for dag_id in (CLEANUP, CLEANUP, MIGRATION, REFRESH):
        _patiently(lambda: api.set_paused(dag_id, False))
        run_id = _patiently(lambda: api.trigger(dag_id))
        assert _wait_for_run(api, dag_id, run_id) == "success", api.task_instances(dag_id, run_id)
        runs.setdefault(dag_id, []).append(run_id)
    for dag_id in _patiently(lambda: _dupguard_dags(api)):
        _patiently(lambda: api.set_paused(dag_id, True))
    for dag_id in (CLEANUP, MIGRATION, REFRESH):
        _wait_idle(api, dag_id)
    return runs


def _runs_where(api, dag_id: str, task_id: str, states: tuple[str, ...], since: datetime) -> int:
    """Runs of ``dag_id`` since ``since`` whose ``task_id`` ended in one of ``states`` (REST API)."""
    n = 0
    for r in api.runs(dag_id, limit=100):
        if datetime.fromisoformat(r["run_after"]) >= since and api.task_instances(dag_id, r["dag_run_id"]).get(task_id) in states:
            n += 1
    return n


def test_api_server_lists_the_plugin_and_guards_its_app(airflow_server):
    plugins = airflow_server._request("GET", "/plugins")["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "dupguard"]
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [("/dupguard", "dupguard")]
    nav = [v for v in plugin["external_views"] if v["destination"] == "nav"]
    assert [(v["name"], v["href"], v["url_route"]) for v in nav] == [("dupguard", "/dupguard/", "dupguard")]
    assert {v["destination"] for v in plugin["external_views"]} == {"nav", "dag_run", "task_instance"}
    errors = airflow_server._request("GET", "/plugins/importErrors")["import_errors"]
    assert not [e for e in errors if "dupguard_plugin" in e["source"] or "/ui/" in e["source"]], errors
    url = f"{airflow_server.base_url}/dupguard/api/runs?dag_id={CLEANUP}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer forged.token.value"}).status_code in (401, 403)
    token = airflow_server.login()
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def _shoot_outside_frame(browser, path) -> str:
    """The framed page's text; then a screenshot of the whole UI around the frame."""
    from selenium.webdriver.common.by import By

    text = browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()
    time.sleep(1)
    browser.save_screenshot(str(path))
    return text


def _open_dashboard(browser, base_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{base_url}/")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "a[href$='/plugin/dupguard']"))).click()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title=dupguard]")))
    browser.switch_to.frame(frame)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section#telemetry")))
    return wait


def test_nav_entry_opens_the_dashboard_with_one_point_per_run(api, workflows, browser, output_dir):
    from selenium.webdriver.common.by import By

    since = datetime.now(timezone.utc) - timedelta(hours=24)
    expected = {
        f"Rows deleted per run · {CLEANUP}": _runs_where(api, CLEANUP, "delete_duplicate_blocks", ("success",), since),
        f"Open lots published · {REFRESH}": _runs_where(api, REFRESH, "publish", ("success",), since),
        f"quality_gate · {CLEANUP}": _runs_where(api, CLEANUP, "quality_gate", ("success", "failed"), since),
    }
    browser.set_window_size(1400, 2400)
    try:
        _open_dashboard(browser, api.base_url)
        points = browser.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('svg.chart')].map(s => [s.getAttribute('aria-label'),"
            " [...s.querySelectorAll('g.series')].map(g => [+g.dataset.points, g.querySelectorAll('.pt').length])]))")
        text = _shoot_outside_frame(browser, output_dir / "ui_dupguard_dashboard.png")
    finally:
        browser.switch_to.default_content()
        browser.set_window_size(1400, 1000)
    assert expected[f"Rows deleted per run · {CLEANUP}"] >= 2 and expected[f"Open lots published · {REFRESH}"] >= 1
    for title, n in expected.items():
        assert title in points, (title, sorted(points))
        for declared, drawn in points[title]:
            assert declared == drawn == n, (title, points[title], n)
    assert "Migration ledger" in text and "complete" in text, text[:2000]
    assert "Latest gate results" in text and "telemetry_window_duplicates" in text


def test_a_gate_data_docs_page_opens_from_the_dashboard(api, workflows, browser, output_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    try:
        wait = _open_dashboard(browser, api.base_url)
        link = browser.find_element(By.CSS_SELECTOR, "section#telemetry a.docs-link")
        href = link.get_attribute("href")
        link.click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "div.verdict")))
        verdict = browser.find_element(By.CSS_SELECTOR, "div.verdict").text
        rows = browser.find_elements(By.CSS_SELECTOR, "table.gate tr")
        text = _shoot_outside_frame(browser, output_dir / "ui_dupguard_data_docs.png")
    finally:
        browser.switch_to.default_content()
    assert "/dupguard/docs/" in href
    assert verdict.startswith(("PASSED", "FAILED")) and len(rows) >= 4  # header + one row per table
    assert "blocks_duplicate_ids" in text and "why this bound" in text
    assert re.search(r"[=≤] 0", text), "each expectation shows its bound"


def test_run_page_has_the_dupguard_tab(api, workflows, browser, output_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    run_id = workflows[CLEANUP][-1]
    wait = WebDriverWait(browser, 60)
    browser.get(f"{api.base_url}/dags/{CLEANUP}/runs/{quote(run_id, safe='')}")
    wait.until(ec.element_to_be_clickable((By.XPATH, "//a[normalize-space()='dupguard' and contains(@href, '/runs/')]"))).click()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title=dupguard]")))
    try:
        browser.switch_to.frame(frame)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.reports")))
        text = _shoot_outside_frame(browser, output_dir / "ui_dupguard_run_tab.png")
    finally:
        browser.switch_to.default_content()
    assert run_id in text and "rows_deleted" in text and "telemetry_window_duplicates" in text


def test_every_dag_triggers_from_its_form_with_the_defaults(api, workflows, browser, output_dir):
    """Each DAG's Trigger form, params left at their defaults, the unpause box unticked: a run is
    created and the paused DAG stays paused."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    refused = {}
    dags = _dupguard_dags(api)
    assert len(dags) >= 7, dags
    for dag_id in dags:
        api.set_paused(dag_id, True)
        before = {r["dag_run_id"] for r in api.runs(dag_id, limit=100)}
        browser.get(f"{api.base_url}/dags/{dag_id}")
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Trigger']"))).click()
        dialog = wait.until(ec.presence_of_element_located(
            (By.XPATH, "//*[@role='dialog' and .//*[contains(., 'Trigger Dag')]]")))
        unpause = dialog.find_elements(By.XPATH, ".//label[@data-scope='checkbox' and contains(., 'Unpause')]")
        if unpause and unpause[0].get_attribute("data-state") == "checked":
            unpause[0].click()
        submit = dialog.find_element(By.XPATH, ".//button[normalize-space()='Trigger']")
        browser.save_screenshot(str(output_dir / f"ui_trigger_form_{dag_id}.png"))
        if not submit.is_enabled():
            browser.save_screenshot(str(output_dir / f"ui_trigger_refused_{dag_id}.png"))
            refused[dag_id] = "the Trigger button is disabled with the defaults"
            continue
        submit.click()
        deadline = time.monotonic() + 30
        while not ({r["dag_run_id"] for r in api.runs(dag_id, limit=100)} - before) and time.monotonic() < deadline:
            time.sleep(1)
        if not ({r["dag_run_id"] for r in api.runs(dag_id, limit=100)} - before):
            browser.save_screenshot(str(output_dir / f"ui_trigger_refused_{dag_id}.png"))
            refused[dag_id] = "no run was created"
        elif not api._request("GET", f"/dags/{dag_id}")["is_paused"]:
            refused[dag_id] = "the paused DAG was unpaused although the unpause box was unticked"
    assert not refused, refused
