"""Breezeway database with the seed's duplication pattern, at any scale (demo, tests, bench).

The old ETL re-inserted every child row on every run, so a key's copies are spread over
the table in run order, the oldest copy first. Per table the seed's (distinct keys, rows):
"""
from __future__ import annotations

from dupguard import settings

# table -> (distinct keys, rows) in the seed's production database
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

# payload expressions per table, of the key number i (bigint) and copy number c
_PAYLOAD = {
    "property_photos": ("url, caption", "'https://img.breezeway.io/p/' || i || '/photo.jpg', 'Photo ' || i"),
    "task_requirements": ("name, status", "'Requirement ' || i, (ARRAY['open','done','blocked'])[1 + mod(i, 3)]"),
    "task_comments": ("body, author", "'Comment body number ' || i, 'user' || mod(i, 97)"),
    "task_assignments": ("role", "(ARRAY['cleaner','inspector','maintenance'])[1 + mod(i, 3)]"),
    "task_photos": ("url", "'https://img.breezeway.io/t/' || i || '.jpg'"),
    "reservation_guests": ("name, email", "'Guest ' || i, 'guest' || i || '@example.com'"),
}
NATURAL = {"property_photos": "photo_id", "task_requirements": "requirement_id", "task_comments": "comment_id",
           "task_assignments": "assignee_id", "task_photos": "photo_id", "reservation_guests": "guest_id"}
PARENT_COL = {"properties": "property_pk", "tasks": "task_pk", "reservations": "reservation_pk"}


def shape(scale: float) -> dict[str, tuple[int, int]]:
    """(keys, rows) per table at ``scale`` (at least one key, at least one row per key)."""
    return {t: (max(1, round(k * scale)), max(max(1, round(k * scale)), round(r * scale)))
            for t, (k, r) in SEED_SHAPE.items()}


def create_schema(conn, *, audit_trigger: bool = True) -> None:
    """Create the ``breezeway`` schema (fails if it exists: the caller decides)."""
    conn.execute(settings.read_sql("breezeway/create_demo_schema.sql"))
    if audit_trigger:
        conn.execute(settings.read_sql("breezeway/create_demo_audit.sql"))
    conn.commit()


def load(conn, scale: float, *, parents: int | None = None) -> dict[str, tuple[int, int]]:
    """Fill parents and the six child tables with the seed's pattern at ``scale``.

    Key ``i`` gets between 1 and ~2x the table's mean copies (deterministic skew); copy
    ``c`` is the ``c``-th ETL run, loaded ``c`` hours after the first, in run order.
    """
    sizes = shape(scale)
    n_par = parents or max(10, round(50_000 * scale))
    for p, col in PARENT_COL.items():
        conn.execute(f"INSERT INTO breezeway.{p} ({col}, region_code) SELECT g, 'r' || mod(g, 5) "
                     f"FROM generate_series(1, %s) g ON CONFLICT DO NOTHING", (n_par,))
    for table, (keys, rows) in sizes.items():
        mean = rows / keys
        cols, expr = _PAYLOAD[table]
        parent_col = PARENT_COL[PARENT[table]]
        # copies_i in [1, 2*mean-1], mean ~ `mean`; the first key gets the most (the skew's head)
        conn.execute(f"""
            INSERT INTO breezeway.{table} ({parent_col}, {NATURAL[table]}, {cols}, region_code, created_at, updated_at)
            SELECT 1 + mod(i, %(np)s), i, {expr}, 'r' || mod(i, 5),
                   timestamptz '2024-01-01' + c * interval '1 hour', timestamptz '2024-01-01' + c * interval '1 hour'
            FROM (SELECT i, greatest(1, round(1 + (2 * %(mean)s - 2) * mod(i * 2654435761, 1000) / 999.0))::int AS n
                  FROM generate_series(1, %(keys)s) i) k
            CROSS JOIN LATERAL generate_series(0, k.n - 1) c
            ORDER BY c, i""", {"np": n_par, "mean": mean, "keys": keys})
    conn.commit()
    return sizes
