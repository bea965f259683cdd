"""Fixtures for the positions tests: one ClickHouse (chDB) database per test.

Never keep a client open while a DAG runs (the embedded engine is locked per process):
open one with ``ch()`` for setup and for the checks after the run.
"""
from __future__ import annotations

import contextlib
import itertools
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from dupguard.common.connections import clickhouse_client
from dupguard.common.settings import CLICKHOUSE_CONN_ID
from dupguard.positions import config, tables
from tools.demo_polymarket import create_sources

FILL_COLUMNS = ("fill_id", "event_time", "block_number", "tx_hash", "wallet", "condition_id", "outcome_index",
                "tokens_delta", "usdc_delta", "source", "is_self_fill", "is_maker", "_version")
RES_COLUMNS = ("condition_id", "payout_numerators", "payout_denominator", "resolved_at", "block_number", "tx_hash",
               "is_deleted")
T0 = datetime(2025, 3, 1, 0, 0, 0)
AS_OF = datetime(2025, 3, 10, 12, 0, 0)  # logical date of the DAG runs in these tests
_ids = itertools.count(1)


@contextlib.contextmanager
def ch():
    with clickhouse_client(CLICKHOUSE_CONN_ID) as client:
        yield client


def fill(wallet: str, condition_id: str, outcome_index: int, tokens: float, usdc: float, minute: int, *,
         tx: str | None = None, fill_id: str | None = None, block: int | None = None, is_maker: int = 0,
         version: int = 1) -> dict[str, Any]:
    """A buy when ``tokens`` > 0 (pass ``usdc`` < 0), a sell when ``tokens`` < 0 (``usdc`` > 0)."""
    n = next(_ids)
    return {"fill_id": fill_id or f"f{n:08d}", "event_time": T0 + timedelta(minutes=minute),
            "block_number": block if block is not None else minute, "tx_hash": tx or f"tx{n:08d}",
            "wallet": wallet, "condition_id": condition_id, "outcome_index": outcome_index,
            "tokens_delta": float(tokens), "usdc_delta": float(usdc), "source": "clob", "is_self_fill": 0,
            "is_maker": is_maker, "_version": version}


def resolution(condition_id: str, numerators: str, *, minute: int = 60 * 24 * 5, is_deleted: int = 0) -> dict:
    return {"condition_id": condition_id, "payout_numerators": numerators, "payout_denominator": 1,
            "resolved_at": T0 + timedelta(minutes=minute), "block_number": 1, "tx_hash": "0xres",
            "is_deleted": is_deleted}


class Db:
    """One isolated database with the source tables."""

    def __init__(self, name: str):
        self.name = name
        self.tables = tables.Tables(db=name)

    def insert_fills(self, client, rows: list[dict]) -> None:
        client.insert(config.FILLS_TABLE, [[r[c] for c in FILL_COLUMNS] for r in rows],
                      column_names=list(FILL_COLUMNS), database=self.name)

    def insert_resolutions(self, client, rows: list[dict]) -> None:
        client.insert(config.RESOLUTIONS_TABLE, [[r[c] for c in RES_COLUMNS] for r in rows],
                      column_names=list(RES_COLUMNS), database=self.name)

    def create_unified(self, client, *, partitioned: bool) -> None:
        tables.create_unified(client, self.tables, partitioned=partitioned)

    def insert_unified(self, client, rows: list[dict]) -> None:
        cols = list(config.UNIFIED_COLUMNS)
        client.insert(config.UNIFIED_TABLE, [[r[c] for c in cols] for r in rows], column_names=cols,
                      database=self.name)

    def rows(self, client, table: str | None = None) -> list[dict]:
        df = client.query_df(f"SELECT * FROM {self.tables.q(table or config.UNIFIED_TABLE)} "
                             "ORDER BY wallet, condition_id, outcome_index, tx_hash, resolved_at")
        out = []
        for r in df.to_dict("records"):
            ra = r["resolved_at"]
            r["resolved_at"] = None if ra is None or ra != ra else ra.to_pydatetime().replace(tzinfo=None)
            r["entry_time"] = r["entry_time"].to_pydatetime().replace(tzinfo=None)
            out.append(r)
        return out

    def conf(self, **extra: Any) -> dict[str, Any]:
        return {"database": self.name, "min_unresolved_rows": 1, **extra}


@pytest.fixture()
def db(request) -> Db:
    name = "pos_" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    db = Db(name)
    with ch() as client:
        client.command(f"DROP DATABASE IF EXISTS {tables.ident(name)}")
        client.command(f"CREATE DATABASE {tables.ident(name)}")
        create_sources(client, db.tables)
    yield db
    with ch() as client:
        client.command(f"DROP DATABASE IF EXISTS {tables.ident(name)}")

