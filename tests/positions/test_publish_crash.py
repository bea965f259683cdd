"""A publish killed between its DELETE and its INSERT (real chDB): the open part it replaced is
saved first, the next attempt (retry of the same run, or the next run) completes it from the
gated staging table, the saved generation stays intact and a rollback restores it.

The kill is simulated at the statement boundary: the statement that would insert (or swap in)
the staging's open part raises instead of running, exactly as a SIGKILL at that moment leaves
the database (tests/chaos kills real processes)."""
from __future__ import annotations

import pytest

from dupguard.positions import build, config, publish, tables
from tests.positions import scenario as sc
from tests.positions.conftest import ch, fill


class Killed(BaseException):
    """The process died here (BaseException: nothing in publish may catch it)."""


def open_rows(db, client, table=None):
    return [r for r in db.rows(client, table) if r["resolved_at"] is None]


def first_publish_then_new_trades(db, shape):
    """A published open part, then new fills and a fresh gated-by-construction staging."""
    with ch() as client:
        db.insert_fills(client, sc.fills())
        db.insert_resolutions(client, sc.resolutions())
        db.create_unified(client, partitioned=shape == "partitioned")
        db.insert_unified(client, [sc.archived_row()])
        build.build(client, db.tables)
        publish.publish(client, db.tables, mutation_timeout_s=30, token="run1")
        first = open_rows(db, client)
        db.insert_fills(client, [fill("0xactive", "0xcA", 0, 20, -9.0, sc.RECENT + 30, tx="0xa4"),
                                 fill("0xquiet", "0xcA", 0, -10, 4.0, sc.RECENT + 40)])
        build.build(client, db.tables)
        staged = open_rows(db, client, db.tables.staging)
    assert first and staged and staged != first
    return first, staged


def kill_at_swap_in(monkeypatch, t: tables.Tables):
    """Die at the statement that puts staging's open part in (after the DELETE on the unpartitioned shape)."""
    real = publish.command
    insert = tables.sql("copy_open", t, target=t.q(t.unified), source=t.q(t.staging))

    def command(client, statement, *args, **kwargs):
        if statement == insert or "REPLACE PARTITION" in statement:
            raise Killed(statement)
        return real(client, statement, *args, **kwargs)

    monkeypatch.setattr(publish, "command", command)


@pytest.mark.parametrize("shape", ["partitioned", "unpartitioned"])
@pytest.mark.parametrize("next_attempt", ["retry_same_run", "next_run_preflight"])
def test_killed_publish_converges_and_keeps_the_backup(db, monkeypatch, shape, next_attempt):
    first, staged = first_publish_then_new_trades(db, shape)
    t = db.tables
    kill_at_swap_in(monkeypatch, t)
    with ch() as client:
        with pytest.raises(Killed):
            publish.publish(client, t, mutation_timeout_s=30, token="run2")
        monkeypatch.undo()
        after_kill = open_rows(db, client)
        saved = publish.generations(client, t)
        # the open part being replaced was saved under the run's token before anything was deleted
        assert [g["name"] for g in saved] == [config.UNIFIED_TABLE + config.GENERATION_INFIX + "run2"]
        assert open_rows(db, client, saved[-1]["name"]) == first and saved[-1]["good"]
        # the window: the unpartitioned shape shows no open row until the next attempt; the
        # partitioned one (REPLACE PARTITION never ran) still shows the previous open part
        assert after_kill == ([] if shape == "unpartitioned" else first)

        if next_attempt == "retry_same_run":
            out = publish.publish(client, t, mutation_timeout_s=30, token="run2")
            assert out["already_published"] and out["resumed"]["outcome"] in ("completed", "already_complete")
        else:   # the next run's preflight completes it before its build replaces staging
            resumed = publish.resume(client, t, mutation_timeout_s=30)
            assert resumed["token"] == "run2" and resumed["outcome"] == "completed"
            assert publish.resume(client, t, mutation_timeout_s=30) is None     # done once
        assert open_rows(db, client) == staged                     # what an undisturbed run publishes
        resolved = [r for r in db.rows(client) if r["resolved_at"] is not None]
        assert [r["tx_hash"] for r in resolved] == ["0xo1"]
        assert open_rows(db, client, saved[-1]["name"]) == first   # the backup is intact

        # the next run publishes again: the backup of `first` is kept, a new generation is added
        build.build(client, t)
        publish.publish(client, t, mutation_timeout_s=30, token="run3", min_unresolved_rows=1, max_drop_ratio=0.5)
        names = [g["name"] for g in publish.generations(client, t)]
        assert names[-2:] == [config.UNIFIED_TABLE + config.GENERATION_INFIX + s for s in ("run2", "run3")]
        assert open_rows(db, client, names[-2]) == first

        out = publish.rollback_open(client, t, mutation_timeout_s=30, token="rb1")
        assert out["restored_open_rows"] == len(staged)            # run3 replaced `staged`
        assert open_rows(db, client) == staged


def test_killed_rollback_is_completed_by_the_next_attempt(db, monkeypatch):
    first, staged = first_publish_then_new_trades(db, "unpartitioned")
    t = db.tables
    with ch() as client:
        publish.publish(client, t, mutation_timeout_s=30, token="run2")
        assert open_rows(db, client) == staged
        real = publish.command
        insert = tables.sql("copy_open", t, target=t.q(t.unified), source=t.q(t.rollback))
        monkeypatch.setattr(publish, "command", lambda c, s, *a, **k:
                            (_ for _ in ()).throw(Killed(s)) if s == insert else real(c, s, *a, **k))
        with pytest.raises(Killed):
            publish.rollback_open(client, t, mutation_timeout_s=30, token="rb1")
        monkeypatch.undo()
        assert open_rows(db, client) == []
        out = publish.rollback_open(client, t, mutation_timeout_s=30, token="rb2")   # the operator triggers again
        assert open_rows(db, client) == first and out["restored_open_rows"] == len(first)


def test_empty_or_shrunk_open_part_never_becomes_the_rollback_target(db):
    first, staged = first_publish_then_new_trades(db, "unpartitioned")
    t = db.tables
    thresholds = {"min_unresolved_rows": 1, "max_drop_ratio": 0.5}
    with ch() as client:
        publish.publish(client, t, mutation_timeout_s=30, token="run2", **thresholds)    # saves `first` (good)
        client.command(f"ALTER TABLE {t.q(t.unified)} DELETE WHERE resolved_at IS NULL SETTINGS mutations_sync=2")
        publish.publish(client, t, mutation_timeout_s=30, token="run3", **thresholds)    # nothing open: no save
        client.command(f"ALTER TABLE {t.q(t.unified)} DELETE WHERE resolved_at IS NULL SETTINGS mutations_sync=2")
        db.insert_unified(client, [sc.stale_open_row()])                               # 1 open row: shrunk
        publish.publish(client, t, mutation_timeout_s=30, token="run4", **thresholds)
        gens = {g["token"]: g for g in publish.generations(client, t)}
        assert set(gens) == {"run2", "run4"} and len(first) > 2
        assert gens["run2"]["good"] and gens["run4"]["open_rows"] == 1 and not gens["run4"]["good"]
        publish.rollback_open(client, t, mutation_timeout_s=30, token="rb")
        assert open_rows(db, client) == first          # the last good generation, not the shrunk one
