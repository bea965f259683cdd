"""Data-quality gates, declared as data and run with great-expectations 1.x (ephemeral context).

A gate is a :class:`GateSpec`: a name, the table(s) it speaks of, and :class:`Check` rows (a
column of a one-row aggregate, its bounds, and the reason for each bound). :func:`run_gate`
renders the checks into GX expectations and validates either a PostgreSQL query (the database
computes the metrics: give it an aggregate, never a big table) or a small DataFrame (an
aggregate from ClickHouse). Bounds that depend on a run's params name them (``min="min_rows"``)
and are bound at run time.

Two ways to fail, told apart:
* a computed value outside its bound is a **verdict**: :class:`GateFailed`, an
  ``AirflowFailException`` (no retry: the same data gives the same answer);
* a metric that could not be computed (connection lost, statement timeout, missing table) is an
  **error**: :class:`GateError`, which Airflow retries like any transient failure.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

try:
    from airflow.sdk.exceptions import AirflowFailException as _VerdictBase
except ImportError:  # pragma: no cover - outside Airflow
    _VerdictBase = Exception

Bound = float | int | str | None
MAX_OFFENDING = 10  # a number, or the name of a run-time value (a param)


@dataclass(frozen=True)
class Check:
    """One expectation: ``column`` of the aggregate lies within [min, max] (``kind="between"``),
    the aggregate has ``min`` rows (``kind="rows"``), or ``column`` equals ``other`` on every
    row (``kind="equal"``)."""

    column: str | None
    reason: str
    min: Bound = None
    max: Bound = None
    kind: str = "between"
    other: str | None = None


def zero(column: str, reason: str) -> Check:
    return Check(column, reason, min=0, max=0)


def at_least(column: str, bound: Bound, reason: str) -> Check:
    return Check(column, reason, min=bound)


def at_most(column: str, bound: Bound, reason: str) -> Check:
    return Check(column, reason, max=bound)


@dataclass(frozen=True)
class GateSpec:
    name: str
    checks: tuple[Check, ...]
    tables: tuple[str, ...] = field(default=())  # the table(s) concerned, named in alerts

    def with_checks(self, *more: Check) -> GateSpec:
        return GateSpec(self.name, self.checks + tuple(more), self.tables)


class GateFailed(_VerdictBase):
    """At least one expectation was computed and is outside its bound (fails without retry)."""

    def __init__(self, gate: str, failures: list[dict[str, Any]], summary: dict[str, Any]):
        self.gate = gate
        self.failures = failures
        self.summary = summary
        lines = [f"quality gate '{gate}' failed {len(failures)} expectation(s):"]
        lines += [f"  - {f['description']}: observed {f['observed']!r}" for f in failures]
        if summary.get("offending"):
            lines.append(f"  offending keys (up to {MAX_OFFENDING}): {summary['offending']!r}")
        super().__init__("\n".join(lines))


class GateError(RuntimeError):
    """A gate's metric could not be computed (connection lost, timeout, missing table): not a
    verdict on the data, so Airflow retries the task."""

    def __init__(self, gate: str, errors: list[dict[str, Any]]):
        self.gate = gate
        self.errors = errors
        lines = [f"quality gate '{gate}' could not compute {len(errors)} expectation(s) (an error, not a verdict):"]
        lines += [f"  - {e['description']}: {e['error']}" for e in errors]
        super().__init__("\n".join(lines))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "gate"


def _bind(bound: Bound, values: dict[str, Any]) -> float | int | None:
    if isinstance(bound, str):
        if bound not in values:
            raise ValueError(f"gate bound '{bound}' needs a value (pass bounds={{'{bound}': ...}})")
        return values[bound]
    return bound


def expectations_for(spec: GateSpec, bounds: dict[str, Any] | None = None) -> list[Any]:
    """The GX expectations of ``spec`` with run-time bounds filled in."""
    import great_expectations as gx

    values = bounds or {}
    out = []
    for c in spec.checks:
        lo, hi = _bind(c.min, values), _bind(c.max, values)
        if c.kind == "between":
            out.append(gx.expectations.ExpectColumnValuesToBeBetween(column=c.column, min_value=lo, max_value=hi))
        elif c.kind == "rows":
            out.append(gx.expectations.ExpectTableRowCountToEqual(value=lo))
        elif c.kind == "equal":
            out.append(gx.expectations.ExpectColumnPairValuesToBeEqual(column_A=c.column, column_B=c.other))
        else:
            raise ValueError(f"unknown check kind {c.kind!r} in gate {spec.name}")
    return out


_KINDS = {"between": "expect_column_values_to_be_between", "rows": "expect_table_row_count_to_equal",
          "equal": "expect_column_pair_values_to_be_equal"}


def _observed(result: dict[str, Any]) -> Any:
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        out = {"unexpected_count": result["unexpected_count"]}
        if result.get("partial_unexpected_list"):
            out["unexpected_values"] = result["partial_unexpected_list"][:5]
        return out
    return result or None


def _raised(info: Any) -> str | None:
    """The message of an exception GX caught while computing a metric (its ``exception_info`` is
    either one record or a record per metric), or None."""
    if not isinstance(info, dict):
        return None
    records = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for rec in records:
        if rec.get("raised_exception"):
            msg = str(rec.get("exception_message") or "").strip()
            return msg.splitlines()[0] if msg else "unknown error"
    return None


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


def run_gate(spec: GateSpec, *, conn_id: str | None = None, query: str | None = None, dataframe: Any = None,
             bounds: dict[str, Any] | None = None, offending: Callable[[], list[Any]] | None = None,
             raise_on_failure: bool = True) -> dict[str, Any]:
    """Validate ``spec`` against a PostgreSQL ``query`` (with ``conn_id``) or a ``dataframe``;
    return a JSON-able summary. Raises :class:`GateFailed` (a verdict) or :class:`GateError`
    (a metric that could not be computed). ``offending``, called only when the gate fails,
    returns up to :data:`MAX_OFFENDING` offending keys (ids, natural keys, wallets) for the alert."""
    import great_expectations as gx

    from dupguard.common import data_docs

    if (query is None) == (dataframe is None):
        raise ValueError("run_gate needs exactly one of query= or dataframe=")
    if query is not None and not conn_id:
        raise ValueError("run_gate with query= needs conn_id=")
    if not spec.checks:
        raise ValueError(f"gate {spec.name} has no checks")
    expectations = expectations_for(spec, bounds)

    gate = _safe_name(spec.name)
    context = gx.get_context(mode="ephemeral")

    batch_parameters: dict[str, Any] = {}
    if dataframe is not None:
        ds = context.data_sources.add_pandas(name=f"{gate}_source")
        asset = ds.add_dataframe_asset(name=gate)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{gate}_batch")
        batch_parameters = {"dataframe": dataframe}
        source_desc = f"dataframe[{len(dataframe)} rows]"
    else:
        from dupguard.common.connections import sqlalchemy_url

        ds = context.data_sources.add_postgres(name=f"{gate}_source", connection_string=sqlalchemy_url(conn_id))
        asset = ds.add_query_asset(name=gate, query=query)
        source_desc = f"{conn_id}:query"
        batch_def = asset.add_batch_definition_whole_table(f"{gate}_batch")

    suite = context.suites.add(gx.ExpectationSuite(name=f"{gate}_suite"))
    for e in expectations:
        suite.add_expectation(e)
    vd = context.validation_definitions.add(gx.ValidationDefinition(name=f"{gate}_validation", data=batch_def, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{gate}_checkpoint", validation_definitions=[vd],
        actions=[], result_format="SUMMARY",  # no GX site: data_docs keeps a JSON record, the UI renders it
    ))
    try:
        run = checkpoint.run(batch_parameters=batch_parameters)
    except Exception as exc:  # the batch itself could not be read: the database, not the data
        raise GateError(spec.name, [{"description": "read the gate's aggregate", "error": str(exc).strip()}]) from exc

    reasons = {_KINDS[c.kind] + (c.column or "") + (c.other or ""): c.reason for c in spec.checks}
    results: list[dict[str, Any]] = []
    for vr in run.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            item = {
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column"),
                "min": _jsonable(cfg.kwargs.get("min_value")),
                "max": _jsonable(cfg.kwargs.get("max_value")),
                "description": _describe(cfg.type, dict(cfg.kwargs)),
                "reason": reasons.get(cfg.type + (cfg.kwargs.get("column") or cfg.kwargs.get("column_A") or "")
                                      + (cfg.kwargs.get("column_B") or ""), ""),
                "observed": _jsonable(_observed(r.result or {})),
                "success": bool(r.success),
            }
            error = _raised(r.exception_info)
            if error:
                item["error"] = error
            results.append(item)
    for item in results:
        log.info("gate %s | %-5s | %s | observed=%s", spec.name,
                 "ERROR" if "error" in item else ("PASS" if item["success"] else "FAIL"),
                 item["description"], item.get("error", item["observed"]))
    errors = [r for r in results if "error" in r]
    failures = [r for r in results if not r["success"] and "error" not in r]
    summary = {
        "gate": spec.name,
        "tables": list(spec.tables),
        "source": source_desc,
        "success": not failures and not errors,
        "evaluated": len(results),
        "failed": len(failures),
        "results": results,
        "data_docs": None,
    }
    if failures and not errors and offending is not None:
        try:
            summary["offending"] = _jsonable(list(offending())[:MAX_OFFENDING])
        except Exception as exc:  # noqa: BLE001 - the examples are a courtesy; the verdict stands
            log.warning("gate %s: could not list the offending keys: %s", spec.name, exc)
    summary["data_docs"] = data_docs.record(summary, gx_results=run.run_results.values())
    log.info("gate %s: %s (%d/%d passed); Data Docs: %s", spec.name, "PASSED" if summary["success"] else "FAILED",
             len(results) - len(failures) - len(errors), len(results), data_docs.page_url(summary["data_docs"]))
    if errors:
        raise GateError(spec.name, errors)
    if failures and raise_on_failure:
        raise GateFailed(spec.name, failures, summary)
    return summary
