"""The optional Slack channel gets the same incident messages as email: a real HTTP exchange with a
local webhook receiver."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.foundation.test_alerts import PROBE_DIR, _subjects
from tests.airflow_helpers import run_dag


@pytest.fixture()
def slack(monkeypatch):
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXX"
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SLACK", json.dumps({"conn_type": "slackwebhook", "password": url}))
    yield received
    server.shutdown()


def test_slack_gets_the_same_sequence_as_email(slack, smtp_sink, monkeypatch):
    monkeypatch.setenv("DUPGUARD_ALERT_REPEAT_MINUTES", "60")
    for fail in (True, True, True, False, False):
        run_dag("dupguard_alert_probe", conf={"fail": fail}, folder=PROBE_DIR)
    emails = _subjects(smtp_sink)
    slack_subjects = [m["text"].splitlines()[0].strip("*") for m in slack]
    assert len(emails) == 2 and emails[0].startswith("[dupguard] FAILED dupguard_alert_probe.broken run ")
    assert emails[1].startswith("[dupguard] RECOVERED dupguard_alert_probe.broken after 3 failed runs")
    assert slack_subjects == emails
    assert "planted failure after 1" in slack[0]["text"] and "Next step:" in slack[0]["text"]
