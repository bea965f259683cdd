"""Benchmark of the unified-positions rebuild (embedded ClickHouse, chDB).

    make bench BENCH_ARGS=positions

Synthetic fills at 1M, 5M and 20M rows (~100k wallets at the top, skewed, 1% delivered
twice, 10% of the conditions resolved since published as open so every fill is in scope).
Each variant runs in its own subprocess so its peak RSS (ru_maxrss) is its own:

* exact FIFO (``include/sql/positions/build_positions.sql``, what the DAG runs);
* the original plan's approximate SQL (``bench/sql/positions/approx_positions.sql``) and how many lots
  it gets wrong (tokens sold or proceeds off by more than 1e-6 against exact FIFO);
* a row-by-row Python FIFO (``tests/positions/fifo_reference.py``) at 1M and 5M (its time
  counts only the FIFO loop, not reading the fills, which favours it);
* publish at 20M: ``REPLACE PARTITION`` against ``DELETE`` mutation + insert.

Medians of ``REPEAT`` runs (the machine is shared). ``DUPGUARD_BENCH_POSITIONS_SIZES``
(e.g. ``1000000,5000000``) shortens a run.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import ROOT, print_table

SIZES = [int(x) for x in os.environ.get("DUPGUARD_BENCH_POSITIONS_SIZES", "1000000,5000000,20000000").split(",")]
PYTHON_SIZES = {1_000_000, 5_000_000}
REPEAT = {1_000_000: 3, 5_000_000: 3, 20_000_000: 3}
TARGET_20M_SECONDS = 20.0
TARGET_20M_RSS_GB = 3.0
APPROX_SQL = ROOT / "bench" / "sql" / "positions" / "approx_positions.sql"


# --- worker side (runs in a subprocess) -------------------------------------
def _client(path: str):
    import clickhouse_connect

    return clickhouse_connect.get_client(interface="chdb", path=path)


def _tables(db: str, **names: str):
    from dupguard.positions.tables import Tables

    return Tables(db=db, **names)


def _generate(client, db: str, n: int) -> dict:
    from dupguard.positions import tables
    from tools import demo_polymarket

    t = _tables(db)
    client.command(f"DROP DATABASE IF EXISTS {tables.ident(db)}")
    client.command(f"CREATE DATABASE {tables.ident(db)}")
    demo_polymarket.create_sources(client, t)
    tables.create_unified(client, t)
    conditions = 20_000
    demo_polymarket.generate_fills(client, t, seed=42, start=datetime(2025, 1, 1), span_seconds=30 * 86400,
                                   n_wallets=100_000, n_conditions=conditions, n_fills=n)
    demo_polymarket.redeliver_fills(client, t)
    # 10% of the conditions resolved since they were published as open (so every fill is in scope)
    r, u = t.q(t.resolutions), t.q(t.unified)
    client.command(f"INSERT INTO {r} SELECT concat('0xc', leftPad(toString(number * 10), 8, '0')), "
                   "if(number % 2 = 0, '[1,0]', '[\"0\",\"1\"]'), 1, toDateTime('2025-02-01 00:00:00'), 1, '0x', 0 "
                   f"FROM numbers({conditions // 10})")
    # published as open (the other columns take their defaults: resolved_at NULL = open)
    client.command(f"INSERT INTO {u} (tx_hash, wallet, condition_id, entry_time, cost_usd, tokens, tokens_held) "
                   f"SELECT '0xold', 'w', condition_id, resolved_at, 1, 1, 1 FROM {r}")
    rows = client.query(f"SELECT count(), uniqExact(wallet), uniqExact(wallet, condition_id, outcome_index) "
                        f"FROM {t.q(t.fills)}").result_rows[0]
    return {"fill_rows": int(rows[0]), "wallets": int(rows[1]), "keys": int(rows[2])}


def _exact(client, db: str) -> dict:
    from dupguard.positions import build

    out = build.build(client, _tables(db))
    return {"lots": out["staged_rows"], "resolved_lots": out["staged_resolved"]}


def _approx(client, db: str) -> dict:
    from dupguard.positions import tables

    t = _tables(db)
    name = t.unified + "__approx"
    tables.create_like_unified(client, t, name)
    client.command(tables.render(APPROX_SQL.read_text(), t, staging=t.q(name)))
    return {"lots": tables.count_rows(client, t, name)["total"]}


def _compare(client, db: str) -> dict:
    t = _tables(db)
    e, a = t.q(t.staging), t.q(t.unified + "__approx")
    row = client.query(
        f"SELECT count(), countIf(abs(e.tokens_sold_early - a.tokens_sold_early) > 1e-6 "
        f"OR abs(e.exit_value - a.exit_value) > 1e-6 * greatest(1, abs(e.exit_value))) "
        f"FROM {e} AS e INNER JOIN {a} AS a USING (tx_hash, wallet, condition_id, outcome_index)").result_rows[0]
    return {"lots_compared": int(row[0]), "lots_differing": int(row[1])}


def _python(client, db: str) -> dict:
    from tests.positions import fifo_reference

    t = _tables(db)
    cols = fifo_reference.FILL_COLS
    fills = [dict(zip(cols, r)) for r in client.query(f"SELECT {', '.join(cols)} FROM {t.q(t.fills)}").result_rows]
    res_cols = ("condition_id", "payout_numerators", "resolved_at", "is_deleted")
    res = [dict(zip(res_cols, r)) for r in client.query(
        f"SELECT {', '.join(res_cols)} FROM {t.q(t.resolutions)}").result_rows]
    t0 = time.perf_counter()
    lots = fifo_reference.positions(fills, res)
    return {"lots": len(lots), "fifo_seconds": time.perf_counter() - t0}


def _publish(client, db: str, partitioned: bool) -> dict:
    """A live table holding the open lots plus 2x as many resolved rows, then one publish."""
    from dupguard.positions import config, publish, tables

    t = _tables(db, unified="pub_" + ("part" if partitioned else "flat"))
    tables.create_unified(client, t, partitioned=partitioned)
    src = t.q(config.UNIFIED_TABLE + config.STAGING_SUFFIX)
    dst = t.q(t.unified)
    client.command(f"INSERT INTO {dst} SELECT * FROM {src}")
    cols = t.fragments()["columns"]
    resolved = ", ".join({"tx_hash": "concat(tx_hash, '_r', toString(k))",
                          "resolved_at": "toNullable(toDateTime('2025-02-01 00:00:00'))"}.get(c, c)
                         for c in config.UNIFIED_COLUMNS)
    client.command(f"INSERT INTO {dst} ({cols}) SELECT {resolved} FROM {src} ARRAY JOIN [1, 2] AS k "
                   "WHERE resolved_at IS NULL")
    tables.create_like_unified(client, t, t.staging)
    client.command(f"INSERT INTO {t.q(t.staging)} SELECT * FROM {src}")
    out = publish.publish(client, t, mutation_timeout_s=600)
    return {"rows": out["after"]["total"], "swap_seconds": out["swap_seconds"], "publish_seconds": out["seconds"]}


def worker(argv: list[str]) -> None:
    variant, path, db = argv[:3]
    client = _client(path)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if variant == "generate":
        out = _generate(client, db, int(argv[3]))
    elif variant == "exact":
        out = _exact(client, db)
    elif variant == "approx":
        out = _approx(client, db)
    elif variant == "compare":
        out = _compare(client, db)
    elif variant == "python":
        out = _python(client, db)
    elif variant in ("publish_partitioned", "publish_mutation"):
        out = _publish(client, db, variant == "publish_partitioned")
    else:
        raise SystemExit(f"unknown variant {variant}")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=(ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
               peak_rss_gb=ru.ru_maxrss / 1024 / 1024)
    client.close()
    print("RESULT " + json.dumps(out), flush=True)


# --- driver side ------------------------------------------------------------
def _run(variant: str, path: Path, db: str, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    proc = subprocess.run([sys.executable, "-m", "bench.bench_positions", "worker", variant, str(path), db, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{variant} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _median(variant: str, path: Path, db: str, repeat: int) -> dict:
    runs = [_run(variant, path, db) for _ in range(repeat)]
    med = dict(runs[-1])
    for k in ("seconds", "cpu_seconds", "peak_rss_gb", "fifo_seconds"):
        if k in med:
            med[k] = statistics.median(r[k] for r in runs)
    med["runs"] = repeat
    return med


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="dupguard-bench-positions-"))
    path = base / "chdb"
    rows, checks, publish_rows = [], [], []
    try:
        for n in SIZES:
            db = f"bench_{n // 1_000_000}m"
            gen = _run("generate", path, db, str(n))
            print(f"generated {n:,} fills (+1% re-delivered): {gen['wallets']:,} wallets, {gen['keys']:,} keys "
                  f"in {gen['seconds']:.1f}s", flush=True)
            ex = _median("exact", path, db, REPEAT.get(n, 1))
            rows.append([f"{n / 1e6:g}M", "exact FIFO (arrays, DAG)", ex["seconds"], ex["cpu_seconds"],
                         n / ex["seconds"] / 1e6, ex["peak_rss_gb"], ex["lots"], ex["runs"]])
            ap = _median("approx", path, db, 1 if n >= 20_000_000 else 2)
            cmp_ = _run("compare", path, db)
            rows.append([f"{n / 1e6:g}M", "original approximate SQL", ap["seconds"], ap["cpu_seconds"],
                         n / ap["seconds"] / 1e6, ap["peak_rss_gb"], ap["lots"], ap["runs"]])
            checks.append([f"{n / 1e6:g}M", "exact / approximate time", ex["seconds"] / ap["seconds"], "<= 0.75",
                           "met" if ex["seconds"] <= 0.75 * ap["seconds"] else "NOT met"])
            checks.append([f"{n / 1e6:g}M", "approximate lots wrong", cmp_["lots_differing"],
                           f"of {cmp_['lots_compared']:,} ({100 * cmp_['lots_differing'] / max(1, cmp_['lots_compared']):.1f}%)", ""])
            if n in PYTHON_SIZES:
                py = _run("python", path, db)
                rows.append([f"{n / 1e6:g}M", "Python row-by-row FIFO", py["fifo_seconds"], py["cpu_seconds"],
                             n / py["fifo_seconds"] / 1e6, py["peak_rss_gb"], py["lots"], 1])
                ratio = py["fifo_seconds"] / ex["seconds"]
                checks.append([f"{n / 1e6:g}M", "exact throughput / Python", ratio, ">= 5 (at 5M)",
                               ("met" if ratio >= 5 else "NOT met") if n == 5_000_000 else ""])
            if n == 20_000_000:
                checks.append(["20M", "exact FIFO wall time (s)", ex["seconds"], f"< {TARGET_20M_SECONDS:g}",
                               "met" if ex["seconds"] < TARGET_20M_SECONDS else "NOT met"])
                checks.append(["20M", "exact FIFO peak RSS (GB)", ex["peak_rss_gb"], f"< {TARGET_20M_RSS_GB:g}",
                               "met" if ex["peak_rss_gb"] < TARGET_20M_RSS_GB else "NOT met"])
            if n == max(SIZES):
                _run("exact", path, db)   # staging as the DAG leaves it, for the publish runs
                for variant, label in (("publish_partitioned", "REPLACE PARTITION (atomic)"),
                                       ("publish_mutation", "DELETE mutation + insert")):
                    p = _run(variant, path, db)
                    publish_rows.append([f"{n / 1e6:g}M", label, p["rows"], p["publish_seconds"], p["swap_seconds"],
                                         "none (atomic swap)" if variant == "publish_partitioned"
                                         else f"~{p['swap_seconds']:.1f}s without open rows"])
            print_table("positions rebuild so far (fills; medians; wall time on a shared 2-core machine)",
                        ["fills", "variant", "wall s", "cpu s", "M fills/s", "peak RSS GB", "lots", "runs"], rows)
        print_table("targets", ["fills", "check", "value", "target", "status"], checks)
        if publish_rows:
            print_table("publish (open part of the rebuild; live table holds 2x as many resolved rows)",
                        ["fills", "publish", "rows after", "total s", "swap s", "readers see a gap"], publish_rows)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
        worker(sys.argv[2:])
    else:
        main()
