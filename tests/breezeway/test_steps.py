"""Step functions, the upsert helper and the SQL files, against real PostgreSQL (no Airflow run)."""
from __future__ import annotations

import psycopg
import pytest

from dupguard.breezeway import constraints, dedup, gates, ledger, preflight, render, swap, tasks
from dupguard.breezeway.config import CHILD_TABLES, PROTECTED_CONSTRAINTS, table
from dupguard.breezeway.upsert import MigrationRequired, build_upsert, upsert_children
from dupguard.common import settings
from dupguard.common.errors import ConfigError
from dupguard.common.gate import GateFailed

CONN = "breezeway_postgres"


def migrate(run_id: str = "test-run") -> None:
    ledger.claim(CONN, run_id)
    for step in (preflight.preflight, preflight.backup, dedup.dedup, dedup.reclaim, constraints.constraints):
        step(CONN, run_id)


def test_natural_keys_are_configured_once_and_match_the_issue():
    assert {t.name: t.natural_key for t in CHILD_TABLES} == {
        "property_photos": ("property_pk", "photo_id"), "task_requirements": ("task_pk", "requirement_id"),
        "task_comments": ("task_pk", "comment_id"), "task_assignments": ("task_pk", "assignee_id"),
        "task_photos": ("task_pk", "photo_id"), "reservation_guests": ("reservation_pk", "guest_id")}
    assert not {t.constraint for t in CHILD_TABLES} & PROTECTED_CONSTRAINTS
    with pytest.raises(ConfigError, match="not a configured Breezeway child table"):
        table("task_tags")


#: executed as they are (values bound, no identifier to fill in)
RAW_SQL = {"create_ledger.sql", "insert_claim.sql", "update_claim.sql", "update_heartbeat.sql", "record_step.sql",
           "record_baseline.sql", "complete_ledger.sql", "list_user_triggers.sql"}


def test_every_sql_file_renders_with_quoted_identifiers(bw):
    from psycopg import sql

    t = table("task_photos")
    lit = {k: sql.Literal(1) for k in ("size_before", "max_id_before", "rows_before")}
    ident = {k: sql.Identifier(k) for k in ("trigger", "columns", "backup_columns")}
    files = sorted(p.name for p in (settings.sql_dir() / "breezeway").glob("*.sql"))
    assert "gate_table.sql" in files and RAW_SQL <= set(files)
    for f in sorted(set(files) - RAW_SQL):
        text = render.render(f, t, oid=12345, lock=sql.SQL("FOR UPDATE"), **lit, **ident).as_string(bw)
        assert "{" not in text.replace("'{}'", ""), f"{f}: unrendered placeholder"
        if f not in ("select_ledger.sql", "count_valid_constraint.sql"):
            assert '"breezeway"."task_photos"' in text or '"dupguard"."bw_' in text, f
    for f in RAW_SQL:
        assert "{" not in settings.read_sql(f"breezeway/{f}").replace("'{}'", ""), f"{f} is executed raw"
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
    ledger.claim(CONN, "r-missing")
    with pytest.raises(preflight.PreflightError) as err:
        preflight.preflight(CONN, "r-missing")
    assert "table breezeway.task_comments does not exist" in str(err.value)
    assert "column breezeway.task_photos.photo_id does not exist" in str(err.value)
    # in a task it fails without a retry: a retry cannot create the table
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="PreflightError: preflight failed"):
        tasks.preflight("r-missing")
    assert bw.execute("SELECT count(*) FROM breezeway.task_requirements").fetchone()[0] == before
    assert bw.execute("SELECT to_regclass('dupguard.bw_keys_before_task_requirements')").fetchone()[0] is None
    bw.commit()


def test_unreachable_database_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BREEZEWAY_POSTGRES",
                       '{"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "schema": "breezeway"}')
    with pytest.raises(ConnectionError, match="cannot reach PostgreSQL for connection 'breezeway_postgres'"):
        ledger.claim(CONN, "r-unreachable")


def test_constraint_build_cleans_slipped_in_duplicates_and_drops_invalid_index(bw, monkeypatch):
    """The first CREATE UNIQUE INDEX CONCURRENTLY meets duplicates (the first clean is skipped,
    as if writers slipped them in): the INVALID index is dropped, the retry cleans and succeeds."""
    t = table("task_photos")
    ledger.claim(CONN, "r-retry")
    preflight.preflight(CONN, "r-retry")
    preflight.backup(CONN, "r-retry")
    # a crashed earlier build left an INVALID index behind
    with psycopg.connect(bw.info.dsn, autocommit=True) as ac, pytest.raises(psycopg.errors.UniqueViolation):
        ac.execute("CREATE UNIQUE INDEX CONCURRENTLY task_photos_nk_try0_1 ON breezeway.task_photos "
                   "(task_pk, photo_id)")
    real, calls = dedup.delete_duplicates_now, []

    def first_clean_skipped(conn_id, tb):
        calls.append(tb.name)
        return 0 if len(calls) == 1 else real(conn_id, tb)

    monkeypatch.setattr(constraints, "dedup_pass", lambda conn_id, tb, **kw: {"removed": 0})
    monkeypatch.setattr(constraints, "delete_duplicates_now", first_clean_skipped)
    out = constraints.add_constraint(CONN, t, run_id="r-retry")
    assert out["status"] == "added" and out["build"]["status"] == "built"
    assert out["build"]["attempts"] == 2 and out["build"]["recleaned_rows"] > 0 and len(calls) == 2
    assert out["build"]["dropped_invalid"] == ["task_photos_nk_try0_1", "task_photos_nk_build"]
    assert bw.execute("SELECT count(*) FROM pg_index WHERE indrelid = 'breezeway.task_photos'::regclass AND NOT "
                      "indisvalid").fetchone()[0] == 0
    assert bw.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'task_photos_natural_key' AND "
                      "convalidated").fetchone()[0] == 1
    assert bw.execute("SELECT count(*) - count(DISTINCT (task_pk, photo_id)) FROM breezeway.task_photos"
                      ).fetchone()[0] == 0
    assert constraints.add_constraint(CONN, t)["status"] == "already present"
    bw.commit()


def test_failed_gate_is_recorded_in_the_ledger_then_fails_the_task(bw):
    """A migrated table gets a duplicate behind the constraint's back: the gate fails, the
    ledger says passed=false with the figures and the failed expectations, and the task sees
    the gate's own GateFailed (no retry, not re-wrapped)."""
    migrate("r-gate")
    bw.execute("ALTER TABLE breezeway.task_photos DROP CONSTRAINT task_photos_natural_key")
    bw.execute("INSERT INTO breezeway.task_photos (task_pk, photo_id, url, created_at) "
               "SELECT task_pk, photo_id, 'planted', now() FROM breezeway.task_photos WHERE photo_id IS NOT NULL LIMIT 2")
    bw.commit()
    with pytest.raises(GateFailed) as failed:
        tasks.quality_gate("r-gate")
    assert failed.value.gate == gates.MIGRATION.name
    row = ledger.ledger_row(bw)
    bw.commit()
    recorded = row["steps"]["quality_gate"]
    assert recorded["passed"] is False
    assert {d.split("(")[1].split(",")[0] for d in recorded["failed"]} == {"column='duplicate_keys'",
                                                                           "column='constraint_valid'"}
    photos = next(f for f in recorded["tables"] if f["table_name"] == "task_photos")
    assert photos["duplicate_keys"] == 2 and photos["constraint_valid"] == 0
    assert row["status"] == "running"  # not finished: force or a new run repairs it


def test_steps_refuse_without_the_claim(bw):
    with pytest.raises(ledger.MigrationRefused, match="does not hold the migration claim"):
        dedup.dedup(CONN, "nobody")
    assert bw.execute("SELECT count(*) FROM breezeway.task_requirements").fetchone()[0] > 20_000
    bw.commit()


def test_copy_swap_dedup_keeps_rows_writers_touch_during_the_swap(bw, monkeypatch):
    """A heavily duplicated table is deduped by copy-swap. Writers act between the online copy
    and the exclusive lock (the backup insert of the swap transaction is already done): a new
    duplicate, a new key and an update of a row being removed. Nothing is lost, the backup
    holds exactly the removed rows (their values as removed), the updated row stays."""
    t = table("task_requirements")
    ledger.claim(CONN, "r-swap")
    preflight.preflight(CONN, "r-swap")
    preflight.backup(CONN, "r-swap")
    before = {r[0]: r for r in bw.execute("SELECT * FROM breezeway.task_requirements")}
    victim = bw.execute("SELECT max(id) FROM breezeway.task_requirements WHERE task_pk = 11 AND requirement_id = 9005"
                        ).fetchone()[0]  # the newest of 400 copies: the swap's backup insert has taken it
    bw.commit()
    real, new_ids = swap.swap_in, []

    def writers_act_then_swap(c, tb, **kw):
        with psycopg.connect(bw.info.dsn, autocommit=True) as w:
            new_ids.extend(r[0] for r in w.execute(
                "INSERT INTO breezeway.task_requirements (task_pk, requirement_id, name, created_at) VALUES "
                "(11, 9005, 'dup during swap', now()), (12, 777777, 'new key during swap', now()) RETURNING id"))
            w.execute("UPDATE breezeway.task_requirements SET name = 'updated during swap' WHERE id = %s", (victim,))
        return real(c, tb, **kw)

    monkeypatch.setattr(swap, "swap_in", writers_act_then_swap)
    out = dedup.dedup_pass(CONN, t)
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
