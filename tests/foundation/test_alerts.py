"""Failure alerts over a real SMTP exchange."""
from __future__ import annotations

from tests.airflow_helpers import ROOT, run_dag

PROBE_DIR = str(ROOT / "tests" / "fixtures" / "dags")


def test_failing_task_sends_exactly_one_email(smtp_sink):
    result = run_dag("dupguard_alert_probe", folder=PROBE_DIR)
    assert result.state == "failed"
    assert result.task_states == {"fine": "success", "broken": "failed"}
    msgs = smtp_sink.wait_for(1, timeout=10)
    # give a second alert (e.g. from the DAG-level callback) time to arrive if it were sent
    import time

    time.sleep(1.0)
    msgs = smtp_sink.messages
    assert len(msgs) == 1, [m["Subject"] for m in msgs]
    msg = msgs[0]
    assert msg["Subject"] == f"[dupguard] FAILED dupguard_alert_probe.broken run {result.run_id}"
    assert msg["To"] == "oncall@example.com"
    body = msg.get_body(preferencelist=("html", "plain")).get_content()
    assert "planted failure after 1" in body
    assert "http://localhost:8080/dags/dupguard_alert_probe/runs/" in body
    assert "/tasks/broken" in body


def test_dag_callback_alerts_only_when_no_task_alerted():
    from dupguard.notify import build_alert

    class Run:
        dag_id = "d"
        run_id = "r1"

    assert build_alert({"dag_run": Run(), "reason": "task_failure"}) is None
    alert = build_alert({"dag_run": Run(), "reason": "timed_out"})
    assert alert["subject"] == "[dupguard] FAILED d.<run> run r1"
    assert "timed_out" in alert["text"]


def test_broken_alert_channel_does_not_raise(monkeypatch, caplog):
    """An unreachable SMTP server is logged; the callback itself never raises."""
    import json

    from dupguard.notify import notify_failure

    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": 1, "extra": {"disable_tls": True, "disable_ssl": True,
                                                                        "retry_limit": 0, "timeout": 2}}))

    class Run:
        dag_id = "d"
        run_id = "r1"

    notify_failure({"dag_run": Run(), "reason": "timed_out"})
    assert "email through 'alerts_smtp' failed" in caplog.text


def test_run_time_of_a_manual_run_without_logical_date():
    """REST triggers may send "logical_date": null: the run's due time is used, never the wall clock."""
    from datetime import datetime, timezone

    import pytest

    from dupguard.dagkit import run_time

    due = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)

    class Run:
        run_after = due

    assert run_time({"logical_date": None, "data_interval_end": None, "dag_run": Run()}) == due
    assert run_time({"logical_date": due.replace(hour=1), "dag_run": Run()}) == due.replace(hour=1)
    with pytest.raises(ValueError):
        run_time({"logical_date": None})


def test_run_dag_does_not_leak_conf_into_the_next_run(run_dag):
    """A run's conf must not become the next run's params (the Param objects are shared)."""
    from tests.airflow_helpers import get_dag

    dag = get_dag("dedup_health_daily")
    default = dag.params["max_hours_stale"]
    run_dag("dedup_health_daily", conf={"max_hours_stale": 12345})
    assert dag.params["max_hours_stale"] == default
    assert all(t.params.get("max_hours_stale", default) == default for t in dag.tasks)
