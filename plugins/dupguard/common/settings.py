"""Project settings, read from the environment (never hard-coded secrets)."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]

# Connection ids (fixed contract: DAGs, tests and docker-compose rely on them).
TELEMETRY_CONN_ID = "telemetry_postgres"
BREEZEWAY_CONN_ID = "breezeway_postgres"
CLICKHOUSE_CONN_ID = "polymarket_clickhouse"
SMTP_CONN_ID = "alerts_smtp"
SLACK_CONN_ID = "alerts_slack"
ALL_CONN_IDS = (TELEMETRY_CONN_ID, BREEZEWAY_CONN_ID, CLICKHOUSE_CONN_ID, SMTP_CONN_ID)

# Pool that serialises ClickHouse tasks when the embedded engine (chDB) is used.
CLICKHOUSE_POOL = "clickhouse_embedded"
# Celery queue of the ClickHouse tasks: with the embedded engine exactly one worker serves it
# (chDB opens a data directory from one process at a time); with a ClickHouse server, any worker.
CLICKHOUSE_QUEUE = "clickhouse"


def sql_dir() -> Path:
    return Path(os.environ.get("DUPGUARD_SQL_DIR", PROJECT_ROOT / "include" / "sql"))


def data_docs_dir() -> Path:
    return Path(os.environ.get("DUPGUARD_DATA_DOCS_DIR", PROJECT_ROOT / ".local" / "data_docs"))


def alert_emails() -> list[str]:
    raw = os.environ.get("DUPGUARD_ALERT_EMAILS", "")
    return [a.strip() for a in raw.replace(";", ",").split(",") if a.strip()]


def alert_from() -> str:
    return os.environ.get("DUPGUARD_ALERT_FROM", "dupguard@localhost")


def ui_base_url() -> str:
    return os.environ.get("DUPGUARD_UI_BASE_URL", "http://localhost:8080").rstrip("/")


def read_sql(relative: str) -> str:
    """Text of ``include/sql/<relative>``."""
    return (sql_dir() / relative).read_text()
