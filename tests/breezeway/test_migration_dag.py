"""child_tables_dedup_migration / child_tables_dedup_rollback with dag.test() on real PostgreSQL."""
from __future__ import annotations

import threading
import time

import pendulum
import psycopg

from dupguard.breezeway import gates
from dupguard.breezeway import ledger as bw_ledger
from dupguard.breezeway.config import CHILD_TABLES, MIGRATION_DAG_ID, MIGRATION_ID
from tests.breezeway.conftest import catalog_fingerprint, expected_keepers, table_rows

MIG, RB = "child_tables_dedup_migration", "child_tables_dedup_rollback"
# dag.test() keeps a run's conf in the cached DAG's params: every run passes all of them
DEFAULTS = {"force": False, "stop_after": None, "batch_ids": 50_000, "max_hours": 4}
SKIPPED = {"preflight", "backup", "dedup", "reclaim", "constraints", "quality_gate", "finish"}


def snapshot(conn) -> dict[str, dict[int, tuple]]:
    out = {t.name: table_rows(conn, t.name) for t in CHILD_TABLES}
    out["task_tags"] = table_rows(conn, "task_tags")
    conn.commit()
    return out


def ledger(conn) -> dict:
    row = bw_ledger.ledger_row(conn)
    conn.commit()
    return row


def constraints_present(conn) -> set[str]:
    rows = conn.execute("SELECT conname FROM pg_constraint WHERE contype = 'u' AND connamespace = "
                        "'breezeway'::regnamespace").fetchall()
    conn.commit()
    return {r[0] for r in rows}


def assert_migrated(conn, before: dict, keep: dict[str, set[int]]) -> None:
    """Exactly the rule's keepers remain (values unchanged); every removed row is in the backup."""
    for t in CHILD_TABLES:
        now = table_rows(conn, t.name)
        original = {i: r for i, r in before[t.name].items()}
        assert {i for i in now if i in original} == keep[t.name], t.name
        assert all(now[i] == original[i] for i in keep[t.name]), f"{t.name}: a kept row changed"
        backup = {r[0]: r for r in conn.execute(f"SELECT * FROM dupguard.bw_backup_{t.name}")}
        removed_originals = set(original) - keep[t.name]
        assert removed_originals <= set(backup), f"{t.name}: a removed row is missing from the backup"
        assert all(backup[i] == original[i] for i in removed_originals), f"{t.name}: backup differs"
        dup = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM breezeway.{t.name} WHERE {t.natural_key[0]} IS NOT "
                           f"NULL AND {t.natural_key[1]} IS NOT NULL GROUP BY 1, {t.natural_key[0]}, "
                           f"{t.natural_key[1]} HAVING count(*) > 1) d").fetchone()[0]
        assert dup == 0, t.name
    conn.commit()


def test_migration_end_to_end_then_noop_then_force(bw, run_dag, smtp_sink):
    before, keep, fp = snapshot(bw), expected_keepers(bw), catalog_fingerprint(bw)
    audit_before = bw.execute("SELECT count(*) FROM breezeway.audit_log").fetchone()[0]
    sizes_before = {t.name: bw.execute("SELECT pg_total_relation_size(%s::regclass)", (t.qualified,)).fetchone()[0]
                    for t in CHILD_TABLES}
    bw.commit()

    # max_hours 0.001 (3.6 s): the run is LATE part-way; one LATE alert, closed by the last task
    res = run_dag(MIG, conf={**DEFAULTS, "max_hours": 0.001})
    assert res.state == "success", res.task_states
    assert_migrated(bw, before, keep)
    subjects = [m["Subject"] for m in smtp_sink.wait_for(2, timeout=10)]
    assert subjects[0].startswith(f"[dupguard] LATE {MIG} run {res.run_id}: still running max_hours=0.001 h after")
    assert subjects[1].startswith(f"[dupguard] RECOVERED {MIG}.<late> after 1 late runs")
    assert len(subjects) == 2, subjects
    smtp_sink.clear()

    # preflight reported the problem table before anything changed
    pf = {r["table"]: r for r in res.returns["preflight"]["tables"]}
    assert pf["reservation_guests"]["duplicates"] == 0 and pf["reservation_guests"]["null_key_rows"] == 2
    assert pf["task_requirements"]["max_copies"] >= 400
    for t in CHILD_TABLES:
        assert pf[t.name]["rows"] == len(before[t.name])
        assert pf[t.name]["rows"] - pf[t.name]["duplicates"] - pf[t.name]["null_key_rows"] == pf[t.name][
            "distinct_keys"]
    assert pf["property_photos"]["null_key_rows"] == 3

    # NULL-key rows untouched, task_tags untouched, the catalog (views, grants, triggers, FKs,
    # indexes, table OIDs) unchanged, user triggers did not fire on our row moves
    assert {i for i, r in table_rows(bw, "property_photos").items() if r[2] is None} == {
        i for i, r in before["property_photos"].items() if r[2] is None}
    assert table_rows(bw, "task_tags") == before["task_tags"]
    assert catalog_fingerprint(bw) == fp
    assert bw.execute("SELECT count(*) FROM breezeway.audit_log").fetchone()[0] == audit_before
    assert bw.execute("SELECT count(*) FROM breezeway.open_task_requirements").fetchone()[0] > 0
    assert bw.execute("SELECT has_table_privilege('breezeway_reader', 'breezeway.task_requirements', 'SELECT')"
                      ).fetchone()[0]
    assert constraints_present(bw) == {t.constraint for t in CHILD_TABLES} | {"task_tags_unique"}
    for name in ("task_requirements", "property_photos"):  # space went back to the OS
        size = bw.execute("SELECT pg_total_relation_size(%s::regclass)", (f"breezeway.{name}",)).fetchone()[0]
        assert size < sizes_before[name] / 5
    assert bw.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
    row = ledger(bw)
    assert row["status"] == "complete" and row["finished_at"] is not None
    # the gate judged every check on one row per table, and the ledger holds its verdict and figures
    gate = res.returns["quality_gate"]
    assert gate["evaluated"] == len(gates.MIGRATION.checks)
    assert {f["table_name"] for f in gate["tables"]} == {t.name for t in CHILD_TABLES}
    assert all(f["duplicate_keys"] == 0 and f["constraint_valid"] == 1 and f["missing_keys"] == 0
               and f["protected_constraints"] == 1 for f in gate["tables"]), gate["tables"]
    assert row["steps"]["quality_gate"]["passed"] is True
    assert row["steps"]["quality_gate"]["tables"] == gate["tables"]
    assert res.returns["reclaim"]["max_exclusive_lock_ms"] < 1000

    # a second trigger is a no-op that says so
    again = run_dag(MIG, conf=DEFAULTS)
    assert again.state == "success"
    assert again.task_states["claim"] == "success"
    assert {again.task_states[t] for t in SKIPPED} == {"skipped"}
    assert ledger(bw)["finished_at"] == row["finished_at"]

    # force re-checks and repairs: a constraint dropped by hand comes back
    bw.execute("ALTER TABLE breezeway.task_photos DROP CONSTRAINT task_photos_natural_key")
    bw.execute("INSERT INTO breezeway.task_photos (task_pk, photo_id, url, created_at) "
               "SELECT task_pk, photo_id, 'slipped in', now() FROM breezeway.task_photos LIMIT 3")
    bw.commit()
    forced = run_dag(MIG, conf={**DEFAULTS, "force": True})
    assert forced.state == "success", forced.task_states
    assert forced.returns["claim"]["action"] == "force"
    assert "task_photos_natural_key" in constraints_present(bw)
    assert bw.execute("SELECT count(*) FROM breezeway.task_photos WHERE url = 'slipped in'").fetchone()[0] == 0
    assert bw.execute("SELECT count(*) FROM dupguard.bw_backup_task_photos WHERE url = 'slipped in'"
                      ).fetchone()[0] == 3
    bw.commit()


def test_killed_after_dedup_resumes(bw, run_dag):
    before, keep = snapshot(bw), expected_keepers(bw)
    first = run_dag(MIG, conf={**DEFAULTS, "stop_after": "dedup"})
    assert first.state == "failed"
    assert first.task_states["dedup"] == "failed" and first.task_states["reclaim"] == "upstream_failed"
    row = ledger(bw)
    assert row["status"] == "running" and row["run_id"] == first.run_id and "dedup" in row["steps"]
    assert constraints_present(bw) == {"task_tags_unique"}  # died before the constraints

    second = run_dag(MIG, conf=DEFAULTS)
    assert second.state == "success", second.task_states
    assert second.returns["claim"]["action"] == "resume"
    assert_migrated(bw, before, keep)
    for t in CHILD_TABLES:  # nothing backed up twice
        n, distinct = bw.execute(f"SELECT count(*), count(DISTINCT id) FROM dupguard.bw_backup_{t.name}").fetchone()
        assert n == distinct == len(before[t.name]) - len(keep[t.name])
    history = [h["event"] for h in ledger(bw)["history"]]
    assert history == ["claimed", "takeover", "complete"]


def _running_dag_run(run_id: str) -> None:
    """A real DagRun of the migration DAG, in state running, in the Airflow metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    from tests.airflow_helpers import get_dag

    get_dag(MIG)  # serialised
    now = pendulum.now("UTC")
    with create_session() as s:
        s.add(DagRun(dag_id=MIG, run_id=run_id, run_type=DagRunType.MANUAL, state=DagRunState.RUNNING,
                     logical_date=now.subtract(hours=1), run_after=now, start_date=now, conf={}))


def _set_dag_run_state(run_id: str, state: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as s:
        s.query(DagRun).filter(DagRun.dag_id == MIG, DagRun.run_id == run_id).update({"state": state})


def test_concurrent_second_trigger_is_refused(bw, run_dag):
    before = snapshot(bw)
    owner = f"manual__concurrent_{time.time_ns()}"
    _running_dag_run(owner)
    claimed = bw_claim(owner)
    assert claimed["action"] == "run"

    refused = run_dag(MIG, conf=DEFAULTS)
    assert refused.state == "failed"
    assert refused.task_states["claim"] == "failed"
    assert refused.task_states["preflight"] in ("upstream_failed", "skipped")
    assert ledger(bw)["run_id"] == owner
    assert snapshot(bw) == before  # nothing touched

    _set_dag_run_state(owner, "failed")  # the owner died: the next trigger takes over
    resumed = run_dag(MIG, conf=DEFAULTS)
    assert resumed.state == "success", resumed.task_states
    assert resumed.returns["claim"]["action"] == "resume"


def bw_claim(run_id: str) -> dict:
    return bw_ledger.claim("breezeway_postgres", run_id, dag_id=MIGRATION_DAG_ID)


class OldEtlWriter(threading.Thread):
    """The original ETL statement: INSERT ... ON CONFLICT DO NOTHING without a conflict target."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.stop = dsn, threading.Event()
        self.errors: list[str] = []
        self.sent: list[tuple[int, int]] = []

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                key = (1 + n % 27, n % 27 + 1) if n % 3 == 0 else (1 + n % 40, 500_000 + n)
                try:
                    c.execute("INSERT INTO breezeway.task_requirements (task_pk, requirement_id, name, created_at) "
                              "VALUES (%s, %s, 'writer', now()) ON CONFLICT DO NOTHING", key)
                    self.sent.append(key)
                except Exception as exc:  # noqa: BLE001
                    self.errors.append(str(exc))
                time.sleep(0.01)


def test_concurrent_writer_inserting_duplicates(bw, bw_dsn, run_dag):
    keys_before = {tuple(r) for r in bw.execute(
        "SELECT DISTINCT task_pk, requirement_id FROM breezeway.task_requirements WHERE requirement_id IS NOT NULL")}
    bw.commit()
    writer = OldEtlWriter(bw_dsn)
    writer.start()
    try:
        res = run_dag(MIG, conf=DEFAULTS)
    finally:
        time.sleep(0.5)
        writer.stop.set()
        writer.join(10)
    assert res.state == "success", res.task_states
    assert writer.errors == []
    assert len(writer.sent) > 50
    keys_after = {tuple(r) for r in bw.execute("SELECT task_pk, requirement_id FROM breezeway.task_requirements")}
    assert keys_before | set(writer.sent) <= keys_after
    assert bw.execute("SELECT count(*) - count(DISTINCT (task_pk, requirement_id)) FROM breezeway.task_requirements"
                      ).fetchone()[0] == 0
    bw.commit()


def test_rollback_restores_rows_and_keeps_new_ones_then_migrates_again(bw, run_dag):
    from dupguard.breezeway.upsert import upsert_children

    before, keep = snapshot(bw), expected_keepers(bw)
    assert run_dag(MIG, conf=DEFAULTS).state == "success"
    # written after the migration, with the new ETL: one new row, one updated kept row
    kept_id = min(keep["task_photos"])
    k = bw.execute("SELECT task_pk, photo_id FROM breezeway.task_photos WHERE id = %s", (kept_id,)).fetchone()
    upsert_children(bw, "task_photos", [{"task_pk": 1, "photo_id": 777_777, "url": "new after migration"},
                                        {"task_pk": k[0], "photo_id": k[1], "url": "updated after migration"}])
    bw.commit()

    rb = run_dag(RB)
    assert rb.state == "success", rb.task_states
    gate = rb.returns["quality_gate"]
    assert gate["evaluated"] == len(gates.ROLLBACK.checks)
    assert all(f["rows_now"] == f["rows_expected"] and f["backup_rows_not_restored"] == 0
               for f in gate["tables"]), gate["tables"]
    assert ledger(bw)["steps"]["rollback_gate"]["passed"] is True
    for t in CHILD_TABLES:
        now = table_rows(bw, t.name)
        for i, r in before[t.name].items():  # byte-identical (the upserted row aside)
            if i != kept_id or t.name != "task_photos":
                assert now[i] == r, (t.name, i)
        assert set(before[t.name]) <= set(now)
    photos = table_rows(bw, "task_photos")
    assert photos[kept_id][3] == "updated after migration"
    assert any(r[3] == "new after migration" for r in photos.values())
    assert constraints_present(bw) == {"task_tags_unique"}
    assert ledger(bw)["status"] == "rolled_back"
    assert bw.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'dupguard'::regnamespace AND relname LIKE "
                      "'bw_backup_%'").fetchone()[0] == 0
    bw.commit()

    # a second rollback is a no-op; a new migration works
    again = run_dag(RB)
    assert again.state == "success" and again.task_states["restore_rows"] == "skipped"
    mig = run_dag(MIG, conf=DEFAULTS)
    assert mig.state == "success", mig.task_states
    assert constraints_present(bw) == {t.constraint for t in CHILD_TABLES} | {"task_tags_unique"}
    assert ledger(bw)["status"] == "complete"
    assert MIGRATION_ID == ledger(bw)["migration_id"]
