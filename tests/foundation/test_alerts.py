"""Alerts as incidents, over a real SMTP exchange and real dag.test() runs: one FAILED per incident,
STILL FAILING at most every repeat interval, one RECOVERED, state in Airflow Variables."""
from __future__ import annotations

import time

import pytest

from tests.airflow_helpers import ROOT, run_dag

PROBE_DIR = str(ROOT / "tests" / "fixtures" / "dags")


def _subjects(sink, wait: float = 1.0) -> list[str]:
    time.sleep(wait)  # a message that should not be sent has time to arrive if it were
    return [m["Subject"] for m in sink.messages]


def _age_last_message(dag_id: str, task_id: str, minutes: float) -> None:
    """Move the incident's last message ``minutes`` into the past, as if that much time had gone by."""
    from datetime import datetime, timedelta, timezone

    from dupguard.common import incidents

    store = incidents.VariableStore()
    inc = store.get(incidents.key(dag_id, task_id))
    inc["last_notified_at"] = (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()
    store.set(incidents.key(dag_id, task_id), inc)


def _probe(dag_id: str = "dupguard_alert_probe", fail: bool = True):
    return run_dag(dag_id, conf={"fail": fail}, folder=PROBE_DIR)



def test_incident_opens_once_reminds_after_the_interval_and_recovers(smtp_sink, monkeypatch):
    monkeypatch.setenv("DUPGUARD_ALERT_REPEAT_MINUTES", "60.0")
    runs = [_probe() for _ in range(5)]
    assert all(r.state == "failed" for r in runs)
    assert runs[0].task_states == {"fine": "success", "broken": "failed"}
    subjects = _subjects(smtp_sink)
    assert subjects == [f"[dupguard] FAILED dupguard_alert_probe.broken run {runs[0].run_id}"]
    msg = smtp_sink.messages[0]
    assert msg["To"] == "oncall@example.com"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "planted failure after 1" in text and "planted failure after 1" in html
    assert "Next step:" in text and f"/dags/dupguard_alert_probe/runs/" in text and "/tasks/broken" in text

    # the repeat interval has passed (the incident's last message is made 61 minutes old):
    # exactly one reminder, then none
    smtp_sink.clear()
    _age_last_message("dupguard_alert_probe", "broken", minutes=61)
    _probe()
    _probe()
    subjects = _subjects(smtp_sink)
    assert len(subjects) == 1, subjects
    assert subjects[0].startswith("[dupguard] STILL FAILING dupguard_alert_probe.broken: 6 failed runs since ")

    # the task succeeds again: one RECOVERED, then nothing for healthy runs
    smtp_sink.clear()
    ok = _probe(fail=False)
    assert ok.state == "success"
    _probe(fail=False)
    subjects = _subjects(smtp_sink)
    assert len(subjects) == 1, subjects
    assert subjects[0].startswith("[dupguard] RECOVERED dupguard_alert_probe.broken after 7 failed runs (")


def test_incidents_of_different_dags_are_independent(smtp_sink):
    a, b = _probe("dupguard_alert_probe"), _probe("dupguard_alert_probe_b")
    _probe("dupguard_alert_probe")
    assert sorted(_subjects(smtp_sink)) == sorted([
        f"[dupguard] FAILED dupguard_alert_probe.broken run {a.run_id}",
        f"[dupguard] FAILED dupguard_alert_probe_b.broken run {b.run_id}"])
    smtp_sink.clear()
    _probe("dupguard_alert_probe", fail=False)
    subjects = _subjects(smtp_sink)
    assert len(subjects) == 1 and subjects[0].startswith("[dupguard] RECOVERED dupguard_alert_probe.broken after 2")
    smtp_sink.clear()
    _probe("dupguard_alert_probe_b")  # b's incident is still open: counted, not sent
    assert _subjects(smtp_sink) == []


def test_incident_state_survives_a_new_process(smtp_sink):
    """The state is in Airflow's metadata database, not in the process that runs the tasks."""
    import json
    import os
    import subprocess
    import sys

    first = _probe()
    code = ("import sys; sys.path[:0]=['plugins','.']\n"
            "from tests.airflow_helpers import run_dag, ROOT\n"
            f"r = run_dag('dupguard_alert_probe', conf={{'fail': True}}, folder={PROBE_DIR!r})\n"
            "print(r.state)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.strip().endswith("failed"), out.stderr[-2000:]
    assert _subjects(smtp_sink) == [f"[dupguard] FAILED dupguard_alert_probe.broken run {first.run_id}"]
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as s:
        row = s.query(Variable).filter(Variable.key == "dupguard_incident__dupguard_alert_probe__broken").one()
        assert json.loads(row.val)["failures"] == 2


def test_dag_callback_speaks_only_for_runs_without_a_failed_task(smtp_sink):
    from dupguard.common.notify import handle_failure

    class Run:
        dag_id = "d"
        run_id = "r1"

    assert handle_failure({"dag_run": Run(), "reason": "task_failure"}) is None
    assert handle_failure({"dag_run": Run(), "reason": "timed_out"}) == "FAILED"
    msgs = smtp_sink.wait_for(1)
    assert msgs[0]["Subject"] == "[dupguard] FAILED d.<run> run r1"
    assert "timed_out" in msgs[0].get_body(preferencelist=("plain",)).get_content()


def test_gate_failure_alert_names_tables_bounds_observed_keys_and_next_step():
    from dupguard.common.gate import Check, GateFailed, GateSpec
    from dupguard.common.notify import compose, describe_failure

    spec = GateSpec("telemetry_window_duplicates", (Check("blocks_duplicate_ids", "a copy left is a bug",
                                                          min=0, max=0),), ("public.blocks",))
    failures = [{"expectation": "expect_column_values_to_be_between", "column": "blocks_duplicate_ids", "min": 0,
                 "max": 0, "description": "...", "reason": "a copy left is a bug",
                 "observed": {"unexpected_count": 1, "unexpected_values": [3]}, "success": False}]
    exc = GateFailed(spec.name, failures, {"tables": ["public.blocks"], "offending": ["id-1", "id-2"],
                                           "data_docs": "/dupguard/docs/x/r/g"})
    d = describe_failure(exc, "blocks_duplicate_cleanup", "quality_gate")
    assert d["kind"] == "GateFailed:telemetry_window_duplicates"
    assert d["expectations"] == ["blocks_duplicate_ids must be = 0, observed 3 (a copy left is a bug)"]
    inc = {"dag_id": "blocks_duplicate_cleanup", "task_id": "quality_gate", "latest_run_id": "r",
           "latest_error": d["error"], "failures": 1, "opened_at": "t", "details": d}
    m = compose("FAILED", inc, "http://x/log")
    for needle in ("public.blocks", "observed 3", "id-1, id-2", "http://localhost:8080/dupguard/docs/x/r/g",
                   "Next step: clear the run", "Log: http://x/log"):
        assert needle in m["text"], needle
    assert "id-1, id-2" in m["html"] and "Next step" in m["html"]


def test_broken_alert_channel_does_not_raise(monkeypatch, caplog):
    """An unreachable SMTP server is logged; the callback itself never raises."""
    import json

    from dupguard.common.notify import handle_failure

    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": 1, "extra": {"disable_tls": True, "disable_ssl": True,
                                                                        "retry_limit": 0, "timeout": 2}}))

    class Run:
        dag_id = "d"
        run_id = "r1"

    assert handle_failure({"dag_run": Run(), "reason": "timed_out"}) == "FAILED"
    assert "email through 'alerts_smtp' failed" in caplog.text


def test_readme_runbook_is_the_alerts_runbook():
    """The README shows the same runbook the alerts quote (one place: dupguard.common.runbook)."""
    from dupguard.common.runbook import markdown_table

    assert markdown_table() in (ROOT / "README.md").read_text()


def test_run_time_of_a_manual_run_without_logical_date():
    """REST triggers may send "logical_date": null: the run's due time is used, never the wall clock."""
    from datetime import datetime, timezone

    from dupguard.common.dagkit import run_time

    due = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
    assert run_time(None, None, due) == due
    assert run_time(due.replace(hour=1), None, due) == due.replace(hour=1)
    with pytest.raises(ValueError):
        run_time(None, None, None)


def test_run_dag_does_not_leak_conf_into_the_next_run():
    """A run's conf must not become the next run's params (the Param objects are shared)."""
    from tests.airflow_helpers import get_dag

    dag = get_dag("dupguard_alert_probe", PROBE_DIR)
    _probe(fail=False)
    assert dag.params["fail"] is True
    assert all(t.params.get("fail", True) is True for t in dag.tasks)


def test_late_run_sends_one_late_alert_and_recovers_with_the_run(smtp_sink):
    """The watch a task starts (on_execute_callback) fires at run start + the param's limit; a task
    starting after the limit reports at once; a second task of the same late run adds nothing; a
    task that ended before its timer fired sends nothing; the run's last task succeeding closes it."""
    from datetime import datetime, timedelta, timezone

    from dupguard.common import deadline
    from dupguard.common.notify import DupguardNotifier, handle_success

    watch = deadline.LateWatch("max_hours", 3600, 4)

    class Run:
        dag_id = "dupguard_alert_probe"
        run_id = "scheduled__x"
        start_date = datetime.now(timezone.utc) - timedelta(hours=2)

    class Ti:
        dag_id, run_id = Run.dag_id, Run.run_id

        def __init__(self, task_id):
            self.task_id = task_id

    class Task:
        downstream_task_ids: set = set()

    def ctx(task_id, hours):
        return {"dag_run": Run(), "ti": Ti(task_id), "params": {"max_hours": hours}, "task": Task()}

    # within the limit: the timer is set for later, and the task's end (its notifier) stops it
    early = watch.start(ctx("a", 4))
    assert early is not None and early.is_alive()
    DupguardNotifier("success").notify(ctx("a", 4))
    early.join(2)
    assert not early.is_alive() and _subjects(smtp_sink, wait=0.5) == []

    # past the limit when a task starts: reported at once (before the task runs), once per run
    assert watch.start(ctx("b", 1.5)) is None
    assert watch.start(ctx("c", 1.5)) is None
    subjects = _subjects(smtp_sink)
    assert len(subjects) == 1, subjects
    assert subjects[0].startswith("[dupguard] LATE dupguard_alert_probe run scheduled__x: "
                                  "still running max_hours=1.5 h after it started at ")
    body = smtp_sink.messages[0].get_body(preferencelist=("plain",)).get_content()
    assert "Next step:" in body and "Late runs:   1" in body
    smtp_sink.clear()
    # a LATE alert's next step is the DAG's <late> runbook entry, never a task's error-kind entry
    from dupguard.common import runbook

    for dag_id in ("child_tables_dedup_migration", "unified_positions_refresh"):
        assert runbook.entry(dag_id, "<late>", "late").task == "<late>"

    assert handle_success({"dag_run": Run(), "ti": Ti("last"), "task": Task()}) == ["<late>"]
    assert _subjects(smtp_sink)[0].startswith("[dupguard] RECOVERED dupguard_alert_probe.<late> after 1 late runs")
    smtp_sink.clear()

    # a task still running when the limit passes: its timer thread reports it
    Run.run_id = Ti.run_id = "scheduled__y"
    Run.start_date = datetime.now(timezone.utc) - timedelta(hours=1.5) + timedelta(seconds=1)
    timer = watch.start(ctx("long", 1.5))
    assert timer is not None
    timer.join(15)
    subjects = _subjects(smtp_sink)
    assert len(subjects) == 1 and subjects[0].startswith("[dupguard] LATE dupguard_alert_probe run scheduled__y: "), subjects
    assert "(task long running)" in subjects[0]


def test_daily_health_report_lists_open_incidents(smtp_sink):
    """An incident opened by a failing task shows in dedup_health_daily's open_incidents report."""
    from dupguard.common import incidents
    from dupguard.common.notify import handle_failure

    class Run:
        dag_id = "blocks_duplicate_cleanup"
        run_id = "r1"

    class Ti:
        task_id = "delete_duplicate_blocks"
        map_index = -1
        try_number = 1

    handle_failure({"dag_run": Run(), "ti": Ti(), "exception": RuntimeError("table blocks is away")})
    handle_failure({"dag_run": Run(), "ti": Ti(), "exception": RuntimeError("table blocks is away")})
    from dupguard.health.tasks import open_incidents

    report = open_incidents()
    assert report["open_incidents"] == 1
    inc = report["incidents"][0]
    assert (inc["dag_id"], inc["task_id"], inc["failures"]) == ("blocks_duplicate_cleanup", "delete_duplicate_blocks", 2)
    assert "table blocks is away" in inc["latest_error"]
    assert incidents.key("blocks_duplicate_cleanup", "delete_duplicate_blocks") == \
        "dupguard_incident__blocks_duplicate_cleanup__delete_duplicate_blocks"


def test_repeat_interval_accepts_a_float_and_falls_back_on_garbage(monkeypatch):
    from datetime import timedelta

    from dupguard.common.incidents import repeat_interval

    monkeypatch.setenv("DUPGUARD_ALERT_REPEAT_MINUTES", "0.5")
    assert repeat_interval() == timedelta(seconds=30)
    monkeypatch.setenv("DUPGUARD_ALERT_REPEAT_MINUTES", "soon")
    assert repeat_interval() == timedelta(minutes=60)
