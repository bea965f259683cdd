"""A worker killed during ``CREATE UNIQUE INDEX CONCURRENTLY`` of a telemetry table, at a seeded
phase taken from ``pg_stat_progress_create_index``: the task's process group gets SIGKILL and
its backend is terminated (what ``client_connection_check_interval`` does for a dead client).
The leftover is INVALID; when it was already marked ready it rejects writers' retried inserts.
Recovery as the runbook says: the next per-minute cleanup drops a ready one (and alerts
once), the unique-index DAG's build is run again (it drops any leftover first). Checked from the data."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from dupguard.common import settings
from dupguard.telemetry import config
from dupguard.telemetry.cleanup import InvalidIndexDropped, cleanup_table
from dupguard.telemetry.unique_index import build_unique_index
from dupguard.telemetry.window import compute_window

INDEX = "blocks_block_id_unique"
#: phase -> how a second session holds the build there: an uncommitted write (before the build)
#: or an old snapshot (after validation: the index is ready but not valid yet)
PHASES = {"waiting for writers before build": "write", "waiting for old snapshots": "snapshot"}


def test_killed_unique_index_build_is_dropped_by_the_watch_and_rebuilt(pg_cluster, rng, figures):
    dsn = pg_cluster.dsn("telemetry")
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS blocks, streams, processes CASCADE")
    conn.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
    n = rng.randint(20_000, 60_000)
    conn.execute("INSERT INTO blocks (block_id, stream_id, process_id, insert_time) SELECT gen_random_uuid(), "
                 "gen_random_uuid(), gen_random_uuid(), now() - interval '2 minutes' FROM generate_series(1, %s)", (n,))
    before = {r[0] for r in conn.execute("SELECT block_id FROM blocks")}
    phase = rng.choice(sorted(PHASES))
    holder = psycopg.connect(dsn)
    if PHASES[phase] == "write":
        holder.execute("INSERT INTO blocks (block_id, insert_time) VALUES (gen_random_uuid(), now())")
    else:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM processes")
    worker = subprocess.Popen(
        [sys.executable, "-c", "import sys, psycopg; psycopg.connect(sys.argv[1], autocommit=True, "
         "application_name='chaos-build').execute(sys.argv[2])", dsn,
         f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON blocks (block_id)"], start_new_session=True)
    try:
        t0, seen = time.monotonic(), None
        while time.monotonic() - t0 < 60 and seen != phase:
            row = conn.execute("SELECT p.phase, p.pid FROM pg_stat_progress_create_index p "
                               "JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'chaos-build'").fetchone()
            seen, pid = row if row else (None, None)
            time.sleep(0.02)
        assert seen == phase, f"the build never reached {phase!r} (last: {seen})"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        holder.rollback()
        holder.close()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    for _ in range(100):   # the terminated backend's abort is done when its progress row is gone
        if not conn.execute("SELECT count(*) FROM pg_stat_progress_create_index").fetchone()[0]:
            break
        time.sleep(0.05)
    state = conn.execute("SELECT indisready, indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
                         (INDEX,)).fetchone()
    assert state is not None and state[1] is False, state          # an INVALID leftover
    # the writer retries an insert with an existing id (the HTTP client's retry)
    retried = next(iter(before))
    try:
        conn.execute("INSERT INTO blocks (block_id, insert_time) VALUES (%s, now())", (retried,))
        writer_rejected = False
    except psycopg.errors.UniqueViolation:
        writer_rejected = True
    assert writer_rejected == state[0]    # a ready INVALID unique index rejects; an unready one does not

    # recovery, as the runbook says: the next cleanup run drops it (alerting once) ...
    window = compute_window(datetime.now(timezone.utc), None)
    if state[0]:   # ready: it rejects writers, so it is dropped at once and alerted
        with pytest.raises(InvalidIndexDropped):
            cleanup_table(settings.TELEMETRY_CONN_ID, config.table_config("blocks"), window)
    else:          # unready: harmless to writers, reported by nothing, dropped by the rebuild
        assert cleanup_table(settings.TELEMETRY_CONN_ID, config.table_config("blocks"), window)[
            "invalid_index_watch"]["dropped"] == []
    writer_rows = [uuid.uuid4() for _ in range(5)] + [retried]
    for wid in writer_rows:   # writers work again
        conn.execute("INSERT INTO blocks (block_id, insert_time) VALUES (%s, now())", (wid,))
    # ... and telemetry_unique_indexes is run again: dedup + build
    report = build_unique_index(settings.TELEMETRY_CONN_ID, config.table_config("blocks"))
    after = [r[0] for r in conn.execute("SELECT block_id FROM blocks")]
    assert before | set(writer_rows) == set(after)                 # every key before, every writer row
    assert len(after) == len(set(after))                           # no duplicate key
    assert conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = 'blocks'::regclass AND NOT indisvalid"
                        ).fetchone()[0] == 0                       # no INVALID index left
    assert conn.execute("SELECT indisunique AND indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
                        (INDEX,)).fetchone()[0]
    conn.close()
    figures.append({"test": "killed_unique_index_build", "rows": n, "kill_phase": phase, "left_ready": state[0],
                    "writer_retry_rejected": writer_rejected,
                    "recovery": ("cleanup watch dropped it + alert; " if state[0] else "left to the rebuild; ")
                    + f"rebuild {report.get('status')}, dropped {report.get('dropped_invalid')}"})
