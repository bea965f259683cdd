"""Every gate validation kept, per DAG, run and gate, and found again by the dupguard UI.

A validation is one small JSON record (the gate's summary: each expectation, its bounds, the
observed value, pass/fail, the reason of each bound; plus great-expectations' own result JSON)
written to ``<DUPGUARD_DATA_DOCS_DIR>/gates/<dag_id>/<run_id>/<gate>.json``. Nothing is rendered
here: the plugin renders the page on request at :func:`page_path`
(``/dupguard/docs/<dag_id>/<run_id>/<gate>``), so the per-minute gate pays one file write, not a
site rebuild, and the page needs no network (no CDN). Records older than
``DUPGUARD_DATA_DOCS_KEEP_DAYS`` (default 30) are pruned, at most once an hour.

Which run a validation belongs to comes from the task process's environment: Airflow's task
runner exports ``AIRFLOW_CTX_DAG_ID``, ``AIRFLOW_CTX_DAG_RUN_ID`` and ``AIRFLOW_CTX_TASK_ID``
before it calls the task. Outside Airflow the record goes under DAG ``adhoc``.

This module is imported by task processes: standard library only.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from dupguard.common import settings

log = logging.getLogger(__name__)

URL_PREFIX = "/dupguard/docs"
ADHOC_DAG_ID = "adhoc"
DEFAULT_KEEP_DAYS = 30.0
#: Pruning walks every kept run directory: once an hour is plenty for a 30-day retention.
PRUNE_EVERY_S = 3600
#: A GX result bigger than this is dropped from the record (the summary stays): a gate reads
#: one aggregate row, so this only guards against a pathological unexpected-values list.
MAX_GX_RESULT_BYTES = 200_000


def keep_days() -> float:
    raw = os.environ.get("DUPGUARD_DATA_DOCS_KEEP_DAYS", "").strip()
    try:
        return float(raw) if raw else DEFAULT_KEEP_DAYS
    except ValueError:
        log.warning("DUPGUARD_DATA_DOCS_KEEP_DAYS=%r is not a number; keeping %s days", raw, DEFAULT_KEEP_DAYS)
        return DEFAULT_KEEP_DAYS


def root() -> Path:
    return settings.data_docs_dir() / "gates"


def _name(part: str) -> str:
    """A file name for ``part`` that is reversible and never ``.``/``..`` or a path."""
    return quote(str(part), safe="-_").replace(".", "%2E") or "%00"


def record_path(dag_id: str, run_id: str, gate: str) -> Path:
    return root() / _name(dag_id) / _name(run_id) / f"{_name(gate)}.json"


def page_path(dag_id: str, run_id: str, gate: str) -> str:
    """URL path of the validation's page under the api-server (the plugin serves it)."""
    return f"{URL_PREFIX}/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/{quote(gate, safe='')}"


def page_url(path: str | None) -> str | None:
    """Absolute URL of a page path (``DUPGUARD_UI_BASE_URL`` + path), for alerts."""
    return f"{settings.ui_base_url()}{path}" if path else None


def task_identity() -> dict[str, Any]:
    """dag_id, run_id, task_id and try number of the calling task (from the environment Airflow's
    task runner exports), or an ``adhoc`` identity outside Airflow."""
    dag_id = os.environ.get("AIRFLOW_CTX_DAG_ID")
    run_id = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if not dag_id or not run_id:
        return {"dag_id": ADHOC_DAG_ID, "task_id": None, "try_number": None,
                "run_id": f"adhoc__{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"}
    try_number = os.environ.get("AIRFLOW_CTX_TRY_NUMBER")
    return {"dag_id": dag_id, "run_id": run_id, "task_id": os.environ.get("AIRFLOW_CTX_TASK_ID"),
            "try_number": int(try_number) if try_number and try_number.isdigit() else None}


def _gx_json(results: Iterable[Any] | None) -> list[Any] | None:
    if results is None:
        return None
    try:
        out = [r.to_json_dict() if hasattr(r, "to_json_dict") else r for r in results]
        if len(json.dumps(out, default=str)) > MAX_GX_RESULT_BYTES:
            return None
        return out
    except Exception as exc:  # noqa: BLE001 - the raw result is a courtesy; the summary is the record
        log.warning("data docs: could not serialise the great-expectations result: %s", exc)
        return None


def record(summary: dict[str, Any], *, gx_results: Iterable[Any] | None = None,
           identity: dict[str, Any] | None = None) -> str | None:
    """Keep ``summary`` (a :func:`dupguard.common.gate.run_gate` summary) as the record of this
    task's validation of ``summary["gate"]``; returns the page path, or None when the record
    could not be written (logged: a full disk must not turn a verdict into an error)."""
    who = identity or task_identity()
    gate = str(summary["gate"])
    path = page_path(who["dag_id"], who["run_id"], gate)
    doc = {"version": 1, "gate": gate, **who, "recorded_at": datetime.now(timezone.utc).isoformat(),
           "summary": {**summary, "data_docs": path}, "gx_result": _gx_json(gx_results)}
    target = record_path(who["dag_id"], who["run_id"], gate)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, default=str))
        os.replace(tmp, target)  # a reader never sees half a record
    except OSError as exc:
        log.warning("data docs: could not keep the validation of gate %s in %s: %s", gate, target, exc)
        return None
    maybe_prune()
    return path


def load(dag_id: str, run_id: str, gate: str) -> dict[str, Any] | None:
    try:
        return json.loads(record_path(dag_id, run_id, gate).read_text())
    except (OSError, ValueError):
        return None


def for_run(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every kept validation of one run, oldest first."""
    folder = root() / _name(dag_id) / _name(run_id)
    try:
        files = [p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith(".")]
    except OSError:
        return []
    docs = []
    for p in files:
        try:
            docs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(docs, key=lambda d: d.get("recorded_at") or "")


def runs_with_records(dag_id: str) -> list[str]:
    """Run ids of ``dag_id`` that have kept validations (unordered; a directory listing)."""
    try:
        return [unquote(p.name) for p in (root() / _name(dag_id)).iterdir() if p.is_dir()]
    except OSError:
        return []


def prune(days: float | None = None, *, now: float | None = None) -> int:
    """Remove the records of runs whose newest validation is older than ``days``; returns how
    many run directories went."""
    cutoff = (now or time.time()) - (keep_days() if days is None else days) * 86400
    removed = 0
    try:
        dag_dirs = [d for d in os.scandir(root()) if d.is_dir()]
    except OSError:
        return 0
    for dag_dir in dag_dirs:
        with os.scandir(dag_dir.path) as runs:
            old = [r.path for r in runs if r.is_dir() and r.stat().st_mtime < cutoff]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("data docs: pruned %d run(s) older than %.1f days", removed, (time.time() - cutoff) / 86400)
    return removed


def maybe_prune() -> None:
    """:func:`prune` when the last prune is older than :data:`PRUNE_EVERY_S` (a marker file's mtime)."""
    marker = root() / ".last_prune"
    try:
        if time.time() - marker.stat().st_mtime < PRUNE_EVERY_S:
            return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        marker.touch()
        prune()
    except OSError as exc:
        log.warning("data docs: pruning %s failed: %s", root(), exc)
