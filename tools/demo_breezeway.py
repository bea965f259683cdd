"""Breezeway demo data: the seed's duplication pattern at any scale (``make demo``, tests, bench).

The old ETL re-inserted every child row on every run, so a key's copies are spread over
the table in run order, the oldest copy first. ``create_schema`` builds the database as the
migration finds it (``tools/sql/breezeway/``: six child tables without a unique natural key,
plus a view, grants, an extra index, foreign keys and triggers that must survive the
migration); ``load`` fills it at a scale.

``setup()`` loads 1/1000 scale (~38k child rows: task_requirements ~900 copies per key,
reservation_guests none) and does nothing when the schema already exists (so a migrated demo
stays migrated). ``background()`` runs the old ETL statement at a few rows per second, so the
migration and the rollback are seen working while the ETL writes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

DEMO_SCALE = 0.001
SQL_DIR = Path(__file__).resolve().parent / "sql" / "breezeway"

#: table -> (distinct keys, rows) in the seed's production database
SEED_SHAPE = {
    "task_requirements": (26_580, 24_174_099),
    "property_photos": (16_113, 10_192_750),
    "reservation_guests": (1_763_359, 1_763_359),
    "task_assignments": (1_000, 1_485_262),
    "task_photos": (26_000, 715_312),
    "task_comments": (470, 14_664),
}
PARENT = {"property_photos": "properties", "task_requirements": "tasks", "task_comments": "tasks",
          "task_assignments": "tasks", "task_photos": "tasks", "reservation_guests": "reservations"}
PARENT_COL = {"properties": "property_pk", "tasks": "task_pk", "reservations": "reservation_pk"}
NATURAL = {"property_photos": "photo_id", "task_requirements": "requirement_id", "task_comments": "comment_id",
           "task_assignments": "assignee_id", "task_photos": "photo_id", "reservation_guests": "guest_id"}
#: payload columns per table, and their SQL expressions of the key number i (bigint)
_PAYLOAD = {
    "property_photos": (("url", "caption"), "'https://img.breezeway.io/p/' || i || '/photo.jpg', 'Photo ' || i"),
    "task_requirements": (("name", "status"), "'Requirement ' || i, (ARRAY['open','done','blocked'])[1 + mod(i, 3)]"),
    "task_comments": (("body", "author"), "'Comment body number ' || i, 'user' || mod(i, 97)"),
    "task_assignments": (("role",), "(ARRAY['cleaner','inspector','maintenance'])[1 + mod(i, 3)]"),
    "task_photos": (("url",), "'https://img.breezeway.io/t/' || i || '.jpg'"),
    "reservation_guests": (("name", "email"), "'Guest ' || i, 'guest' || i || '@example.com'"),
}


def shape(scale: float) -> dict[str, tuple[int, int]]:
    """(keys, rows) per table at ``scale`` (at least one key, at least one row per key)."""
    return {t: (max(1, round(k * scale)), max(max(1, round(k * scale)), round(r * scale)))
            for t, (k, r) in SEED_SHAPE.items()}


def create_schema(conn, *, audit_trigger: bool = True) -> None:
    """Create the ``breezeway`` schema (fails if it exists: the caller decides). The audit
    trigger proves the migration's own row moves do not fire user triggers."""
    conn.execute((SQL_DIR / "create_demo_schema.sql").read_text())
    if audit_trigger:
        conn.execute((SQL_DIR / "create_demo_audit.sql").read_text())
    conn.commit()


def load(conn, scale: float, *, parents: int | None = None) -> dict[str, tuple[int, int]]:
    """Fill parents and the six child tables with the seed's pattern at ``scale``.

    Key ``i`` gets between 1 and ~2x the table's mean copies (deterministic skew); copy
    ``c`` is the ``c``-th ETL run, loaded ``c`` hours after the first, in run order.
    """
    from psycopg import sql

    sizes = shape(scale)
    n_par = parents or max(10, round(50_000 * scale))
    for p, col in PARENT_COL.items():
        conn.execute(sql.SQL("INSERT INTO {} ({}, region_code) SELECT g, 'r' || mod(g, 5) "
                             "FROM generate_series(1, %s) g ON CONFLICT DO NOTHING").format(
            sql.Identifier("breezeway", p), sql.Identifier(col)), (n_par,))
    for table, (keys, rows) in sizes.items():
        cols, expr = _PAYLOAD[table]
        # copies_i in [1, 2*mean-1], mean ~ rows/keys; the first key gets the most (the skew's head)
        conn.execute(sql.SQL("""
            INSERT INTO {table} ({parent}, {natural}, {cols}, region_code, created_at, updated_at)
            SELECT 1 + mod(i, %(np)s), i, {expr}, 'r' || mod(i, 5),
                   timestamptz '2024-01-01' + c * interval '1 hour', timestamptz '2024-01-01' + c * interval '1 hour'
            FROM (SELECT i, greatest(1, round(1 + (2 * %(mean)s - 2) * mod(i * 2654435761, 1000) / 999.0))::int AS n
                  FROM generate_series(1, %(keys)s) i) k
            CROSS JOIN LATERAL generate_series(0, k.n - 1) c
            ORDER BY c, i""").format(
            table=sql.Identifier("breezeway", table), parent=sql.Identifier(PARENT_COL[PARENT[table]]),
            natural=sql.Identifier(NATURAL[table]), cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
            expr=sql.SQL(expr)), {"np": n_par, "mean": rows / keys, "keys": keys})
    conn.commit()
    return sizes


def setup() -> None:
    from dupguard.common import settings
    from dupguard.common.connections import pg_connect

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

    from dupguard.common import settings
    from dupguard.common.connections import pg_connect

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
