"""Telemetry demo: schema, a few days of history with duplicates, and an ingestion simulator.

``setup()`` (idempotent) creates ``processes``, ``streams`` and ``blocks`` in the database of
the ``telemetry_postgres`` connection and, when ``blocks`` is empty, loads 3 days of history
with every kind of duplicate the cleanup handles (retries 1-90 s later, identical copies,
NULL insert_time copies, first copies hours older). The historical duplicates all lie in the
first day, older than the per-minute window and the daily health check's day: they are what
``telemetry_unique_indexes`` removes, while the simulator's live retries are what the
per-minute cleanup removes.

``background()`` runs the simulator while the demo is up::

    python -m tools.demo_telemetry simulate [--seconds 28800] [--period 4]

Every few seconds it writes a batch of blocks like the current ingestion service does
(plain INSERTs): some rows are resent by "client retries" a few seconds later, some of them
across a minute boundary, so each run of ``blocks_duplicate_cleanup`` has work to show. Once
``telemetry_unique_indexes`` has built the unique index, the retries are rejected by it and
counted as such.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT / "plugins"), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

log = logging.getLogger("demo_telemetry")

SQL_DIR = Path(__file__).resolve().parent / "sql" / "telemetry"


def _connect(autocommit: bool = True):
    from dupguard.common import settings
    from dupguard.common.connections import pg_connect

    return pg_connect(settings.TELEMETRY_CONN_ID, autocommit=autocommit, application_name="dupguard:demo")


def setup() -> None:
    """Create the schema and, once, load 3 days of history with duplicates."""
    from dupguard.common import settings

    with _connect() as conn:
        conn.execute(settings.read_sql("telemetry/schema/create_tables.sql"))
        if conn.execute("SELECT EXISTS (SELECT 1 FROM blocks)").fetchone()[0]:
            print("    telemetry: demo data already loaded")
            return
        t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=3)
        n = 3 * 24 * 3600 // 6  # one block every 6 s for 3 days
        with conn.transaction():
            history = (SQL_DIR / "load_history.sql").read_text()
            for statement in history.split(";\n\n"):  # bound values: one statement at a time
                conn.execute(statement, {"t0": t0, "n": n})
        conn.execute("ANALYZE processes, streams, blocks")
        counts = {t: conn.execute(f"SELECT count(*), count(*) - count(DISTINCT {c}) FROM {t}").fetchone()
                  for t, c in (("blocks", "block_id"), ("streams", "stream_id"), ("processes", "process_id"))}
    for t, (rows, extra) in counts.items():
        print(f"    telemetry: {t}: {rows:,} rows, {extra:,} duplicate copies")


def background() -> list[tuple[str, str]]:
    return [("telemetry-ingest", f"{sys.executable} -m tools.demo_telemetry simulate")]


def simulate(seconds: float, period: float, per_batch: int, seed: int | None = None) -> dict[str, int]:
    """Write blocks every ``period`` seconds for ``seconds``, resending some (client retries)."""
    import psycopg

    rng = random.Random(seed)
    streams = [uuid.UUID(bytes=bytes.fromhex(__import__("hashlib").md5(f"stream{s}".encode()).hexdigest()))
               for s in range(1, 201)]
    pending: list[tuple[float, tuple]] = []
    stats = {"inserted": 0, "retries": 0, "rejected_by_unique_index": 0, "batches": 0}
    q = ("INSERT INTO blocks (block_id, stream_id, process_id, begin_time, begin_ticks, end_time, end_ticks,"
         " nb_objects, object_offset, payload_size, insert_time) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,now())")
    deadline = time.monotonic() + seconds
    with _connect() as conn:
        while time.monotonic() < deadline:
            now = time.monotonic()
            batch = []
            for _ in range(per_batch):
                stream = rng.choice(streams)
                end = datetime.now(timezone.utc)
                row = (uuid.uuid4(), stream, stream, end - timedelta(seconds=1), 0, end, 99,
                       rng.randint(1, 64), 0, rng.randint(256, 8192))
                batch.append(row)
                if rng.random() < 0.15:  # the HTTP call timed out after the insert: the client resends
                    pending.append((now + rng.uniform(2, 75), row))
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            for row in batch + [r for _, r in due]:
                try:
                    conn.execute(q, row)
                    stats["inserted"] += 1
                except psycopg.errors.UniqueViolation:
                    stats["rejected_by_unique_index"] += 1
            stats["retries"] += len(due)
            stats["batches"] += 1
            if stats["batches"] % 15 == 0:
                log.info("telemetry simulator: %s", stats)
            time.sleep(max(0.0, period - (time.monotonic() - now)))
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sim = sub.add_parser("simulate", help="ingestion simulator (blocks with retried duplicates)")
    sim.add_argument("--seconds", type=float, default=8 * 3600, help="stop after this long (default 8 h)")
    sim.add_argument("--period", type=float, default=4.0, help="seconds between batches")
    sim.add_argument("--per-batch", type=int, default=20, help="new blocks per batch")
    sub.add_parser("setup", help="create the schema and load the history")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cmd == "setup":
        setup()
    else:
        print(simulate(args.seconds, args.period, args.per_batch), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
