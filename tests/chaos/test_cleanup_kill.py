"""The per-minute delete of ``blocks_duplicate_cleanup`` (``airflow dags test``) SIGKILLed, its
whole process group, at a seeded moment after ``pg_stat_activity`` shows a table's DELETE
running, while a writer keeps inserting retried copies; recovered as the runbook says (the
next run: its window reaches back over the killed one) and checked from the data: every id
kept, no duplicate id left, per id the keep rule's row kept (oldest ``insert_time``, NULL last),
every writer row's id present, no INVALID index."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dupguard.common import settings
from dupguard.telemetry import config
from tests.chaos.conftest import TRIALS
from tests.chaos.invariants import Writer, backends, kill_group, wait_backends_gone, wait_until

ROOT = Path(__file__).resolve().parents[2]
DAG = "blocks_duplicate_cleanup"
#: the delete statement as pg_stat_activity shows it (its text is cut at track_activity_query_size)
DELETE_STATEMENT = settings.read_sql("telemetry/cleanup/delete_window_duplicates.sql").splitlines()[0] + "%"
TABLES = {key: (config.table_config(key).table, config.table_config(key).id_column) for key in config.TABLE_KEYS}


def plant(conn, table: str, col: str, ids: int, now: datetime, rng: random.Random) -> None:
    """``ids`` ids with a row in the window [now - 4 min, now - 10 s) and extra copies: most have
    their oldest copy two hours back (outside the window), a tenth only a NULL-time copy besides
    the window's; every copy's time distinct."""
    t, k = sql.Identifier(table), sql.Identifier(col)
    copies = rng.randint(2, 3)
    conn.execute(sql.SQL(
        "INSERT INTO {t} ({k}, insert_time) "
        "SELECT id, CASE WHEN c = 0 THEN (CASE WHEN g %% 10 = 0 THEN NULL "
        "                                      ELSE %(now)s - interval '2 hours' - g * interval '1 microsecond' END) "
        "                ELSE %(now)s - interval '10 seconds' - (c * %(ids)s::int + g) * (interval '230 seconds' / "
        "                     (%(copies)s::int * %(ids)s::int + %(ids)s::int)) END "
        "FROM (SELECT g, gen_random_uuid() AS id FROM generate_series(1, %(ids)s::int) g) s, "
        "generate_series(0, %(copies)s::int) c"
    ).format(t=t, k=k), {"now": now, "ids": ids, "copies": copies})


def rows_by_id(conn, table: str, col: str) -> dict[uuid.UUID, list]:
    out: dict[uuid.UUID, list] = {}
    for i, ts in conn.execute(sql.SQL("SELECT {}, insert_time FROM {}").format(sql.Identifier(col),
                                                                              sql.Identifier(table))):
        out.setdefault(i, []).append(ts)
    conn.commit()
    return out


class RetryWriter(Writer):
    """The ingestion's HTTP retries: copies of existing ids (and new ids), timed in the window."""

    def __init__(self, dsn: str, ids: dict[str, list], now: datetime, seed: int):
        super().__init__(dsn, seed)
        self.ids, self.now = ids, now
        self.rows: dict[str, list[tuple]] = {key: [] for key in TABLES}

    def write(self, conn, n: int) -> None:
        key = self.rng.choice(sorted(TABLES))
        table, col = TABLES[key]
        rid = self.rng.choice(self.ids[key]) if self.rng.random() < 0.7 else uuid.uuid4()
        ts = self.now - timedelta(seconds=10 + self.rng.uniform(0, 220))
        conn.execute(sql.SQL("INSERT INTO {} ({}, insert_time) VALUES (%s, %s)").format(
            sql.Identifier(table), sql.Identifier(col)), (rid, ts))
        self.rows[key].append((rid, ts))


def keeper(times: list) -> object:
    """The keep rule: the oldest insert_time, NULL last."""
    dated = [t for t in times if t is not None]
    return min(dated) if dated else None


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_cleanup_loses_nothing_and_the_next_run_converges(trial, pg_cluster, run_dag, rng, figures, tmp_path):
    dsn = pg_cluster.dsn("telemetry")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=2 + trial)
    conn = psycopg.connect(dsn)
    conn.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
    conn.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
    sizes = {key: rng.randint(20_000, 40_000) for key in TABLES}
    for key, (table, col) in TABLES.items():
        plant(conn, table, col, sizes[key], now, rng)
    conn.execute("ANALYZE")
    conn.commit()
    before = {key: rows_by_id(conn, *TABLES[key]) for key in TABLES}
    target, delay = rng.choice(sorted(TABLES)), round(rng.uniform(0, 1.2), 3)
    writer = RetryWriter(dsn, {k: list(v)[:5000] for k, v in before.items()}, now, rng.randrange(10**6))
    writer.start()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "dags", "test", DAG, now.isoformat()], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    watch = psycopg.connect(dsn, autocommit=True)
    app = f"dupguard:cleanup:{target}"
    try:
        wait_until(f"the DELETE of {target}", lambda: proc.poll() is not None or watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
            "AND query LIKE %s", (app, DELETE_STATEMENT)).fetchone()[0], timeout=240)
        assert proc.poll() is None, f"the run ended first:\n{(tmp_path / 'killed.log').read_text()[-2000:]}"
        time.sleep(delay)   # the seeded offset into the DELETE (nothing waits on it)
        at_kill = backends(watch, "dupguard:cleanup:%")
        kill_group(proc)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    mid_delete = any(b["state"] == "active" for b in at_kill if b["pid"])   # the statement still running
    backend_s = wait_backends_gone(watch, [b["pid"] for b in at_kill])
    writer.halt()
    assert writer.errors == [], writer.errors[:3]
    table, col = TABLES[target]
    left = rows_by_id(conn, table, col)
    deleted_by_killed = sum(len(v) for v in before[target].values()) + len(writer.rows[target]) - \
        sum(len(v) for v in left.values())
    assert all(i in left for i in before[target])                  # no id lost by the kill
    # the runbook: the next run (a minute later) reaches back over the killed run's window
    nxt = run_dag(DAG, logical_date=now + timedelta(minutes=1))
    assert nxt.state == "success", nxt.task_states
    for key, (table, col) in TABLES.items():
        after = rows_by_id(conn, table, col)
        every: dict = {i: list(v) for i, v in before[key].items()}
        for i, ts in writer.rows[key]:
            every.setdefault(i, []).append(ts)
        assert set(after) == set(every), f"{table}: ids lost {len(set(every) - set(after))}"
        dups = [i for i, v in after.items() if len(v) > 1]
        assert not dups, f"{table}: {len(dups)} ids still duplicated"
        wrong = [i for i, v in after.items() if v[0] != keeper(every[i])]
        assert not wrong, f"{table}: keep rule broken for {wrong[:3]}"
    assert watch.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = "
                         "ANY(%s) AND NOT i.indisvalid", ([t for t, _ in TABLES.values()],)).fetchone()[0] == 0
    watch.close()
    conn.close()
    figures.append({"test": "killed_cleanup", "trial": trial, "rows_per_table": sizes, "target": target,
                    "delay_s": delay, "statement_active_at_kill": mid_delete,
                    "at_kill": [f"{b['state']}: {b['query'][:40]}" for b in at_kill],
                    "backend_ended_after_s": backend_s, "rows_deleted_by_killed_run_in_target": deleted_by_killed,
                    "writer_rows": sum(len(v) for v in writer.rows.values()),
                    "next_run": {t: v.get("rows_deleted") for t, v in nxt.returns.items() if t.startswith("delete")},
                    "invariants": "every id kept, no duplicate, keep rule, writer ids present, no INVALID index"})
