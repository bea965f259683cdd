"""``python -m tests.chaos.publish_worker <database> <token>``: one publish of the staged open
part, in its own process (the chaos test SIGKILLs its process group at a seeded moment)."""
from __future__ import annotations

import sys
import time

from dupguard.common.connections import clickhouse_client
from dupguard.common.settings import CLICKHOUSE_CONN_ID
from dupguard.positions import publish, tables


def main(database: str, token: str) -> None:
    with clickhouse_client(CLICKHOUSE_CONN_ID) as client:
        print("ready", flush=True)
        t0 = time.monotonic()
        publish.publish(client, tables.Tables(db=database), mutation_timeout_s=60, token=token,
                        min_unresolved_rows=1, max_drop_ratio=0.5)
        print(f"done {time.monotonic() - t0:.3f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
