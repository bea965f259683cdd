"""The HTML pages of the dupguard view: the dashboard, a run's reports and gates, a gate's Data
Docs. Built from :mod:`queries` and :mod:`dupguard.common.data_docs`; rendered with the Jinja2
templates under ``templates/``, the stylesheet inlined (one request per page, nothing external)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from dupguard.common import data_docs
from dupguard.ui import catalog, charts, queries

HERE = Path(__file__).resolve().parent
WINDOWS = {"24h": ("24 h", timedelta(hours=24)), "7d": ("7 days", timedelta(days=7))}
#: How many of a DAG's newest runs are searched for its latest kept gate validations.
GATE_LOOKBACK_RUNS = 5


# --- formatting -------------------------------------------------------------------
def number(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    return str(v)


def size(v: Any) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "–"
    for unit, div in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(v) >= div:
            return f"{v / div:,.1f} {unit}"
    return f"{int(v)} B"


def bounds(r: dict[str, Any]) -> str:
    lo, hi = r.get("min"), r.get("max")
    if lo is None and hi is None:
        kwargs = (r.get("description") or "").partition("(")[2].rstrip(")")
        return kwargs or "–"
    if lo is not None and hi is not None:
        return f"= {number(lo)}" if lo == hi else f"{number(lo)} … {number(hi)}"
    return f"≥ {number(lo)}" if lo is not None else f"≤ {number(hi)}"


def observed(r: dict[str, Any]) -> str:
    """The value the gate saw: its own value when recorded, GX's observed value, or the
    unexpected values (on a one-row aggregate those are the value itself)."""
    if r.get("error"):
        return "not computed"
    if "value" in r:
        return number(r["value"])
    obs = r.get("observed")
    if isinstance(obs, dict):
        if obs.get("unexpected_values"):
            return ", ".join(number(v) for v in obs["unexpected_values"])
        if obs.get("unexpected_count") == 0:
            return "within bound"
        if "unexpected_count" in obs:
            return f"{number(obs['unexpected_count'])} row(s) outside"
        return ", ".join(f"{k}={number(v)}" for k, v in obs.items())
    return number(obs)


def value_html(v: Any, depth: int = 0) -> Markup:
    """A report as nested key/value tables (lists of uniform dicts as one table)."""
    if isinstance(v, dict):
        if not v:
            return Markup('<span class="muted">{}</span>')
        rows = "".join(f'<tr><td class="k">{escape(k)}</td><td>{value_html(x, depth + 1)}</td></tr>' for k, x in v.items())
        return Markup(f'<table class="kv">{rows}</table>')
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(k for x in v for k in x))
            head = "".join(f"<th>{escape(c)}</th>" for c in cols)
            body = "".join("<tr>" + "".join(f"<td>{value_html(x.get(c), depth + 1)}</td>" for c in cols) + "</tr>"
                           for x in v)
            return Markup(f'<table class="grid"><tr>{head}</tr>{body}</table>')
        return Markup(", ".join(str(value_html(x, depth + 1)) for x in v) or '<span class="muted">[]</span>')
    if isinstance(v, str):
        return Markup(f'<span class="mono">{escape(v)}</span>')
    return Markup(escape(number(v)))


def age(t: datetime | None, now: datetime) -> str:
    if t is None:
        return "–"
    s = (now - t).total_seconds()
    if s < 90:
        return f"{int(s)} s ago"
    if s < 5400:
        return f"{int(s // 60)} min ago"
    if s < 172800:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} days ago"


@cache
def _env():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(q=lambda s: quote(str(s), safe=""), n=number, bytes=size, bounds=bounds, observed=observed,
                       value=value_html)
    env.globals["css"] = Markup((HERE / "static" / "dupguard.css").read_text())
    return env


def render(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)


# --- gate records -----------------------------------------------------------------
def latest_gates(session, dag_id: str) -> list[dict[str, Any]]:
    """The newest kept validation of each gate of ``dag_id`` (among its last few runs)."""
    found: dict[str, dict[str, Any]] = {}
    for r in queries.runs(session, dag_id, limit=GATE_LOOKBACK_RUNS):
        for doc in data_docs.for_run(dag_id, r.run_id):
            found.setdefault(doc["gate"], doc)
    return sorted(found.values(), key=lambda d: d.get("recorded_at") or "", reverse=True)


# --- dashboard --------------------------------------------------------------------
def _x_start(since: datetime, now: datetime, first: datetime | None) -> datetime:
    """Where the time axis starts: the window's start, or shortly before the first run in it when
    the runs began later (a fresh install shows its runs, not 23 empty hours)."""
    first = first or since
    return max(since, first - max((now - first) / 10, timedelta(minutes=5)))


def _system_charts(session, system: catalog.System, since: datetime,
                   now: datetime) -> tuple[list[str], list[str], dict[str, int]]:
    """The system's line charts and gate strips, and how many runs each DAG had in the window."""
    svgs, strips, counts = [], [], {}
    by_dag: dict[str, list[catalog.Chart]] = {}
    for chart in system.charts:
        by_dag.setdefault(chart.dag_id, []).append(chart)
    for dag_id in system.dags:
        gates = [f"gate.{t}" for t in catalog.GATES.get(dag_id) or queries.gate_tasks_seen(session, dag_id)]
        metrics = [m for c in by_dag.get(dag_id, []) for m in c.metrics]
        s = queries.series(session, dag_id, metrics + gates, since)
        counts[dag_id] = len(s.runs)
        known = catalog.metrics(dag_id)
        start = _x_start(since, now, s.runs[0].run_after if s.runs else None)
        timeline = charts.Timeline([r.run_after for r in s.runs], [r.run_id for r in s.runs])
        for chart in by_dag.get(dag_id, []) if s.runs else ():
            lines = [(known[m].label.split(" (")[-1].rstrip(")") if len(chart.metrics) > 1 else known[m].label,
                      s.values[m]) for m in chart.metrics]
            svgs.append(charts.line_chart(f"{chart.title} · {dag_id}", timeline, lines, start, now, unit=chart.unit))
        if s.runs:
            for g in gates:
                strips.append(charts.gate_strip(f"{g.removeprefix('gate.')} · {dag_id}", timeline, s.values[g],
                                                start, now))
    return svgs, strips, counts


def _migration(session) -> dict[str, Any]:
    """The ledger and the per-table figures (from the ledger's steps, else the latest run's reports)."""
    ledger = queries.migration_ledger()
    row = ledger.get("row")
    out: dict[str, Any] = {"ledger": None, "steps": [], "tables": [], "source": ""}
    if row:
        steps = row.get("steps") or {}
        out["ledger"] = {k: row.get(k) for k in ("status", "run_id", "dag_id", "claimed_at", "heartbeat_at",
                                                  "finished_at")}
        out["steps"] = [s for s in steps if s != "baseline"]
        reports, out["source"] = steps, "from the ledger"
    else:
        out["ledger_note"] = ("No migration has been claimed yet." if "error" not in ledger
                              else f"Ledger unavailable: {ledger['error']}")
        reports = {}
        recent = queries.runs(session, catalog.MIGRATION_DAG_ID, limit=20)
        for pk, reps in queries.reports(session, [r.id for r in recent], ("preflight", "dedup", "reclaim",
                                                                          "quality_gate")).items():
            if reps.get("preflight"):
                reports = reps
                out["source"] = "from run " + next(r.run_id for r in recent if r.id == pk)
                break
    for t in catalog.breezeway_tables():
        pre = catalog.dig(reports.get("preflight"), "tables", ("table", t)) or {}
        rec = catalog.dig(reports.get("reclaim"), "tables", t) or {}
        gate = catalog.dig(reports.get("quality_gate"), "tables", ("table_name", t)) or {}
        if not pre:
            continue
        after = rec.get("size_after")
        out["tables"].append({
            "table": t, "rows_before": pre.get("rows"), "duplicates": pre.get("duplicates"),
            "removed": catalog.dig(reports.get("dedup"), "tables", t, "removed"), "rows_after": rec.get("live_rows"),
            "size_before": pre.get("size_bytes"), "size_after": after,
            "reclaimed": pre["size_bytes"] - after if isinstance(after, int) and pre.get("size_bytes") else None,
            "duplicate_keys": gate.get("duplicate_keys"),
            "constraint_valid": bool(gate["constraint_valid"]) if "constraint_valid" in gate else None})
    return out


def dashboard(session, *, window: str, allowed: set[str], base: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    label, span = WINDOWS[window]
    since = now - span
    flags = queries.dag_flags(session, catalog.DAG_IDS)
    incidents = [i for i in queries.open_incidents(session) if i.get("dag_id") in allowed]
    tagged = queries.dupguard_dags(session)
    systems = []
    for system in catalog.systems():
        more = sorted(d for d, s in tagged.items() if s == system.key and d not in system.dags)
        dag_ids = tuple(d for d in (*system.dags, *more) if d in allowed)
        if not dag_ids:
            continue
        visible = catalog.System(system.key, system.title, dag_ids,
                                 tuple(c for c in system.charts if c.dag_id in dag_ids))
        svgs, strips, counts = _system_charts(session, visible, since, now)
        dags = []
        for dag_id in dag_ids:
            last = queries.latest_run(session, dag_id)
            dags.append({"dag_id": dag_id, "last": last, "state": str(last.state) if last and last.state else None,
                         "age": age(last.run_after if last else None, now),
                         "is_paused": flags.get(dag_id, {}).get("is_paused"),
                         "runs_in_window": counts.get(dag_id, 0),
                         "incidents": [i for i in incidents if i.get("dag_id") == dag_id]})
        gates = [doc for d in dag_ids for doc in latest_gates(session, d)]
        systems.append({"key": system.key, "title": system.title, "dags": dags, "charts": [Markup(s) for s in svgs],
                        "strips": [Markup(s) for s in strips], "gates": gates,
                        "chart_dags": sorted({c.dag_id for c in visible.charts}),
                        "migration": _migration(session) if catalog.MIGRATION_DAG_ID in dag_ids else None})
    return render("dashboard.html", base=base, now=now, window=window, window_label=label,
                  windows=[(k, v[0]) for k, v in WINDOWS.items()], systems=systems, incidents=incidents)


# --- one run ----------------------------------------------------------------------
def run_page(session, *, dag_id: str, run_id: str, task_id: str | None, base: str) -> tuple[int, str]:
    known = dag_id in catalog.GATES or dag_id in queries.dupguard_dags(session)
    run = queries.run(session, dag_id, run_id) if known else None
    ctx: dict[str, Any] = {"base": base, "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "known": known,
                           "run": None, "gates": [], "tasks": [], "gate_tasks": ()}
    if run is None:
        return (200 if not known else 404), render("run.html", **ctx)
    reps = queries.reports(session, [run.id])[run.id]
    states = queries.task_states(session, dag_id, run_id)
    names = sorted(set(states) | set(reps), key=lambda t: (t not in reps, t))
    if task_id:
        names = [t for t in names if t == task_id]
    docs = [d for d in data_docs.for_run(dag_id, run_id) if not task_id or d.get("task_id") == task_id]
    ctx.update(run=queries.run_dict(run), gates=docs, tasks=[(t, states.get(t), reps.get(t)) for t in names],
               gate_tasks=[t for t in catalog.GATES.get(dag_id, ()) if not task_id or t == task_id])
    return 200, render("run.html", **ctx)


def docs_page(*, dag_id: str, run_id: str, gate: str, base: str) -> tuple[int, str]:
    doc = data_docs.load(dag_id, run_id, gate)
    if doc is None:
        return 404, render("message.html", status="Not found", message=(
            f"No validation of gate {gate!r} is kept for run {run_id!r} of {dag_id!r} "
            f"(kept for {data_docs.keep_days():g} days)."))
    return 200, render("docs.html", doc=doc, base=base)
