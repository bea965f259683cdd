"""A local SMTP server that keeps every message: one ``.eml`` file per message.

``make demo`` runs it so alerts can be read without a mail server; the tests use it to
assert what the notifier sent over a real SMTP exchange.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import json
import threading
import time
from email.message import EmailMessage
from pathlib import Path


class SmtpSink:
    def __init__(self, folder: Path | str, host: str = "127.0.0.1", port: int = 1025):
        self.folder = Path(folder)
        self.host = host
        self.port = int(port)
        self._messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller = None

    # aiosmtpd handler
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._lock:
            self._messages.append(msg)
            n = len(list(self.folder.glob("*.eml"))) + 1
        stamp = time.strftime("%Y%m%dT%H%M%S")
        (self.folder / f"{stamp}-{n:05d}.eml").write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.folder.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages

    def conn_json(self) -> str:
        return json.dumps({"conn_type": "smtp", "host": self.host, "port": self.port,
                           "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "dupguard@localhost",
                                     "timeout": 10, "retry_limit": 1}})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--folder", required=True)
    p.add_argument("--port", type=int, default=1025)
    a = p.parse_args()
    sink = SmtpSink(a.folder, port=a.port)
    sink.start()
    print(f"SMTP sink on 127.0.0.1:{a.port}, saving messages in {a.folder}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
