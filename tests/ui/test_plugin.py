"""The plugin contract: Airflow loads it, its app answers with what real ``dag.test()`` runs
produced, and nobody without a valid Airflow login gets anything."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import psycopg
import pytest
from markupsafe import escape

from dupguard.common import settings
from tests.conftest import ROOT

CLEANUP = "blocks_duplicate_cleanup"
ROUTES = ["/dupguard/", "/dupguard/?window=7d", f"/dupguard/api/runs?dag_id={CLEANUP}",
          f"/dupguard/api/series?dag_id={CLEANUP}&metric=rows_deleted.blocks", f"/dupguard/api/metrics?dag_id={CLEANUP}",
          f"/dupguard/api/gates?dag_id={CLEANUP}&run_id=x", f"/dupguard/run/{CLEANUP}/x", f"/dupguard/docs/{CLEANUP}/x/g"]


def test_airflow_loads_the_plugin_with_its_app_and_views():
    from airflow import plugins_manager
    from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse

    info = next(p for p in plugins_manager.get_plugin_info() if p["name"] == "dupguard")
    plugin = PluginResponse.model_validate(info)  # what GET /api/v2/plugins serves
    assert [(a.url_prefix, a.name) for a in plugin.fastapi_apps] == [("/dupguard", "dupguard")]
    views = {v.destination: v for v in plugin.external_views}
    assert views["nav"].href == "/dupguard/" and views["nav"].url_route == "dupguard" and views["nav"].nav_top_level
    assert views["dag_run"].href == "/dupguard/run/{DAG_ID}/{RUN_ID}"
    assert views["task_instance"].href == "/dupguard/run/{DAG_ID}/{RUN_ID}?task_id={TASK_ID}"
    errors = {k: v for k, v in plugins_manager.get_import_errors().items() if "dupguard_plugin" in k or "/ui/" in k}
    assert not errors, errors


def test_task_processes_load_the_plugin_without_fastapi():
    """Airflow imports every plugin in every task process: building the app waits for a request."""
    code = ("import sys, dupguard_plugin; assert 'fastapi' not in sys.modules, 'fastapi imported'; "
            "assert dupguard_plugin.DupguardPlugin.fastapi_apps[0]['app']._app is None")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
                                                                   "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def cleanup_run(pg_cluster, run_dag):
    """One real run of the per-minute cleanup over planted duplicates: 4 retried block ids (one
    of them copied twice) and 2 retried stream ids inside the run's window."""
    logical = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    t = logical - timedelta(minutes=2)
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
        c.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
        for i in range(4):
            b = uuid.uuid4()
            for k in range(3 if i == 0 else 2):
                c.execute("INSERT INTO blocks (block_id, insert_time) VALUES (%s, %s)", (b, t + timedelta(seconds=k)))
        for _ in range(2):
            s = uuid.uuid4()
            c.execute("INSERT INTO streams (stream_id, insert_time) VALUES (%s, %s), (%s, %s)", (s, t, s, t))
        c.execute("INSERT INTO processes (process_id, insert_time) VALUES (%s, %s)", (uuid.uuid4(), t))
    result = run_dag(CLEANUP, logical_date=logical)
    assert result.succeeded, result.task_states
    return result


def test_runs_return_the_reports_of_the_real_run(client, auth, cleanup_run):
    r = client.get("/dupguard/api/runs", params={"dag_id": CLEANUP, "limit": 200}, headers=auth)
    assert r.status_code == 200
    runs = r.json()["runs"]
    after = [x["run_after"] for x in runs]
    assert after == sorted(after, reverse=True), "newest first"
    run = next(x for x in runs if x["run_id"] == cleanup_run.run_id)
    assert run["state"] == "success" and run["logical_date"].startswith("2024-03-01T12:00:00")
    assert set(run) >= {"run_id", "state", "run_after", "logical_date", "start_date", "end_date", "reports"}
    assert run["reports"] == cleanup_run.returns
    assert run["reports"]["delete_duplicate_blocks"]["rows_deleted"] == 5
    assert run["reports"]["delete_duplicate_streams"]["rows_deleted"] == 2
    assert run["reports"]["delete_duplicate_processes"]["rows_deleted"] == 0
    one = client.get("/dupguard/api/runs", params={"dag_id": CLEANUP, "limit": 1}, headers=auth).json()["runs"]
    assert len(one) == 1 and one[0]["run_id"] == runs[0]["run_id"]


def test_series_give_the_real_runs_figures(client, auth, cleanup_run):
    since = "2024-03-01T11:00:00+00:00"

    def series(metric):
        r = client.get("/dupguard/api/series", params={"dag_id": CLEANUP, "metric": metric, "since": since},
                       headers=auth)
        assert r.status_code == 200, r.text
        return {p["run_id"]: p["value"] for p in r.json()["points"]}

    assert series("rows_deleted.blocks")[cleanup_run.run_id] == 5
    assert series("ids_affected.blocks")[cleanup_run.run_id] == 4
    assert series("rows_deleted.streams")[cleanup_run.run_id] == 2
    assert series("gate.quality_gate")[cleanup_run.run_id] == 1
    r = client.get("/dupguard/api/series", params={"dag_id": CLEANUP, "metric": "rows_deleted.nope"}, headers=auth)
    assert r.status_code == 404 and "rows_deleted.blocks" in r.text


def test_series_have_one_point_per_run_in_the_window(client, auth):
    """Seeded runs of a past week: one point per run since ``since``, oldest first, a failed gate 0."""
    from airflow.utils.session import create_session
    from bench.bench_ui import seed_cleanup_runs

    end = datetime(2023, 1, 8, tzinfo=timezone.utc)
    with create_session() as session:
        run_ids = seed_cleanup_runs(session, 90, end=end, failed_gate_every=30)
    since = (end - timedelta(minutes=59)).isoformat()
    r = client.get("/dupguard/api/series", params={"dag_id": CLEANUP, "metric": "gate.quality_gate", "since": since},
                   headers=auth)
    points = [p for p in r.json()["points"] if p["run_after"] <= end.isoformat()]
    assert [p["run_id"] for p in points] == run_ids[-60:]
    assert [p["value"] for p in points].count(0) == 2  # runs 60 and 90 of the 90


def test_gate_record_and_data_docs_page_of_the_real_run(client, auth, cleanup_run):
    gate = cleanup_run.returns["quality_gate"]
    path = gate["data_docs"]
    assert path == f"/dupguard/docs/{CLEANUP}/{quote(cleanup_run.run_id, safe='')}/{quote(gate['gate'], safe='')}"
    page = client.get(path, headers=auth)
    assert page.status_code == 200
    html = page.text
    assert "PASSED" in html and "<script" not in html and "<link" not in html
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", html), "the page needs no network"
    for result in gate["results"]:
        assert result["column"] in html and str(escape(result["reason"])) in html
    assert html.count('class="pass"') == len(gate["results"])
    r = client.get("/dupguard/api/gates", params={"dag_id": CLEANUP, "run_id": cleanup_run.run_id}, headers=auth)
    (record,) = r.json()["validations"]
    assert (record["task_id"], record["summary"]["results"]) == ("quality_gate", gate["results"])


def test_run_view_shows_reports_and_gates(client, auth, cleanup_run):
    base = f"/dupguard/run/{CLEANUP}/{quote(cleanup_run.run_id, safe='')}"
    html = client.get(base, headers=auth).text
    for task in cleanup_run.returns:
        assert f'data-task="{task}"' in html
    assert 'data-gate="telemetry_window_duplicates"' in html or "data-gate=" in html
    one = client.get(base, params={"task_id": "delete_duplicate_blocks"}, headers=auth).text
    assert 'data-task="delete_duplicate_blocks"' in one and 'data-task="delete_duplicate_streams"' not in one
    assert client.get(f"/dupguard/run/{CLEANUP}/nope", headers=auth).status_code == 404
    assert "not a dupguard DAG" in client.get("/dupguard/run/some_other_dag/x", headers=auth).text


def test_dashboard_shows_every_system_and_links_to_data_docs(client, auth, cleanup_run):
    html = client.get("/dupguard/", headers=auth).text
    for system in ("telemetry", "positions", "breezeway", "health"):
        assert f'id="{system}"' in html
    assert 'data-dag="blocks_duplicate_cleanup"' in html and "<script" not in html
    week = client.get("/dupguard/", params={"window": "7d"}, headers=auth)
    assert week.status_code == 200 and "7 days" in week.text
    links = set(re.findall(r'href="(/dupguard/docs/[^"]+)"', html))
    assert links, "the latest gate results link to their Data Docs pages"
    for link in links:
        assert client.get(link.replace("&amp;", "&"), headers=auth).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_anonymous_requests_are_refused(client, route):
    r = client.get(route)
    assert r.status_code == 401
    assert "cleanup" not in r.text and "rows_deleted" not in r.text


def _forged(secret="not-the-server-secret"):
    import jwt

    claims = {"sub": "admin", "role": "admin", "aud": "apache-airflow", "iss": None,
              "exp": datetime.now(timezone.utc) + timedelta(hours=1), "iat": datetime.now(timezone.utc)}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS512")


@pytest.mark.parametrize("route", ROUTES)
def test_forged_tokens_are_refused(client, route):
    for headers in ({"Authorization": f"Bearer {_forged()}"}, {"Cookie": f"_token={_forged()}"},
                    {"Authorization": "Bearer not.a.jwt"}):
        r = client.get(route, headers=headers)
        assert r.status_code in (401, 403), (headers, r.status_code)


def test_expired_token_is_refused_and_the_ui_session_cookie_works(client, ui):
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    expired = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"),
                                              expiration_time_in_seconds=-3600)
    assert client.get("/dupguard/", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    page = client.get("/dupguard/", headers={"Cookie": f"_token={ui[1]}", "Accept": "text/html"})
    assert page.status_code == 200 and 'id="telemetry"' in page.text
    login = client.get("/dupguard/", headers={"Accept": "text/html"})
    assert login.status_code == 401 and "Log in" in login.text
