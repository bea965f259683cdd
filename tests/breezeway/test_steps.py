"""Step functions, the upsert helper and the SQL files, against real PostgreSQL (no Airflow run)."""
from __future__ import annotations

import psycopg
import pytest

from dupguard import breezeway as mig
from dupguard import settings
from dupguard.breezeway_config import CHILD_TABLES, PROTECTED_CONSTRAINTS, table
from dupguard.breezeway_upsert import MigrationRequired, build_upsert, upsert_children

CONN = "breezeway_postgres"


def migrate(run_id: str = "test-run") -> None:
    mig.claim(CONN, run_id)
    for step in (mig.preflight, mig.backup, mig.dedup, mig.reclaim, mig.constraints):
        step(CONN, run_id)


def test_natural_keys_are_configured_once_and_match_the_issue():
    assert {t.name: t.natural_key for t in CHILD_TABLES} == {
        "property_photos": ("property_pk", "photo_id"), "task_requirements": ("task_pk", "requirement_id"),
        "task_comments": ("task_pk", "comment_id"), "task_assignments": ("task_pk", "assignee_id"),
        "task_photos": ("task_pk", "photo_id"), "reservation_guests": ("reservation_pk", "guest_id")}
    assert not {t.constraint for t in CHILD_TABLES} & PROTECTED_CONSTRAINTS
    with pytest.raises(ValueError, match="not a configured Breezeway child table"):
        table("task_tags")


def test_every_sql_file_renders_with_quoted_identifiers(bw):
    from psycopg import sql

    t = table("task_photos")
    ident = {k: sql.Identifier("dupguard", f"x_{k}") for k in ("keepers", "backup", "keys_before", "nullkeys_before")}
    lit = {k: sql.Literal(1) for k in ("name", "regclass", "constraint", "size_before", "max_id_before",
                                       "rows_before")}
    for f in ("compute_keepers.sql", "delete_duplicates_batch.sql", "snapshot_keys.sql", "gate_table.sql",
              "gate_rollback_table.sql"):
        text = mig._fmt(settings.read_sql(f"breezeway/{f}"), t, **ident, **lit).as_string(bw)
        assert '"breezeway"."task_photos"' in text, f
        assert '"photo_id"' in text or f == "gate_rollback_table.sql", f
        assert "{" not in text.replace("{}", ""), f"{f}: unrendered placeholder"
    bw.commit()


def test_upsert_before_migration_says_to_run_it(bw):
    with pytest.raises(MigrationRequired, match="child_tables_dedup_migration"):
        upsert_children(bw, "task_photos", [{"task_pk": 1, "photo_id": 1, "url": "x"}])
    bw.rollback()


def test_upsert_same_batch_twice_no_duplicates_and_updated_values(bw):
    migrate()
    batch = [{"task_pk": 2, "photo_id": 50_000 + i, "url": f"v1-{i}", "created_at": None} for i in range(30)]
    batch.append({"task_pk": 2, "photo_id": 50_000, "url": "v1-last-wins", "created_at": None})  # in-batch dup
    assert upsert_children(bw, "task_photos", batch, batch_size=7) == 31
    bw.commit()
    first_ids = dict(bw.execute("SELECT photo_id, id FROM breezeway.task_photos WHERE photo_id >= 50000").fetchall())
    again = [{**r, "url": r["url"].replace("v1", "v2")} for r in batch]
    upsert_children(bw, "task_photos", again, batch_size=7)
    bw.commit()
    rows = bw.execute("SELECT photo_id, id, url FROM breezeway.task_photos WHERE photo_id >= 50000").fetchall()
    assert len(rows) == 30
    assert {p: i for p, i, _ in rows} == first_ids  # updated in place, not re-inserted
    assert dict((p, u) for p, _, u in rows)[50_000] == "v2-last-wins"
    assert all(u.startswith("v2") for _, _, u in rows)
    text = build_upsert(table("task_photos"), ["task_pk", "photo_id", "url"]).as_string(bw)
    assert 'ON CONFLICT ("task_pk", "photo_id") DO UPDATE SET "url" = EXCLUDED."url"' in text
    bw.commit()


def test_missing_table_or_column_is_a_clear_error_and_changes_nothing(bw):
    bw.execute("DROP TABLE breezeway.task_comments")
    bw.execute("ALTER TABLE breezeway.task_photos DROP COLUMN photo_id")
    bw.commit()
    before = bw.execute("SELECT count(*) FROM breezeway.task_requirements").fetchone()[0]
    bw.commit()
    mig.claim(CONN, "r-missing")
    with pytest.raises(mig.PreflightError) as err:
        mig.preflight(CONN, "r-missing")
    assert "table breezeway.task_comments does not exist" in str(err.value)
    assert "column breezeway.task_photos.photo_id does not exist" in str(err.value)
    assert bw.execute("SELECT count(*) FROM breezeway.task_requirements").fetchone()[0] == before
    assert bw.execute("SELECT to_regclass('dupguard.bw_keys_before_task_requirements')").fetchone()[0] is None
    bw.commit()


def test_unreachable_database_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BREEZEWAY_POSTGRES",
                       '{"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "schema": "breezeway"}')
    with pytest.raises(ConnectionError, match="cannot reach PostgreSQL for connection 'breezeway_postgres'"):
        mig.claim(CONN, "r-unreachable")


def test_constraint_build_cleans_slipped_in_duplicates_and_drops_invalid_index(bw, monkeypatch):
    """The first CREATE UNIQUE INDEX CONCURRENTLY meets duplicates (the clean is skipped once,
    as if writers slipped them in): the INVALID index is dropped, the retry cleans and succeeds."""
    t = table("task_photos")
    mig.claim(CONN, "r-retry")
    mig.preflight(CONN, "r-retry")
    mig.backup(CONN, "r-retry")
    # a crashed earlier build left an INVALID index behind
    with psycopg.connect(bw.info.dsn, autocommit=True) as ac, pytest.raises(psycopg.errors.UniqueViolation):
        ac.execute("CREATE UNIQUE INDEX CONCURRENTLY task_photos_nk_try0_1 ON breezeway.task_photos "
                   "(task_pk, photo_id)")
    real, calls = mig.dedup_pass, []

    def first_clean_skipped(conn_id, tb, **kw):
        calls.append(tb.name)
        if len(calls) == 1:
            return {"removed": 0}
        return real(conn_id, tb, **kw)

    monkeypatch.setattr(mig, "dedup_pass", first_clean_skipped)
    out = mig.add_constraint(CONN, t, run_id="r-retry")
    assert [a["result"] for a in out["attempts"]] == ["duplicates slipped in", "built"]
    assert "task_photos_nk_try0_1" in out["dropped_invalid"]
    assert bw.execute("SELECT count(*) FROM pg_index WHERE indrelid = 'breezeway.task_photos'::regclass AND NOT "
                      "indisvalid").fetchone()[0] == 0
    assert bw.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'task_photos_natural_key' AND "
                      "convalidated").fetchone()[0] == 1
    assert bw.execute("SELECT count(*) - count(DISTINCT (task_pk, photo_id)) FROM breezeway.task_photos"
                      ).fetchone()[0] == 0
    bw.commit()


def test_steps_refuse_without_the_claim(bw):
    with pytest.raises(mig.MigrationRefused, match="does not hold the migration claim"):
        mig.dedup(CONN, "nobody")
    assert bw.execute("SELECT count(*) FROM breezeway.task_requirements").fetchone()[0] > 20_000
    bw.commit()


def test_copy_swap_dedup_keeps_rows_writers_touch_during_the_swap(bw, monkeypatch):
    """A heavily duplicated table is deduped by copy-swap. Writers act between the online copy
    and the exclusive lock (the backup insert of the swap transaction is already done): a new
    duplicate, a new key and an update of a row being removed. Nothing is lost, the backup
    holds exactly the removed rows (their values as removed), the updated row stays."""
    t = table("task_requirements")
    mig.claim(CONN, "r-swap")
    mig.preflight(CONN, "r-swap")
    mig.backup(CONN, "r-swap")
    before = {r[0]: r for r in bw.execute("SELECT * FROM breezeway.task_requirements")}
    victim = bw.execute("SELECT max(id) FROM breezeway.task_requirements WHERE task_pk = 11 AND requirement_id = 9005"
                        ).fetchone()[0]  # the newest of 400 copies: the swap's backup insert has taken it
    bw.commit()
    real, new_ids = mig._swap_in, []

    def writers_act_then_swap(c, tb, compact, **kw):
        with psycopg.connect(bw.info.dsn, autocommit=True) as w:
            new_ids.extend(r[0] for r in w.execute(
                "INSERT INTO breezeway.task_requirements (task_pk, requirement_id, name, created_at) VALUES "
                "(11, 9005, 'dup during swap', now()), (12, 777777, 'new key during swap', now()) RETURNING id"))
            w.execute("UPDATE breezeway.task_requirements SET name = 'updated during swap' WHERE id = %s", (victim,))
        return real(c, tb, compact, **kw)

    monkeypatch.setattr(mig, "_swap_in", writers_act_then_swap)
    out = mig.dedup_pass(CONN, t)
    assert out["method"] == "copy-swap" and out["rows_changed_during_copy"] == 3
    now = {r[0]: r for r in bw.execute("SELECT * FROM breezeway.task_requirements")}
    backup = {r[0]: r for r in bw.execute("SELECT * FROM dupguard.bw_backup_task_requirements")}
    bw.commit()
    assert set(new_ids) <= set(now) and victim in now and now[victim][3] == "updated during swap"
    assert not set(backup) & set(now), "a row is both kept and backed up"
    assert set(backup) == set(before) - set(now), "the backup is not exactly the removed rows"
    assert all(backup[i] == before[i] for i in backup), "a backed-up row differs from the removed row"
    assert out["removed"] == len(backup)
    # every original key still has its rule keeper; the writer's duplicate is left for the constraints step
    keys_before = {(r[1], r[2]) for r in before.values()}
    assert keys_before <= {(r[1], r[2]) for r in now.values()}
    assert bw.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'dupguard_reclaim_log'").fetchone()[0] == 0
    assert bw.execute("SELECT to_regclass('dupguard.bw_compact_task_requirements')").fetchone()[0] is None
    bw.commit()
