"""Shared benchmark helpers: a throw-away PostgreSQL cluster, timing, printed tables."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))

from tools.embedded_pg import Cluster  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def pg_cluster(databases: Sequence[str] = ("bench",), **conf: str) -> Iterator[Cluster]:
    """A temporary PostgreSQL cluster (durability relaxed only where ``conf`` says so)."""
    base = Path(tempfile.mkdtemp(prefix="dupguard-bench-"))
    os.chmod(base, 0o755)
    c = Cluster(base / "pg", free_port())
    c.start(extra_conf={"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
                        "maintenance_work_mem": "512MB", "work_mem": "64MB", **conf})
    c.wait_ready()
    for db in databases:
        c.create_database(db)
    try:
        yield c
    finally:
        c.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def timed(fn: Callable[[], object], repeat: int = 5) -> tuple[float, object]:
    """Median wall time in seconds of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    sys.stdout.flush()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
