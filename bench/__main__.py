"""Run every benchmark under bench/ (modules named bench_*.py, each with a ``main()``).

    make bench                      # all of them but the long ones below
    make bench BENCH_ARGS=telemetry # only bench_telemetry.py
    make bench BENCH_ARGS=perminute # a long one: runs only when named
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Benchmarks that run for ten minutes or more: only when named.
ONLY_WHEN_NAMED = {"bench_perminute"}


def main(argv: list[str]) -> int:
    wanted = set(argv)
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if wanted:
        names = [n for n in names if n.removeprefix("bench_") in wanted or n in wanted]
    else:
        names = [n for n in names if n not in ONLY_WHEN_NAMED]
    if not names:
        print("no benchmark found under bench/")
        return 1
    failed = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # keep running the others, report at the end
            failed += 1
            import traceback

            traceback.print_exc()
            print(f"{name} FAILED: {exc}")
        print(f"=== {name} done in {time.monotonic() - t0:.0f} s ===", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
