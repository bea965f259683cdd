"""Gate validations kept per DAG, run and gate (dupguard.common.data_docs), from a real gate run."""
from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from dupguard.common import data_docs
from dupguard.common.gate import GateFailed, GateSpec, at_least, run_gate, zero

SPEC = GateSpec("ui_probe", (zero("duplicate_ids", "a retried row must be removed"),
                             at_least("rows", 5, "the aggregate saw the table")), ("public.probe",))


@pytest.fixture()
def docs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DUPGUARD_DATA_DOCS_DIR", str(tmp_path))
    return tmp_path


def _as_task(monkeypatch, dag_id="probe_dag", run_id="manual__2026-01-01T00:00:00+00:00", task_id="quality_gate"):
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", dag_id)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", run_id)
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", task_id)
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "2")


def test_each_validation_is_kept_per_dag_run_and_gate(docs_dir, monkeypatch):
    _as_task(monkeypatch, run_id="manual__1")
    first = run_gate(SPEC, dataframe=pd.DataFrame([{"duplicate_ids": 0, "rows": 10}]))
    _as_task(monkeypatch, run_id="manual__2")
    with pytest.raises(GateFailed) as failed:
        run_gate(SPEC, dataframe=pd.DataFrame([{"duplicate_ids": 3, "rows": 10}]))
    assert first["data_docs"] == "/dupguard/docs/probe_dag/manual__1/ui_probe"
    assert failed.value.summary["data_docs"] == "/dupguard/docs/probe_dag/manual__2/ui_probe"
    ok, bad = data_docs.load("probe_dag", "manual__1", "ui_probe"), data_docs.load("probe_dag", "manual__2", "ui_probe")
    assert ok["summary"]["success"] is True and bad["summary"]["success"] is False, "the failure did not overwrite"
    assert (bad["task_id"], bad["try_number"]) == ("quality_gate", 2)
    failed_row = next(r for r in bad["summary"]["results"] if r["column"] == "duplicate_ids")
    assert (failed_row["min"], failed_row["max"], failed_row["success"]) == (0, 0, False)
    assert failed_row["observed"]["unexpected_values"] == [3]
    assert failed_row["reason"] == "a retried row must be removed"
    assert bad["gx_result"][0]["results"], "great-expectations' own result JSON is kept"
    assert sorted(data_docs.runs_with_records("probe_dag")) == ["manual__1", "manual__2"]
    assert not list(docs_dir.glob("*.html")) and not (docs_dir / "index.html").exists(), "no GX site is built"


def test_outside_airflow_the_record_goes_under_adhoc(docs_dir, monkeypatch):
    for var in ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    summary = run_gate(SPEC, dataframe=pd.DataFrame([{"duplicate_ids": 0, "rows": 9}]))
    assert summary["data_docs"].startswith("/dupguard/docs/adhoc/adhoc__")
    (run_id,) = data_docs.runs_with_records("adhoc")
    assert data_docs.load("adhoc", run_id, "ui_probe")["summary"]["success"] is True


def test_names_are_reversible_and_never_leave_the_folder(docs_dir):
    ident = {"dag_id": "..", "run_id": "../../etc/x:y+z", "task_id": "t", "try_number": 1}
    path = data_docs.record({"gate": "../g h", "success": True, "results": []}, identity=ident)
    assert path == "/dupguard/docs/../..%2F..%2Fetc%2Fx%3Ay%2Bz/..%2Fg%20h"  # URL-quoted, dots kept
    files = list(docs_dir.rglob("*.json"))
    assert len(files) == 1 and files[0].is_relative_to(docs_dir / "gates")
    assert data_docs.load("..", "../../etc/x:y+z", "../g h")["task_id"] == "t"
    assert data_docs.runs_with_records("..") == ["../../etc/x:y+z"]


def test_records_older_than_keep_days_are_pruned(docs_dir, monkeypatch):
    monkeypatch.setenv("DUPGUARD_DATA_DOCS_KEEP_DAYS", "30")
    for run_id in ("old", "new"):
        data_docs.record({"gate": "g", "success": True, "results": []},
                         identity={"dag_id": "d", "run_id": run_id, "task_id": None, "try_number": None})
    old_dir = data_docs.record_path("d", "old", "g").parent
    past = time.time() - 31 * 86400
    os.utime(old_dir, (past, past))
    assert data_docs.prune() == 1
    assert data_docs.runs_with_records("d") == ["new"]
    # the next record prunes by itself once the last prune is an hour old
    os.utime(data_docs.record_path("d", "new", "g").parent, (past, past))
    os.utime(data_docs.root() / ".last_prune", (past, past))
    data_docs.record({"gate": "g", "success": True, "results": []},
                     identity={"dag_id": "d", "run_id": "newest", "task_id": None, "try_number": None})
    assert data_docs.runs_with_records("d") == ["newest"]
