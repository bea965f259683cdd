"""Stuck and pending mutations. The embedded engine finishes mutations at once, so the
pending state is simulated at the system.mutations query layer (mutations.fetch_mutations)
only; every statement still runs for real against chDB."""
from __future__ import annotations

import pytest

from dupguard.positions import build, config, mutations, publish, tables
from tests.positions import scenario as sc
from tests.positions.conftest import ch

REAL_FETCH = mutations.fetch_mutations


def fake_mutation(mutation_id, age_minutes, *, command="UPDATE x = 1 WHERE 1", fail=""):
    return {"mutation_id": mutation_id, "command": command, "create_time": None, "is_done": 0, "is_killed": 0,
            "parts_to_do": 3, "latest_fail_reason": fail, "latest_fail_time": None, "age_seconds": age_minutes * 60}


def load_unpartitioned_and_build(db):
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
        db.create_unified(client, partitioned=False)
        db.insert_unified(client, [sc.archived_row(), sc.stale_open_row()])
        built = build.build(client, db.tables)
    assert built["staged_unresolved"] > 0
    return built


def test_preflight_kills_only_the_stuck_mutation_by_id(db, run_dag, monkeypatch):
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
    stuck = fake_mutation("mutation_41.txt", 25, fail="Memory limit exceeded")
    young = fake_mutation("mutation_42.txt", 2)
    killed_ids = []
    real_kill = mutations.kill_mutation

    def fetch(client, db_name, table):
        return [stuck, young, *REAL_FETCH(client, db_name, table)]

    def kill(client, db_name, table, mutation_id):   # spy: the KILL still runs for real
        killed_ids.append((db_name, table, mutation_id))
        return real_kill(client, db_name, table, mutation_id)

    monkeypatch.setattr(mutations, "fetch_mutations", fetch)
    monkeypatch.setattr(mutations, "kill_mutation", kill)
    result = run_dag("unified_positions_refresh", logical_date=sc.logical_date(), conf=db.conf())
    assert result.state == "success", result.task_states
    assert killed_ids == [(db.name, config.UNIFIED_TABLE, "mutation_41.txt")]
    pre = result.returns["preflight"]
    assert [m["mutation_id"] for m in pre["killed_mutations"]] == ["mutation_41.txt"]
    assert pre["killed_mutations"][0]["latest_fail_reason"] == "Memory limit exceeded"
    assert [m["mutation_id"] for m in pre["pending_mutations"]] == ["mutation_42.txt"]
    assert result.returns["report"]["killed_mutations"][0]["mutation_id"] == "mutation_41.txt"


def test_publish_never_inserts_while_its_own_delete_is_pending(db, monkeypatch):
    load_unpartitioned_and_build(db)

    def fetch(client, db_name, table):   # our DELETE (it carries the run token) stays pending
        return [{**m, "is_done": 0} if "dupguard-" in (m.get("command") or "") else m
                for m in REAL_FETCH(client, db_name, table)]

    monkeypatch.setattr(mutations, "fetch_mutations", fetch)
    with ch() as client:
        with pytest.raises(mutations.MutationFailed, match="not done after 1s; nothing was inserted"):
            publish.publish(client, db.tables, mutation_timeout_s=1)
        rows = db.rows(client)
        backup = tables.count_rows(client, db.tables, publish.generations(client, db.tables)[-1]["name"])
    # no staged open row was inserted (the simulated-pending DELETE itself did run in chDB)
    assert {sc.key(r) for r in rows if r["resolved_at"] is None} <= {sc.key(sc.stale_open_row())}
    assert [r["tx_hash"] for r in rows if r["resolved_at"] is not None] == ["0xo1"]
    assert backup["unresolved"] == 1          # the previous open part is kept for a rollback


def test_publish_fails_on_its_mutation_fail_reason(db, monkeypatch):
    load_unpartitioned_and_build(db)

    def fetch(client, db_name, table):
        return [{**m, "is_done": 0, "latest_fail_reason": "Code: 241. Memory limit exceeded"}
                if "dupguard-" in (m.get("command") or "") else m for m in REAL_FETCH(client, db_name, table)]

    monkeypatch.setattr(mutations, "fetch_mutations", fetch)
    with ch() as client:
        with pytest.raises(mutations.MutationFailed, match="Memory limit exceeded"):
            publish.publish(client, db.tables, mutation_timeout_s=30)
        open_keys = {sc.key(r) for r in db.rows(client) if r["resolved_at"] is None}
    # nothing from staging was inserted (the real DELETE may or may not have finished yet)
    assert open_keys <= {sc.key(sc.stale_open_row())}


def test_publish_is_not_blocked_by_another_pending_mutation(db, monkeypatch):
    built = load_unpartitioned_and_build(db)
    other = fake_mutation("mutation_7.txt", 3)   # someone else's, pending for ever
    monkeypatch.setattr(mutations, "fetch_mutations", lambda c, d, t: [other, *REAL_FETCH(c, d, t)])
    with ch() as client:
        out = publish.publish(client, db.tables, mutation_timeout_s=30)
        counts = tables.count_rows(client, db.tables, config.UNIFIED_TABLE)
    assert out["mutation_id"] != "mutation_7.txt" and out["mutation_id"].startswith("mutation_")
    assert counts == {"total": 1 + built["staged_unresolved"], "unresolved": built["staged_unresolved"]}


def test_rollback_restores_the_previous_open_part(db):
    load_unpartitioned_and_build(db)
    with ch() as client:
        before = db.rows(client)
        publish.publish(client, db.tables, mutation_timeout_s=30)
        assert db.rows(client) != before
        publish.rollback_open(client, db.tables, mutation_timeout_s=30)
        assert db.rows(client) == before


def test_preflight_names_missing_tables_columns_and_stale_source(db):
    with ch() as client:
        with pytest.raises(tables.PositionsError, match="pm_canonical_fills_v4 is empty"):
            build.preflight(client, db.tables, as_of=sc.AS_OF, max_source_lag_hours=6, stuck_mutation_minutes=10)
        db.insert_fills(client, sc.fills())
        with pytest.raises(tables.PositionsError, match=r"stale: newest fill .* 50\.0 h before"):
            build.preflight(client, db.tables, as_of=sc.logical_date(48), max_source_lag_hours=6,
                                stuck_mutation_minutes=10)
        client.command(f"ALTER TABLE {db.tables.q(config.RESOLUTIONS_TABLE)} DROP COLUMN is_deleted")
        with pytest.raises(tables.PositionsError, match="pm_condition_resolutions lacks column.*is_deleted"):
            build.preflight(client, db.tables, as_of=sc.AS_OF, max_source_lag_hours=6, stuck_mutation_minutes=10)
        client.command(f"DROP TABLE {db.tables.q(config.FILLS_TABLE)}")
        with pytest.raises(tables.PositionsError, match="pm_canonical_fills_v4 does not exist"):
            build.preflight(client, db.tables, as_of=sc.AS_OF, max_source_lag_hours=6, stuck_mutation_minutes=10)
    with pytest.raises(tables.PositionsError, match="refusing identifier"):
        tables.Tables(db="polymarket; DROP TABLE x")
