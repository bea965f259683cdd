"""The chaos suite: seeded kills and restarts against the real engines.

``CHAOS_SEED`` (default 14) seeds every random moment; ``CHAOS_TRIALS`` (default 1 in ``make test``, ``make
chaos``: 10) is the number of trials of each seeded kill: killed publishes, killed migrations,
killed per-minute deletes (``test_scheduler_kills`` kills three tasks under one real scheduler,
once). Each test records what it did (kill moments, what the database showed, what the recovery
did) in ``figures``; the session writes them to ``tests/output/chaos_<seed>.json`` and prints a
summary line per trial.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

SEED = int(os.environ.get("CHAOS_SEED") or 14)
TRIALS = int(os.environ.get("CHAOS_TRIALS") or 1)
PG_CONF = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}   # as tests/conftest.py
_FIGURES: list[dict] = []


@pytest.fixture()
def rng(request) -> random.Random:
    """A generator seeded by CHAOS_SEED and the test's name (tests do not shift each other's moments)."""
    return random.Random(f"{SEED}:{request.node.name}")


@pytest.fixture(scope="session")
def figures():
    yield _FIGURES
    out = Path(__file__).resolve().parents[1] / "output" / f"chaos_{SEED}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"seed": SEED, "trials": TRIALS, "figures": _FIGURES}, indent=2, default=str))
    for f in _FIGURES:
        print("chaos |", " | ".join(f"{k}={v}" for k, v in f.items()))
