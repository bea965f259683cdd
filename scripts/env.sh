# Shared environment of the make targets: sourced, not executed.
# Everything lives in .local/ (git-ignored). Override ports with DUPGUARD_PG_PORT,
# DUPGUARD_AIRFLOW_PORT, DUPGUARD_SMTP_PORT.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${DUPGUARD_LOCAL:-$ROOT/.local}"
PG_PORT="${DUPGUARD_PG_PORT:-5439}"
AIRFLOW_PORT="${DUPGUARD_AIRFLOW_PORT:-8080}"
SMTP_PORT="${DUPGUARD_SMTP_PORT:-1025}"
DEMO_USER="${DUPGUARD_DEMO_USER:-admin}"
DEMO_PASSWORD="${DUPGUARD_DEMO_PASSWORD:-admin}"
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT/plugins:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

export AIRFLOW_HOME="$LOCAL/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$DEMO_USER:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$AIRFLOW_PORT/execution/"
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$AIRFLOW_PORT"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/airflow"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=True
export GX_ANALYTICS_ENABLED=false

export AIRFLOW_CONN_TELEMETRY_POSTGRES="{\"conn_type\":\"postgres\",\"host\":\"127.0.0.1\",\"port\":$PG_PORT,\"login\":\"postgres\",\"schema\":\"telemetry\"}"
export AIRFLOW_CONN_BREEZEWAY_POSTGRES="{\"conn_type\":\"postgres\",\"host\":\"127.0.0.1\",\"port\":$PG_PORT,\"login\":\"postgres\",\"schema\":\"breezeway\"}"
export AIRFLOW_CONN_POLYMARKET_CLICKHOUSE="{\"conn_type\":\"clickhouse\",\"schema\":\"polymarket\",\"extra\":{\"chdb_path\":\"$LOCAL/chdb\"}}"
export AIRFLOW_CONN_ALERTS_SMTP="{\"conn_type\":\"smtp\",\"host\":\"127.0.0.1\",\"port\":$SMTP_PORT,\"extra\":{\"disable_tls\":true,\"disable_ssl\":true,\"from_email\":\"dupguard@localhost\",\"timeout\":10,\"retry_limit\":1}}"
export DUPGUARD_ALERT_EMAILS="${DUPGUARD_ALERT_EMAILS:-oncall@dupguard.local}"
export DUPGUARD_UI_BASE_URL="http://localhost:$AIRFLOW_PORT"
export DUPGUARD_DATA_DOCS_DIR="$LOCAL/data_docs"
DUPGUARD_MAIL_DIR="$LOCAL/mail"
