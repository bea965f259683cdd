"""``[core] hostname_callable`` of the test's Celery workers.

In production every worker is its own host or container, so Airflow's default (the FQDN)
already tells them apart. The test runs two workers on one machine: each gets its name in
``DUPGUARD_WORKER_NAME`` and this records it as ``TaskInstance.hostname``.
"""
from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("DUPGUARD_WORKER_NAME") or socket.getfqdn()
