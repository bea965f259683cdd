"""Breezeway child-table dedup: our online migration vs the seed's plan done naively.

Data: the seed's six tables at 1/10 scale (3.8M rows, 183k distinct keys, 909x / 632x /
1x / 1490x / 27x / 31x), loaded once into a template database; each plan runs on its own
copy (CREATE DATABASE ... TEMPLATE), so both see the same bytes.

A writer runs the original ETL statement (``INSERT ... ON CONFLICT DO NOTHING``, no
conflict target) at 200 rows/s, ~10% of them duplicates of existing keys:
- ours: the writer runs throughout; we report its p99 / max insert latency and errors;
- naive (full backup copies, DELETE, ADD CONSTRAINT, VACUUM FULL): writers are stopped
  for the whole run, so the downtime is the run's wall time.
Peak extra disk = max(pg_database_size) during the run - size before (WAL reported apart).
Final size is compared with a fresh load of the same final rows (indexes built after).

    make bench BENCH_ARGS=breezeway          # BREEZEWAY_BENCH_SCALE=0.1 by default
"""
from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time

from bench.common import pg_cluster, print_table

SCALE = float(os.environ.get("BREEZEWAY_BENCH_SCALE", "0.1"))
WRITER_RATE = 200  # rows per second
DUP_SHARE = 0.10
NEW_KEY_BASE = 10_000_000_000


def _use(cluster, db: str) -> None:
    os.environ["AIRFLOW_CONN_BREEZEWAY_POSTGRES"] = json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": cluster.port, "login": "postgres", "schema": db})


class Writer(threading.Thread):
    """The old ETL: single-row INSERT ... ON CONFLICT DO NOTHING at WRITER_RATE rows/s."""

    def __init__(self, dsn: str, keys: dict[str, int]):
        super().__init__(daemon=True)
        self.dsn, self.keys = dsn, keys
        self.stop_evt = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.inserted = 0

    def run(self) -> None:
        import psycopg

        from dupguard.breezeway.config import CHILD_TABLES
        from tools.demo_breezeway import NATURAL, PARENT, PARENT_COL

        rnd = random.Random(7)
        conn = psycopg.connect(self.dsn, autocommit=True)
        n, t_next = 0, time.monotonic()
        while not self.stop_evt.is_set():
            t = rnd.choice(CHILD_TABLES)
            n += 1
            key = rnd.randint(1, self.keys[t.name]) if rnd.random() < DUP_SHARE else NEW_KEY_BASE + n
            parent = 1 + key % 50 if key < NEW_KEY_BASE else 1 + n % 50
            stmt = (f"INSERT INTO breezeway.{t.name} ({PARENT_COL[PARENT[t.name]]}, {NATURAL[t.name]}, region_code,"
                    " created_at, updated_at) VALUES (%s, %s, 'r1', now(), now()) ON CONFLICT DO NOTHING")
            t0 = time.monotonic()
            try:
                cur = conn.execute(stmt, (parent, key))
                self.inserted += max(cur.rowcount, 0)
            except Exception as exc:  # noqa: BLE001 - the ETL would see this error
                self.errors.append(str(exc).splitlines()[0])
            self.latencies.append(time.monotonic() - t0)
            t_next += 1.0 / WRITER_RATE
            time.sleep(max(0.0, t_next - time.monotonic()))
        conn.close()

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(30)


class DiskSampler(threading.Thread):
    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop_evt = threading.Event()
        self.peak_db = self.peak_wal = 0
        self.base_db = self.base_wal = None

    def run(self) -> None:
        import psycopg

        conn = psycopg.connect(self.dsn, autocommit=True)
        while not self.stop_evt.is_set():
            db, wal = conn.execute("SELECT pg_database_size(current_database()), "
                                   "(SELECT coalesce(sum(size), 0) FROM pg_ls_waldir())").fetchone()
            if self.base_db is None:
                self.base_db, self.base_wal = db, wal
            self.peak_db, self.peak_wal = max(self.peak_db, db), max(self.peak_wal, wal)
            self.stop_evt.wait(0.1)
        conn.close()

    def stop(self) -> tuple[int, int]:
        self.stop_evt.set()
        self.join(10)
        return self.peak_db - self.base_db, self.peak_wal - self.base_wal


def our_migration() -> dict:
    from dupguard.breezeway import constraints, dedup, gates, ledger, preflight

    conn_id, run = "breezeway_postgres", "bench-ours"
    out = {"claim": ledger.claim(conn_id, run)}
    for name, fn in (("preflight", preflight.preflight), ("backup", preflight.backup), ("dedup", dedup.dedup),
                     ("reclaim", dedup.reclaim), ("constraints", constraints.constraints),
                     ("quality_gate", gates.quality_gate), ("finish", ledger.finish)):
        t0 = time.monotonic()
        out[name] = fn(conn_id, run)
        out[name + "_s"] = time.monotonic() - t0
    return out


def naive_plan(dsn: str) -> dict:
    """The seed's 010_deduplicate_child_tables.sql, done plainly, writers stopped."""
    import psycopg

    from dupguard.breezeway.config import CHILD_TABLES

    steps = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for t in CHILD_TABLES:
            k1, k2 = t.natural_key
            tb = f"breezeway.{t.name}"
            for step, stmt in (
                ("backup", f"CREATE TABLE breezeway.{t.name}_backup AS SELECT * FROM {tb}"),
                ("delete", f"DELETE FROM {tb} WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY"
                           f" {k1}, {k2} ORDER BY created_at NULLS LAST, id) rn FROM {tb} WHERE {k1} IS NOT NULL AND"
                           f" {k2} IS NOT NULL) r WHERE rn > 1)"),
                ("constraint", f"ALTER TABLE {tb} ADD CONSTRAINT {t.constraint} UNIQUE ({k1}, {k2})"),
                ("vacuum_full", f"VACUUM FULL ANALYZE {tb}"),
            ):
                t0 = time.monotonic()
                conn.execute(stmt)
                steps[step] = steps.get(step, 0.0) + time.monotonic() - t0
    return steps


def sizes(dsn: str) -> tuple[int, int]:
    """(final size of the six tables, size of a fresh load of the same rows, indexes built after)."""
    import psycopg

    from dupguard.breezeway.config import CHILD_TABLES

    final = fresh = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for t in CHILD_TABLES:
            k1, k2 = t.natural_key
            final += conn.execute(f"SELECT pg_total_relation_size('breezeway.{t.name}')").fetchone()[0]
            conn.execute(f"CREATE TABLE public.fresh AS SELECT * FROM breezeway.{t.name} ORDER BY id")
            conn.execute(f"ALTER TABLE public.fresh ADD PRIMARY KEY (id), ADD UNIQUE ({k1}, {k2})")
            fresh += conn.execute("SELECT pg_total_relation_size('public.fresh')").fetchone()[0]
            conn.execute("DROP TABLE public.fresh")
    return final, fresh


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    import psycopg

    from tools.demo_breezeway import create_schema, load, shape

    keys = {t: k for t, (k, _) in shape(SCALE).items()}
    with pg_cluster(databases=("bw_template",), autovacuum="on") as cluster:
        t0 = time.monotonic()
        with psycopg.connect(cluster.dsn("bw_template")) as conn:
            create_schema(conn, audit_trigger=False)
            load(conn, SCALE)
            conn.execute("ANALYZE")
            conn.commit()
            rows = conn.execute("SELECT (SELECT count(*) FROM breezeway.property_photos) + (SELECT count(*) FROM "
                                "breezeway.task_requirements) + (SELECT count(*) FROM breezeway.task_comments) + "
                                "(SELECT count(*) FROM breezeway.task_assignments) + (SELECT count(*) FROM "
                                "breezeway.task_photos) + (SELECT count(*) FROM breezeway.reservation_guests)"
                                ).fetchone()[0]
        print(f"loaded {rows:,} rows, {sum(keys.values()):,} keys at scale {SCALE} in {time.monotonic() - t0:.0f} s",
              flush=True)
        admin = psycopg.connect(cluster.dsn("postgres"), autocommit=True)
        results = {}
        for plan in ("ours", "naive"):
            admin.execute(f"CREATE DATABASE run_{plan} TEMPLATE bw_template")
            dsn = cluster.dsn(f"run_{plan}")
            _use(cluster, f"run_{plan}")
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("CHECKPOINT")
                size0 = c.execute("SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relnamespace = "
                                  "'breezeway'::regnamespace AND relkind = 'r'").fetchone()[0]
            sampler = DiskSampler(dsn)
            sampler.start()
            time.sleep(0.3)
            writer = Writer(dsn, keys)
            if plan == "ours":
                writer.start()
                time.sleep(2)
            t0 = time.monotonic()
            detail = our_migration() if plan == "ours" else naive_plan(dsn)
            wall = time.monotonic() - t0
            if plan == "ours":
                time.sleep(2)
                writer.stop()
            extra_db, extra_wal = sampler.stop()
            with psycopg.connect(dsn, autocommit=True) as c:
                removed_bytes = c.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(oid)), 0) FROM pg_class WHERE relnamespace = "
                    "to_regnamespace('dupguard') AND relname LIKE 'bw_backup_%%'").fetchone()[0]
                dups = c.execute("SELECT count(*) FROM breezeway.task_requirements GROUP BY task_pk, requirement_id "
                                 "HAVING count(*) > 1").fetchall()
            final, fresh = sizes(dsn)
            results[plan] = dict(wall=wall, detail=detail, writer=writer, extra_db=extra_db, extra_wal=extra_wal,
                                 final=final, fresh=fresh, size0=size0, removed_bytes=removed_bytes, dups=len(dups))
            print(f"{plan}: {wall:.1f} s", flush=True)
            admin.execute(f"DROP DATABASE run_{plan} WITH (FORCE)")

    ours, naive = results["ours"], results["naive"]
    removed = int(ours["removed_bytes"])
    w = ours["writer"]
    lat = w.latencies
    detail = ours["detail"]
    lock_ms = max(detail["reclaim"]["max_exclusive_lock_ms"],
                  *[v.get("exclusive_lock_ms", 0) for v in detail["constraints"]["tables"].values()],
                  *[v.get("exclusive_lock_ms", 0) for v in detail["dedup"]["tables"].values()])
    mb = lambda b: b / 2**20  # noqa: E731
    print_table(f"Breezeway child-table dedup at 1/{round(1 / SCALE)} scale ({rows:,} rows; writer {WRITER_RATE} rows/s, "
                f"{DUP_SHARE:.0%} duplicates)",
                ["plan", "wall s", "writer downtime s", "insert p99 ms", "insert max ms", "writer errors",
                 "peak extra MB", "(WAL MB)", "final MB", "fresh-load MB", "dup keys left"],
                [["ours (online)", ours["wall"], max(lat) if lat else 0.0, pct(lat, 0.99) * 1000, max(lat) * 1000,
                  len(w.errors), mb(ours["extra_db"]), mb(ours["extra_wal"]), mb(ours["final"]), mb(ours["fresh"]),
                  ours["dups"]],
                 ["naive (seed plan)", naive["wall"], naive["wall"], "-", "-", "-", mb(naive["extra_db"]),
                  mb(naive["extra_wal"]), mb(naive["final"]), mb(naive["fresh"]), naive["dups"]]])
    print_table("Our steps (seconds) and locks",
                ["preflight", "backup", "dedup", "reclaim", "constraints", "quality_gate", "finish",
                 "longest exclusive lock ms", "writer rows inserted", "writer p50 ms"],
                [[detail["preflight_s"], detail["backup_s"], detail["dedup_s"], detail["reclaim_s"],
                  detail["constraints_s"], detail["quality_gate_s"], detail["finish_s"], lock_ms, w.inserted,
                  statistics.median(lat) * 1000 if lat else 0.0]])
    print_table("Naive steps (seconds, summed over the six tables)", list(naive["detail"]),
                [list(naive["detail"].values())])
    targets = [
        ("writer downtime >= 5x shorter than naive", f"{max(lat):.2f} s vs {naive['wall']:.1f} s",
         naive["wall"] >= 5 * max(lat)),
        ("no insert waits more than 2 s", f"max {max(lat) * 1000:.0f} ms, {len(w.errors)} errors",
         max(lat) <= 2.0 and not w.errors),
        ("wall time <= 2x naive", f"{ours['wall']:.1f} s vs {naive['wall']:.1f} s", ours["wall"] <= 2 * naive["wall"]),
        ("peak extra disk <= removed rows + 10%", f"{mb(ours['extra_db']):.0f} MB vs {mb(removed):.0f} MB removed",
         ours["extra_db"] <= 1.1 * removed),
        ("final size within 10% of a fresh load", f"{mb(ours['final']):.1f} MB vs {mb(ours['fresh']):.1f} MB",
         ours["final"] <= 1.1 * ours["fresh"]),
    ]
    print_table("Targets", ["target", "measured", "met"], [[a, b, "yes" if c else "NO"] for a, b, c in targets])
    if w.errors:
        print("writer errors (first 5):", w.errors[:5])
