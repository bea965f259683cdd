"""Airflow's local settings hook (Airflow imports ``airflow_local_settings`` from the plugins folder,
which it puts on ``sys.path``, when any of its processes starts).

dupguard uses it for one thing: in the processes that fork task processes (the scheduler, whose
LocalExecutor workers fork every task, and a Celery worker), import once what the tasks import,
so a forked task process inherits it instead of importing great-expectations, pandas, SQLAlchemy,
the providers' hooks and the dupguard library again: measured, that import is most of what a
per-minute run costs (``make bench BENCH_ARGS=perminute``). Set ``DUPGUARD_PRELOAD=0`` to skip it.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

PRELOAD = (
    "great_expectations",
    "great_expectations.checkpoint",
    "pandas",
    "psycopg",
    "sqlalchemy",
    "clickhouse_connect",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.smtp.hooks.smtp",
    "airflow.providers.clickhousedb.hooks.clickhouse",
    "dupguard.common.gate",
    "dupguard.common.notify",
    "dupguard.common.dagkit",
    "dupguard.common.pg",
    "dupguard.telemetry.tasks",
    "dupguard.positions.tasks",
    "dupguard.breezeway.tasks",
    "dupguard.health.tasks",
)


def _forks_tasks(argv: list[str]) -> bool:
    args = [a for a in argv[1:] if not a.startswith("-")]
    return args[:1] == ["scheduler"] or args[:2] == ["celery", "worker"]


def preload(modules=PRELOAD) -> list[str]:
    """Import ``modules``; a failure is logged and never stops Airflow from starting."""
    import importlib

    loaded = []
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - an optimisation only
            log.warning("dupguard preload: cannot import %s: %s", name, exc)
    try:
        # the Task SDK's API client loads the system CA store into an SSL context the first time a
        # process builds one (lru-cached, ~0.1 CPU-s): build it here so forked workers inherit it
        from airflow.sdk.api import client as sdk_client

        sdk_client.Client._get_ssl_context_cached(sdk_client.API_SSL_CA_FILE_PATH, sdk_client.API_SSL_CERT_PATH)
        loaded.append("airflow.sdk.api.client (SSL context)")
    except Exception as exc:  # noqa: BLE001 - an optimisation only
        log.warning("dupguard preload: cannot build the API client's SSL context: %s", exc)
    return loaded


if os.environ.get("DUPGUARD_PRELOAD", "1") != "0" and _forks_tasks(sys.argv):
    preload()
