"""Alerts of the per-minute cleanup as incidents (real SMTP, real dag.test() runs): a table that is
unavailable for five runs gives one FAILED, its return one RECOVERED, healthy runs nothing."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

DAG = "blocks_duplicate_cleanup"



def _subjects(sink) -> list[str]:
    time.sleep(1.0)  # a message that should not be sent has time to arrive if it were
    return sorted(m["Subject"] for m in sink.messages)


def _runs(run_dag, start, n):
    return [run_dag(DAG, start + timedelta(minutes=i)) for i in range(n)]


def test_one_table_unavailable_for_five_runs_then_back(tdb, run_dag, logical_date, smtp_sink,
                                                       monkeypatch):
    monkeypatch.setenv("DUPGUARD_ALERT_REPEAT_MINUTES", "60")
    tdb.execute("ALTER TABLE blocks RENAME TO blocks_away")
    failed = _runs(run_dag, logical_date, 5)
    assert [r.task_states["delete_duplicate_blocks"] for r in failed] == ["failed"] * 5
    assert all(r.task_states["delete_duplicate_streams"] == "success" for r in failed)
    subjects = _subjects(smtp_sink)
    assert subjects == [f"[dupguard] FAILED {DAG}.delete_duplicate_blocks run {failed[0].run_id}"]
    body = smtp_sink.messages[0].get_body(preferencelist=("plain",)).get_content()
    assert "public.blocks does not exist" in body and "Next step:" in body

    smtp_sink.clear()
    tdb.execute("ALTER TABLE blocks_away RENAME TO blocks")
    healthy = _runs(run_dag, logical_date + timedelta(minutes=5), 2)
    assert all(r.succeeded for r in healthy)
    subjects = _subjects(smtp_sink)
    assert len(subjects) == 1, subjects
    assert subjects[0].startswith(f"[dupguard] RECOVERED {DAG}.delete_duplicate_blocks after 5 failed runs (")


def test_two_tables_unavailable_are_two_incidents(tdb, run_dag, logical_date, smtp_sink):
    tdb.execute("ALTER TABLE blocks RENAME TO blocks_away")
    tdb.execute("ALTER TABLE streams RENAME TO streams_away")
    failed = _runs(run_dag, logical_date, 3)
    assert _subjects(smtp_sink) == sorted(
        [f"[dupguard] FAILED {DAG}.delete_duplicate_blocks run {failed[0].run_id}",
         f"[dupguard] FAILED {DAG}.delete_duplicate_streams run {failed[0].run_id}"])
    smtp_sink.clear()
    tdb.execute("ALTER TABLE blocks_away RENAME TO blocks")
    tdb.execute("ALTER TABLE streams_away RENAME TO streams")
    assert run_dag(DAG, logical_date + timedelta(minutes=3)).succeeded
    subjects = _subjects(smtp_sink)
    assert [s.split(" after ")[0] for s in subjects] == [f"[dupguard] RECOVERED {DAG}.delete_duplicate_blocks",
                                                        f"[dupguard] RECOVERED {DAG}.delete_duplicate_streams"]
    assert all(" after 3 failed runs (" in s for s in subjects)
