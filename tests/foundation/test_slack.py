"""The optional Slack channel: a real HTTP exchange with a local webhook receiver."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from dupguard.notify import notify_failure


def test_slack_message_when_connection_exists(monkeypatch, smtp_sink):
    received = []

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
    try:
        url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXX"
        monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SLACK", json.dumps({"conn_type": "slackwebhook", "password": url}))

        class Run:
            dag_id = "d"
            run_id = "r1"

        notify_failure({"dag_run": Run(), "reason": "timed_out"})
    finally:
        server.shutdown()
    assert len(received) == 1
    assert received[0]["text"].startswith("[dupguard] FAILED d.<run> run r1")
    assert len(smtp_sink.wait_for(1)) == 1
