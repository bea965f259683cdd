"""Data-quality gates with great-expectations 1.x (ephemeral context, called from tasks).

A gate validates either a PostgreSQL table or query (the expectations' metrics are
computed by the database: give the gate an aggregate query, never a big table to
scan row by row in Python) or a small pandas DataFrame (an aggregate from ClickHouse).
Each expectation is logged on one line; Data Docs HTML lands in
``DUPGUARD_DATA_DOCS_DIR``; any failed expectation raises :class:`GateFailed` listing
all of them, so the gate task fails, the run fails and the alert goes out.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from dupguard import settings

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


try:  # a failed gate is a verdict on the data, not a transient error: fail without retrying
    from airflow.sdk.exceptions import AirflowFailException as _GateBase
except ImportError:  # pragma: no cover - outside Airflow
    _GateBase = Exception


class GateFailed(_GateBase):
    """Raised when at least one expectation of a gate fails (the task fails at once, no retry)."""

    def __init__(self, gate: str, failures: list[dict[str, Any]], summary: dict[str, Any]):
        self.gate = gate
        self.failures = failures
        self.summary = summary
        lines = [f"quality gate '{gate}' failed {len(failures)} expectation(s):"]
        lines += [f"  - {f['description']}: observed {f['observed']!r}" for f in failures]
        super().__init__("\n".join(lines))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "gate"


def _observed(result: dict[str, Any]) -> Any:
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        out = {"unexpected_count": result["unexpected_count"]}
        if result.get("partial_unexpected_list"):
            out["examples"] = result["partial_unexpected_list"][:5]
        return out
    return result or None


def _describe(expectation_type: str, kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in ("batch_id", "result_format") and v is not None}
    args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return f"{expectation_type}({args})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "item"):  # numpy scalars
        try:
            return v.item()
        except Exception:  # noqa: BLE001
            pass
    return str(v)


def run_gate(
    name: str,
    expectations: list[Any],
    *,
    conn_id: str | None = None,
    table: str | None = None,
    query: str | None = None,
    dataframe: Any = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Validate and return a JSON-able summary; raise :class:`GateFailed` on any failure.

    Exactly one source: ``conn_id`` with ``table`` ("schema.table") or ``query``, or
    ``dataframe``.
    """
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    sources = [table is not None, query is not None, dataframe is not None]
    if sum(sources) != 1:
        raise ValueError("run_gate needs exactly one of table=, query= or dataframe=")
    if (table is not None or query is not None) and not conn_id:
        raise ValueError("run_gate with table= or query= needs conn_id=")
    if not expectations:
        raise ValueError("run_gate needs at least one expectation")

    gate = _safe_name(name)
    context = gx.get_context(mode="ephemeral")
    docs_dir = settings.data_docs_dir()
    docs_dir.mkdir(parents=True, exist_ok=True)
    site = "dupguard"
    context.add_data_docs_site(site_name=site, site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })

    batch_parameters: dict[str, Any] = {}
    if dataframe is not None:
        ds = context.data_sources.add_pandas(name=f"{gate}_source")
        asset = ds.add_dataframe_asset(name=gate)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{gate}_batch")
        batch_parameters = {"dataframe": dataframe}
        source_desc = f"dataframe[{len(dataframe)} rows]"
    else:
        from dupguard.connections import sqlalchemy_url

        ds = context.data_sources.add_postgres(name=f"{gate}_source", connection_string=sqlalchemy_url(conn_id))
        if table is not None:
            schema, _, tname = table.rpartition(".")
            asset = ds.add_table_asset(name=gate, table_name=tname, schema_name=schema or None)
            source_desc = f"{conn_id}:{table}"
        else:
            asset = ds.add_query_asset(name=gate, query=query)
            source_desc = f"{conn_id}:query"
        batch_def = asset.add_batch_definition_whole_table(f"{gate}_batch")

    suite = context.suites.add(gx.ExpectationSuite(name=f"{gate}_suite"))
    for e in expectations:
        suite.add_expectation(e.copy() if hasattr(e, "copy") else e)
    vd = context.validation_definitions.add(gx.ValidationDefinition(name=f"{gate}_validation", data=batch_def, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{gate}_checkpoint", validation_definitions=[vd],
        actions=[UpdateDataDocsAction(name="docs", site_names=[site])], result_format="SUMMARY",
    ))
    run = checkpoint.run(batch_parameters=batch_parameters)

    results: list[dict[str, Any]] = []
    for vr in run.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            kwargs = dict(cfg.kwargs)
            item = {
                "expectation": cfg.type,
                "description": _describe(cfg.type, kwargs),
                "observed": _jsonable(_observed(r.result or {})),
                "success": bool(r.success),
            }
            if r.exception_info and r.exception_info.get("raised_exception"):
                item["observed"] = f"error: {r.exception_info.get('exception_message')}"
            results.append(item)
    for item in results:
        log.info("gate %s | %-4s | %s | observed=%s", name, "PASS" if item["success"] else "FAIL",
                 item["description"], item["observed"])
    failures = [r for r in results if not r["success"]]
    summary = {
        "gate": name,
        "source": source_desc,
        "success": not failures and bool(run.success),
        "evaluated": len(results),
        "failed": len(failures),
        "results": results,
        "data_docs": str(docs_dir / "index.html"),
    }
    log.info("gate %s: %s (%d/%d passed); Data Docs: %s", name, "PASSED" if summary["success"] else "FAILED",
             len(results) - len(failures), len(results), summary["data_docs"])
    if failures and raise_on_failure:
        raise GateFailed(name, failures, summary)
    return summary
