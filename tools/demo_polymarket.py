"""Demo data for the positions DAGs (embedded ClickHouse at ``.local/chdb``, database ``polymarket``).

``setup()`` (idempotent) loads three weeks of fills of ~3,000 wallets ending at the current
hour, resolutions (both JSON forms, some deleted or empty) and a pre-existing unified
table in production's unpartitioned shape that has problems to repair: a fifth of the open
positions missing (the original plan's quiet wallets), 2% of the rows duplicated (open and
resolved). ``background()`` keeps the fills flowing (a few hundred every 5 minutes) so the
freshness checks stay green while the demo is up.

    python -m tools.demo_polymarket setup | trickle
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone

WALLETS = 3_000
CONDITIONS = 400
FILLS = 200_000


def _client():
    from dupguard.connections import clickhouse_client
    from dupguard.settings import CLICKHOUSE_CONN_ID

    return clickhouse_client(CLICKHOUSE_CONN_ID)


def _hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0, tzinfo=None)


def setup() -> None:
    from dupguard import positions
    from dupguard.settings import CLICKHOUSE_CONN_ID

    with _client() as client:
        t = positions.tables_for(CLICKHOUSE_CONN_ID)
        db = t.db
        cols, _ = positions.describe(client, db, positions.FILLS_TABLE)
        if cols and client.query(f"SELECT count() FROM {positions.qualified(db, positions.FILLS_TABLE)}").result_rows[0][0]:
            print(f"polymarket demo data already loaded in {db}")
            return
        client.command(positions.sql("create_fills"), parameters=t.params())
        client.command(positions.sql("create_resolutions"), parameters=t.params())
        end = _hour()
        start = end - timedelta(days=21)
        client.command(positions.sql("generate_fills"), parameters=t.params(
            seed=7, start=start.strftime("%Y-%m-%d %H:%M:%S"), span_seconds=int((end - start).total_seconds()),
            n_wallets=WALLETS, n_conditions=CONDITIONS, n_fills=FILLS))
        fills = positions.qualified(db, positions.FILLS_TABLE)
        client.command(f"INSERT INTO {fills} SELECT * REPLACE (_version + 1 AS _version) FROM {fills} "
                       "WHERE cityHash64(fill_id) % 100 = 0")   # 1% of the fills delivered twice
        # 30% of the markets resolved a week ago; a few resolutions deleted or empty
        res = positions.qualified(db, positions.RESOLUTIONS_TABLE)
        resolved_at = (end - timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S")
        client.command(
            f"INSERT INTO {res} SELECT concat('0xc', leftPad(toString(number), 8, '0')), "
            "multiIf(number % 40 = 3, '[]', number % 2 = 0, '[1,0]', '[\"0\",\"1\"]'), 1, "
            f"toDateTime('{resolved_at}') + number * 60, 1, '0xres', toUInt8(number % 40 = 7) "
            f"FROM numbers({CONDITIONS}) WHERE number % 10 < 3")
        _seed_unified(client, t)
        print(f"polymarket demo data loaded in {db}: {positions.count_rows(client, t, t.unified)}")


def _seed_unified(client, t) -> None:
    """Production-shaped unified table: all resolved rows, 80% of the open ones, 2% duplicated."""
    from dupguard import positions

    client.command(positions.sql("create_unified_unpartitioned"), parameters=t.params())
    u, res = positions.qualified(t.db, t.unified), positions.qualified(t.db, t.resolutions)
    # mark every resolved market as "published open" so the build computes its resolved rows too
    client.command(f"INSERT INTO {u} (tx_hash, wallet, condition_id, outcome_index, entry_time, resolved_at, cost_usd, "
                   "tokens, tokens_sold_early, tokens_held, exit_value, pnl_usd, roi, pct_sold_early, is_maker, "
                   "is_short, is_closed) SELECT '0xseed', '', condition_id, 0, resolved_at, NULL, 0, 0, 0, 0, 0, 0, 0, "
                   f"0, 0, 0, 0 FROM {res}")
    positions.build(client, t)
    stg = positions.qualified(t.db, t.staging)
    client.command(f"TRUNCATE TABLE {u}")
    client.command(f"INSERT INTO {u} SELECT * FROM {stg} WHERE resolved_at IS NOT NULL "
                   "OR cityHash64(wallet) % 5 != 0")                 # a fifth of the wallets' open lots missing
    client.command(f"INSERT INTO {u} SELECT * FROM {stg} WHERE cityHash64(tx_hash, condition_id) % 50 = 0 "
                   "AND (resolved_at IS NOT NULL OR cityHash64(wallet) % 5 != 0)")   # 2% twice
    client.command(f"DROP TABLE {stg}")


def trickle(interval_s: int = 300, fills_per_tick: int = 300) -> None:
    """Append fresh fills every ``interval_s`` seconds (the demo's live feed)."""
    from dupguard import positions
    from dupguard.settings import CLICKHOUSE_CONN_ID

    while True:
        time.sleep(interval_s)
        try:
            with _client() as client:
                t = positions.tables_for(CLICKHOUSE_CONN_ID)
                end = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
                client.command(positions.sql("generate_fills"), parameters=t.params(
                    seed=int(end.timestamp()), start=(end - timedelta(seconds=interval_s)).strftime("%Y-%m-%d %H:%M:%S"),
                    span_seconds=interval_s, n_wallets=WALLETS, n_conditions=CONDITIONS, n_fills=fills_per_tick))
        except Exception as exc:  # noqa: BLE001 - the feed keeps going; the DAG's freshness check reports gaps
            print(f"polymarket trickle: {exc}", file=sys.stderr, flush=True)


def background() -> list[tuple[str, str]]:
    return [("polymarket-fills", "python -m tools.demo_polymarket trickle")]


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "setup"
    {"setup": setup, "trickle": trickle}[action]()
