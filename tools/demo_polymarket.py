"""Demo data for the positions DAGs (embedded ClickHouse at ``.local/chdb``, database ``polymarket``).

``setup()`` (idempotent) loads three weeks of fills of ~3,000 wallets ending at the current
hour, resolutions (both JSON forms, some deleted or empty) and a pre-existing unified
table in production's unpartitioned shape that has problems to repair: a fifth of the open
positions missing (the original plan's quiet wallets), 2% of the rows duplicated (open and
resolved). ``background()`` keeps the fills flowing (a few hundred every 5 minutes) so the
freshness checks stay green while the demo is up.

The source tables and the fill generator (``tools/sql/positions/``) are shared with the
tests and the benchmark: :func:`create_sources`, :func:`generate_fills`, :func:`redeliver_fills`.

    python -m tools.demo_polymarket setup | trickle
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "sql" / "positions"
WALLETS = 3_000
CONDITIONS = 400
FILLS = 200_000


def tool_sql(name: str, t) -> str:
    """``tools/sql/positions/<name>.sql`` rendered for the tables ``t``."""
    from dupguard.positions.tables import render

    return render((SQL_DIR / f"{name}.sql").read_text(), t)


def create_sources(client, t) -> None:
    """The fills and resolutions tables (production already has them)."""
    for name in ("create_fills", "create_resolutions"):
        client.command(tool_sql(name, t))


def generate_fills(client, t, *, seed: int, start: datetime, span_seconds: int, n_wallets: int, n_conditions: int,
                   n_fills: int) -> None:
    """``n_fills`` synthetic fills over ``span_seconds`` from ``start`` (see generate_fills.sql)."""
    client.command(tool_sql("generate_fills", t), parameters={
        "seed": seed, "start": start, "span_seconds": span_seconds, "n_wallets": n_wallets,
        "n_conditions": n_conditions, "n_fills": n_fills})


def redeliver_fills(client, t) -> None:
    """1% of the fills delivered twice, with a higher ``_version``."""
    client.command(f"INSERT INTO {t.q(t.fills)} SELECT * REPLACE (_version + 1 AS _version) FROM {t.q(t.fills)} "
                   "WHERE cityHash64(fill_id) % 100 = 0")


def _client():
    from dupguard.common.connections import clickhouse_client
    from dupguard.common.settings import CLICKHOUSE_CONN_ID

    return clickhouse_client(CLICKHOUSE_CONN_ID)


def _tables():
    from dupguard.common.settings import CLICKHOUSE_CONN_ID
    from dupguard.positions.tables import tables_for

    return tables_for(CLICKHOUSE_CONN_ID)


def _hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0, tzinfo=None)


def setup() -> None:
    from dupguard.positions import tables

    t = _tables()
    with _client() as client:
        if tables.exists(client, t.db, t.fills) and tables.one(client, f"SELECT count() AS n FROM {t.q(t.fills)}")["n"]:
            print(f"polymarket demo data already loaded in {t.db}")
            return
        create_sources(client, t)
        end = _hour()
        start = end - timedelta(days=21)
        generate_fills(client, t, seed=7, start=start, span_seconds=int((end - start).total_seconds()),
                       n_wallets=WALLETS, n_conditions=CONDITIONS, n_fills=FILLS)
        redeliver_fills(client, t)
        # 30% of the markets resolved a week ago; a few resolutions deleted or empty
        client.command(tool_sql("generate_resolutions", t),
                       parameters={"start": end - timedelta(days=7), "n_conditions": CONDITIONS})
        _seed_unified(client, t)
        print(f"polymarket demo data loaded in {t.db}: {tables.count_rows(client, t, t.unified)}")


def _seed_unified(client, t) -> None:
    """Production-shaped unified table: all resolved rows, 80% of the open ones, 2% duplicated."""
    from dupguard.positions import build, tables

    tables.create_unified(client, t, partitioned=False)
    u, stg = t.q(t.unified), t.q(t.staging)
    # mark every resolved market as "published open" so the build computes its resolved rows too
    # (the other columns take their defaults: resolved_at NULL = open)
    client.command(f"INSERT INTO {u} (tx_hash, condition_id, entry_time) "
                   f"SELECT '0xseed', condition_id, resolved_at FROM {t.q(t.resolutions)}")
    build.build(client, t)
    client.command(f"TRUNCATE TABLE {u}")
    client.command(f"INSERT INTO {u} SELECT * FROM {stg} WHERE resolved_at IS NOT NULL "
                   "OR cityHash64(wallet) % 5 != 0")                 # a fifth of the wallets' open lots missing
    client.command(f"INSERT INTO {u} SELECT * FROM {stg} WHERE cityHash64(tx_hash, condition_id) % 50 = 0 "
                   "AND (resolved_at IS NOT NULL OR cityHash64(wallet) % 5 != 0)")   # 2% twice
    client.command(f"DROP TABLE {stg}")


def trickle(interval_s: int = 300, fills_per_tick: int = 300) -> None:
    """Append fresh fills every ``interval_s`` seconds (the demo's live feed)."""
    while True:
        time.sleep(interval_s)
        try:
            with _client() as client:
                end = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
                generate_fills(client, _tables(), seed=int(end.timestamp()), start=end - timedelta(seconds=interval_s),
                               span_seconds=interval_s, n_wallets=WALLETS, n_conditions=CONDITIONS,
                               n_fills=fills_per_tick)
        except Exception as exc:  # noqa: BLE001 - the feed keeps going; the DAG's freshness check reports gaps
            print(f"polymarket trickle: {exc}", file=sys.stderr, flush=True)


def background() -> list[tuple[str, str]]:
    return [("polymarket-fills", "python -m tools.demo_polymarket trickle")]


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "setup"
    {"setup": setup, "trickle": trickle}[action]()
