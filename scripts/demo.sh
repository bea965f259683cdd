#!/usr/bin/env bash
# make demo: embedded PostgreSQL, chDB directory, SMTP sink and `airflow standalone`.
# Ctrl-C stops everything this script started (each child runs in its own process group).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p "$LOCAL" "$AIRFLOW_HOME" "$DUPGUARD_MAIL_DIR" "$DUPGUARD_DATA_DOCS_DIR" "$LOCAL/logs" "$LOCAL/chdb"

PGIDS=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping the demo"
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    alive=0
    for pg in "${PGIDS[@]}"; do kill -0 -- "-$pg" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pg in "${PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
  python -m tools.embedded_pg stop --root "$LOCAL/pg" --port "$PG_PORT" || true
  echo "==> stopped (data kept in .local/; 'make clean-demo' removes it)"
}
trap cleanup EXIT
trap "exit 0" INT TERM

# start "name" cmd...: run in a new session/process group, log to .local/logs/name.log
start() {
  local name=$1; shift
  setsid "$@" >"$LOCAL/logs/$name.log" 2>&1 < /dev/null &
  PGIDS+=("$!")
}

for p in "$AIRFLOW_PORT" "$SMTP_PORT"; do
  if python -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$p)) else 1)"; then :; else
    echo "error: port $p is already in use (another demo running? set DUPGUARD_PG_PORT / DUPGUARD_AIRFLOW_PORT / DUPGUARD_SMTP_PORT)" >&2
    trap - INT TERM EXIT; exit 1
  fi
done

echo "==> PostgreSQL on 127.0.0.1:$PG_PORT (data in .local/pg)"
python -m tools.embedded_pg start --root "$LOCAL/pg" --port "$PG_PORT" --db airflow --db telemetry --db breezeway

echo "==> SMTP sink on 127.0.0.1:$SMTP_PORT (alerts saved in .local/mail/)"
start smtp-sink python -m tools.smtp_sink --folder "$DUPGUARD_MAIL_DIR" --port "$SMTP_PORT"

printf '{"%s": "%s"}\n' "$DEMO_USER" "$DEMO_PASSWORD" > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
echo "==> Airflow metadata database"
airflow db migrate >"$LOCAL/logs/db-migrate.log" 2>&1 || { tail -30 "$LOCAL/logs/db-migrate.log"; exit 1; }
airflow pools set clickhouse_embedded 1 "serialises tasks that open the embedded ClickHouse (chDB) directory" >/dev/null

echo "==> demo data"
python -m tools.demo_setup setup

echo "==> airflow standalone on http://localhost:$AIRFLOW_PORT (logs in .local/logs/airflow.log)"
start airflow airflow standalone
while read -r name cmd; do
  [ -n "$name" ] && start "$name" bash -c "$cmd"
done < <(python -m tools.demo_setup background)

for _ in $(seq 1 240); do
  if curl -fsS "http://localhost:$AIRFLOW_PORT/api/v2/monitor/health" >/dev/null 2>&1; then break; fi
  sleep 1
done
python -m tools.demo_setup after-start || echo "warning: post-start demo step failed (see above)"
cat <<MSG

  dupguard demo is up
  -------------------
  UI:         http://localhost:$AIRFLOW_PORT     login: $DEMO_USER / $DEMO_PASSWORD
  Alerts:     .local/mail/*.eml   (SMTP sink on 127.0.0.1:$SMTP_PORT)
  dupguard:   http://localhost:$AIRFLOW_PORT/dupguard/  (the dupguard entry in the UI: charts, gate results)
  Logs:       .local/logs/  (airflow.log, smtp-sink.log, ...)
  PostgreSQL: postgresql://postgres@127.0.0.1:$PG_PORT/{telemetry,breezeway,airflow}

  DAGs:       blocks_duplicate_cleanup (every minute), unified_positions_refresh (every 6 h),
              child_tables_dedup_migration (triggered once now), dedup_health_daily (daily);
              by hand: telemetry_unique_indexes, unified_positions_deduplicate, unified_positions_rollback,
                       unified_positions_adopt_partitioning, child_tables_dedup_rollback
  Trigger from the UI: Dags -> <dag_id> -> Trigger (a paused DAG runs once unpaused: the toggle)
  Trigger with the REST API:
    TOKEN=\$(curl -s -X POST http://localhost:$AIRFLOW_PORT/auth/token -H 'Content-Type: application/json' \\
            -d '{"username":"$DEMO_USER","password":"$DEMO_PASSWORD"}' | python -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
    curl -X POST http://localhost:$AIRFLOW_PORT/api/v2/dags/<dag_id>/dagRuns -H "Authorization: Bearer \$TOKEN" \\
            -H 'Content-Type: application/json' -d '{"logical_date": null, "conf": {}}'

  Ctrl-C stops everything.
MSG
wait
