"""dedup_health_daily on real PostgreSQL and chDB."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from dupguard.common import settings
from dupguard.common.connections import clickhouse_client

LOGICAL = datetime(2026, 3, 2, tzinfo=timezone.utc)


@pytest.fixture()
def nothing_set_up(pg_cluster):
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
    with psycopg.connect(pg_cluster.dsn("breezeway"), autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS breezeway, dupguard CASCADE")
    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        ch.command("DROP TABLE IF EXISTS pm_trade_fifo_roi_v3_mat_unified")
    return pg_cluster


@pytest.fixture()
def telemetry(nothing_set_up):
    conn = psycopg.connect(nothing_set_up.dsn("telemetry"), autocommit=True)
    conn.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
    yield conn
    conn.close()


def _blocks(conn, *, copies: int, at: datetime, n: int = 1):
    for _ in range(n):
        bid = uuid.uuid4()
        for _ in range(copies):
            conn.execute("INSERT INTO blocks (block_id, stream_id, process_id, insert_time) VALUES (%s, %s, %s, %s)",
                         (bid, uuid.uuid4(), uuid.uuid4(), at))


def test_nothing_set_up_is_reported_not_crashed(nothing_set_up, run_dag):
    result = run_dag("dedup_health_daily", logical_date=LOGICAL)
    assert result.task_states == {"gate_telemetry": "skipped", "gate_breezeway": "skipped",
                                  "gate_positions": "skipped", "open_incidents": "success"}
    assert result.returns["open_incidents"]["open_incidents"] == 0
    assert result.state == "success"


def test_telemetry_healthy_passes(telemetry, run_dag):
    _blocks(telemetry, copies=1, at=LOGICAL - timedelta(hours=3), n=5)
    _blocks(telemetry, copies=2, at=LOGICAL - timedelta(days=3), n=2)     # older than the day: not counted
    _blocks(telemetry, copies=2, at=LOGICAL - timedelta(minutes=2), n=2)  # the per-minute cleanup's business
    result = run_dag("dedup_health_daily", logical_date=LOGICAL)
    assert result.task_states["gate_telemetry"] == "success"
    report = result.returns["gate_telemetry"]
    blocks = next(r for r in report["tables"] if r["table"] == "public.blocks")
    assert blocks["ids_in_window"] == 5 and blocks["duplicate_ids"] == 0
    assert blocks["unique_index"] == ""


def test_telemetry_duplicates_in_the_day_fail_the_gate(telemetry, run_dag, smtp_sink):
    _blocks(telemetry, copies=3, at=LOGICAL - timedelta(hours=5), n=2)
    # a first copy older than the day still makes the id a duplicate
    bid = uuid.uuid4()
    for at in (LOGICAL - timedelta(days=4), LOGICAL - timedelta(hours=1)):
        telemetry.execute("INSERT INTO blocks (block_id, insert_time) VALUES (%s, %s)", (bid, at))
    result = run_dag("dedup_health_daily", logical_date=LOGICAL)
    assert result.state == "failed"
    assert result.task_states["gate_telemetry"] == "failed"
    msgs = smtp_sink.wait_for(1)
    assert [m["Subject"] for m in msgs] == [f"[dupguard] FAILED dedup_health_daily.gate_telemetry run {result.run_id}"]
    assert "duplicate_ids" in msgs[0].get_body(preferencelist=("html",)).get_content()


@pytest.fixture()
def breezeway_demo(nothing_set_up):
    from tools.demo_breezeway import create_schema, load

    conn = psycopg.connect(nothing_set_up.dsn("breezeway"))
    create_schema(conn)
    load(conn, 0.0005)
    conn.commit()
    yield conn
    conn.close()


def test_breezeway_before_and_after_the_migration(breezeway_demo, run_dag):
    before = run_dag("dedup_health_daily", logical_date=LOGICAL)
    assert before.task_states["gate_breezeway"] == "skipped"  # migration not run: reported, no false alarm
    assert run_dag("child_tables_dedup_migration").state == "success"
    after = run_dag("dedup_health_daily", logical_date=LOGICAL + timedelta(days=1))
    assert after.task_states["gate_breezeway"] == "success"
    report = after.returns["gate_breezeway"]
    assert report["migration"] == "complete"
    assert len(report["tables"]) == 6
    assert all(r["duplicate_keys"] == 0 and r["constraint_valid"] == 1 for r in report["tables"])
    # a constraint dropped behind our back is a breach
    breezeway_demo.execute("ALTER TABLE breezeway.task_photos DROP CONSTRAINT task_photos_natural_key")
    breezeway_demo.commit()
    broken = run_dag("dedup_health_daily", logical_date=LOGICAL + timedelta(days=2))
    assert broken.task_states["gate_breezeway"] == "failed"


def test_positions_health_after_a_refresh_and_with_a_planted_duplicate(nothing_set_up, run_dag):
    from tools import demo_polymarket

    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        for (t,) in ch.query("SHOW TABLES").result_rows:
            ch.command(f"DROP TABLE `{t}`")
    demo_polymarket.setup()  # fills up to the current hour, a unified table with duplicates
    now = datetime.now(timezone.utc).replace(minute=30, second=0, microsecond=0)
    conf = {"max_hours_stale": 48, "min_unresolved_rows": 1}
    dirty = run_dag("dedup_health_daily", logical_date=now, conf=conf)
    assert dirty.task_states["gate_positions"] == "failed"  # the demo table's planted duplicates
    assert run_dag("unified_positions_refresh", logical_date=now).state == "success"
    clean = run_dag("dedup_health_daily", logical_date=now + timedelta(minutes=1), conf=conf)
    assert clean.task_states["gate_positions"] == "success"
    report = clean.returns["gate_positions"]
    assert report["unresolved_duplicates"] == 0 and report["unresolved"] > 0
    assert report["thresholds"] == {"max_hours_stale": 48.0, "min_unresolved_rows": 1}
    with clickhouse_client(settings.CLICKHOUSE_CONN_ID) as ch:
        ch.command("INSERT INTO pm_trade_fifo_roi_v3_mat_unified SELECT * FROM pm_trade_fifo_roi_v3_mat_unified "
                   "WHERE resolved_at IS NULL LIMIT 1")
    again = run_dag("dedup_health_daily", logical_date=now + timedelta(minutes=2), conf=conf)
    assert again.task_states["gate_positions"] == "failed"
