"""Breezeway fixtures: the ``breezeway`` database rebuilt for every test."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import psycopg
import pytest

from dupguard.breezeway.config import CHILD_TABLES
from tools.demo_breezeway import create_schema, load

SCALE = 0.001  # ~38k rows: the seed's pattern (task_requirements ~900 copies per key ...)
T0 = datetime(2023, 6, 1, tzinfo=timezone.utc)


def add_edge_cases(conn) -> None:
    """Ties on created_at, NULL created_at, NULL natural keys, one key with hundreds of copies."""
    ex = conn.execute
    # ties: three copies with the same created_at -> the smallest id stays
    ex("INSERT INTO breezeway.task_comments (task_pk, comment_id, body, created_at) "
       "SELECT 5, 9001, 'tie ' || g, %s FROM generate_series(1, 3) g", (T0,))
    # NULL created_at counts as newest: the first inserted copy has NULL, the second a date
    ex("INSERT INTO breezeway.task_photos (task_pk, photo_id, url, created_at) VALUES "
       "(7, 9002, 'null first', NULL), (7, 9002, 'dated', %s), (7, 9002, 'null again', NULL)", (T0,))
    # only NULL created_at: the smallest id stays
    ex("INSERT INTO breezeway.task_photos (task_pk, photo_id, url, created_at) "
       "SELECT 8, 9003, 'all null ' || g, NULL FROM generate_series(1, 4) g")
    # an older copy inserted later (higher id) wins over the earlier-inserted newer one
    ex("INSERT INTO breezeway.task_assignments (task_pk, assignee_id, role, created_at) VALUES "
       "(9, 9004, 'late', %s), (9, 9004, 'early', %s)", (datetime(2025, 1, 1, tzinfo=timezone.utc), T0))
    # NULL natural keys are not duplicates: all of them stay, untouched
    ex("INSERT INTO breezeway.property_photos (property_pk, photo_id, url, created_at) "
       "SELECT 3, NULL, 'no photo id', %s FROM generate_series(1, 3) g", (T0,))
    ex("INSERT INTO breezeway.reservation_guests (reservation_pk, guest_id, name) VALUES (4, NULL, 'anon'), "
       "(4, NULL, 'anon')")
    # hundreds of copies of one key
    ex("INSERT INTO breezeway.task_requirements (task_pk, requirement_id, name, created_at) "
       "SELECT 11, 9005, 'many', %s + g * interval '1 minute' FROM generate_series(1, 400) g", (T0,))
    # task_tags: already unique, must stay exactly as it is
    ex("INSERT INTO breezeway.task_tags (task_pk, tag_pk, created_at) SELECT g, mod(g, 7), %s "
       "FROM generate_series(1, 50) g", (T0,))
    conn.commit()


def expected_keepers(conn) -> dict[str, set[int]]:
    """The ids the rules keep, computed in Python from the rows (independent of the SQL)."""
    out = {}
    for t in CHILD_TABLES:
        k1, k2 = t.natural_key
        groups, keep = defaultdict(list), set()
        for id_, a, b, created in conn.execute(f"SELECT id, {k1}, {k2}, created_at FROM breezeway.{t.name}"):
            if a is None or b is None:
                keep.add(id_)
            else:
                groups[(a, b)].append((created is None, created or T0, id_))
        keep |= {min(v)[2] for v in groups.values()}
        out[t.name] = keep
    conn.commit()  # an open transaction would hold locks the migration waits for
    return out


def table_rows(conn, table: str) -> dict[int, tuple]:
    return {r[0]: r for r in conn.execute(f"SELECT * FROM breezeway.{table} ORDER BY id")}


def catalog_fingerprint(conn) -> dict:
    """What must survive the migration: views, grants, triggers, foreign keys, other indexes."""
    q = lambda s: sorted(tuple(r) for r in conn.execute(s))  # noqa: E731
    try:
        return _fingerprint(q)
    finally:
        conn.commit()


def _fingerprint(q) -> dict:
    return {
        "views": q("SELECT c.oid::bigint, pg_get_viewdef(c.oid) FROM pg_class c WHERE c.relkind = 'v' "
                   "AND c.relnamespace = 'breezeway'::regnamespace"),
        "grants": q("SELECT relname, relacl::text FROM pg_class WHERE relnamespace = 'breezeway'::regnamespace "
                    "AND relkind = 'r'"),
        "tables": q("SELECT relname, oid::bigint FROM pg_class WHERE relnamespace = 'breezeway'::regnamespace "
                    "AND relkind = 'r'"),
        "triggers": q("SELECT tgrelid::regclass::text, tgname, tgenabled::text, pg_get_triggerdef(oid) "
                      "FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'breezeway.%%'"),
        "fks": q("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                 "WHERE connamespace = 'breezeway'::regnamespace AND (contype IN ('f', 'p') OR conname = 'task_tags_unique')"),
        "indexes": q("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c "
                     "ON c.oid = i.indrelid WHERE c.relnamespace = 'breezeway'::regnamespace "
                     "AND indexrelid::regclass::text NOT LIKE '%natural_key'"),
    }


@pytest.fixture()
def bw(pg_cluster):
    """A connection to ``breezeway`` with fresh ``breezeway`` (seed pattern + edge cases) and no ``dupguard``."""
    dsn = pg_cluster.dsn("breezeway")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS breezeway CASCADE")
        c.execute("DROP SCHEMA IF EXISTS dupguard CASCADE")
    conn = psycopg.connect(dsn)
    create_schema(conn)
    load(conn, SCALE)
    add_edge_cases(conn)
    conn.execute("ANALYZE")
    conn.commit()
    yield conn
    conn.close()


@pytest.fixture()
def bw_dsn(pg_cluster) -> str:
    return pg_cluster.dsn("breezeway")
