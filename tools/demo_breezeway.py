"""Demo data for the Breezeway migration (``make demo``).

``setup()`` creates the ``breezeway`` schema with the seed's duplication pattern at 1/1000
scale (~38k child rows: task_requirements ~900 copies per key, reservation_guests none),
plus a view, a grant, an extra index and triggers that must survive the migration. It
does nothing when the schema already exists (so a migrated demo stays migrated).
``background()`` runs the old ETL statement at a few rows per second, so the migration
and the rollback are seen working while the ETL writes.
"""
from __future__ import annotations

import sys
import time

DEMO_SCALE = 0.001


def setup() -> None:
    from dupguard import settings
    from dupguard.breezeway_demo import create_schema, load
    from dupguard.connections import pg_connect

    with pg_connect(settings.BREEZEWAY_CONN_ID) as conn:
        if conn.execute("SELECT to_regnamespace('breezeway')").fetchone()[0] is not None:
            print("breezeway demo data already present")
            return
        create_schema(conn)
        sizes = load(conn, DEMO_SCALE)
        conn.execute("INSERT INTO breezeway.task_tags (task_pk, tag_pk, created_at) SELECT g, mod(g, 7), now() "
                     "FROM generate_series(1, 40) g")
        conn.execute("INSERT INTO breezeway.property_photos (property_pk, photo_id, url, created_at) "
                     "VALUES (1, NULL, 'photo without id', now()), (1, NULL, 'photo without id', now())")
        conn.commit()
    print("breezeway demo data: " + ", ".join(f"{t} {r:,} rows / {k:,} keys" for t, (k, r) in sizes.items()))


def background() -> list[tuple[str, str]]:
    return [("breezeway-old-etl", f"{sys.executable} -m tools.demo_breezeway writer")]


def writer(rate: float = 2.0) -> None:
    """The old ETL's statement (no conflict target): duplicates until the constraint exists."""
    import random

    from dupguard import settings
    from dupguard.connections import pg_connect

    n = 0
    while True:
        try:
            with pg_connect(settings.BREEZEWAY_CONN_ID, autocommit=True, application_name="old-etl") as conn:
                while True:
                    n += 1
                    key = random.randint(1, 27) if n % 2 else 1_000_000 + n
                    conn.execute("INSERT INTO breezeway.task_requirements (task_pk, requirement_id, name, created_at,"
                                 " updated_at) VALUES (1 + mod(%s, 50), %s, 'from old ETL', now(), now()) "
                                 "ON CONFLICT DO NOTHING", (key, key))
                    time.sleep(1.0 / rate)
        except Exception as exc:  # noqa: BLE001 - the demo writer outlives restarts and schema resets
            print(f"old-etl writer: {exc}; retrying in 5 s", flush=True)
            time.sleep(5)


if __name__ == "__main__":
    if sys.argv[1:] == ["writer"]:
        writer()
    else:
        setup()
