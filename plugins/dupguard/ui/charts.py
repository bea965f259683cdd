"""SVG charts rendered on the server: no JavaScript, no chart library, no network.

:func:`line_chart` draws one line per metric with one marker per run (the marker's tooltip names
the run and its value); :func:`gate_strip` draws one tick per run, green when the gate passed and
red when it failed. Every series group carries ``data-points`` (its number of runs with a value).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from html import escape
from typing import NamedTuple

PALETTE = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2")
#: Above this many markers in one chart only the lines are drawn (a week of per-minute runs).
MAX_MARKERS = 1500
_TICK_STEPS = (*(timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30)),
               *(timedelta(hours=h) for h in (1, 2, 3, 4, 6, 12, 24, 48, 168)))


class Timeline(NamedTuple):
    """The runs of a chart, oldest first: when each ran and its id (every series has one value per run)."""

    at: list[datetime]
    run_ids: list[str]


def compact(value: float | None) -> str:
    """1234 -> 1.2k, 3400000 -> 3.4M, 0.25 -> 0.25."""
    if value is None:
        return "-"
    a = abs(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{value / div:.1f}".rstrip("0").rstrip(".") + suffix
    if a == int(a):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def nice_max(value: float) -> tuple[float, float]:
    """An axis maximum >= value and its tick step (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return step * math.ceil(value / step), step


def _time_ticks(start: datetime, end: datetime) -> list[datetime]:
    """At most 7 ticks on round times (multiples of the step since midnight UTC)."""
    step = next((s for s in _TICK_STEPS if (end - start) / s <= 7), _TICK_STEPS[-1])
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    t = midnight + step * math.ceil((start - midnight) / step)
    ticks = []
    while t <= end:
        ticks.append(t)
        t += step
    return ticks


def _tick_label(t: datetime, span: timedelta) -> str:
    return t.strftime("%a %d %b") if span > timedelta(days=2) else t.strftime("%H:%M")


class _Frame:
    def __init__(self, start: datetime, end: datetime, width: int, height: int, left: int = 52, right: int = 14,
                 top: int = 34, bottom: int = 26):
        self.start, self.end = start, end
        self.x0, self.x1, self.y0, self.y1 = left, width - right, top, height - bottom
        self.width, self.height = width, height
        self.span = max((end - start).total_seconds(), 1.0)

    def x(self, t: datetime) -> float:
        frac = (t - self.start).total_seconds() / self.span
        return round(self.x0 + min(max(frac, 0.0), 1.0) * (self.x1 - self.x0), 1)

    def x_axis(self) -> list[str]:
        span = self.end - self.start
        out = [f'<line class="axis" x1="{self.x0}" y1="{self.y1}" x2="{self.x1}" y2="{self.y1}"/>']
        for t in _time_ticks(self.start, self.end):
            x = self.x(t)
            out.append(f'<line class="grid" x1="{x}" y1="{self.y0}" x2="{x}" y2="{self.y1}"/>'
                       f'<text class="tick" x="{x}" y="{self.y1 + 16}" text-anchor="middle">'
                       f'{escape(_tick_label(t, span))}</text>')
        return out


def _open(title: str, width: int, height: int, kind: str) -> list[str]:
    return [f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" role="img" aria-label="{escape(title)}">',
            f'<text class="title" x="8" y="16">{escape(title)}</text>']


def line_chart(title: str, runs: Timeline, series: list[tuple[str, list[float | None]]], start: datetime,
               end: datetime, *, unit: str = "", width: int = 640, height: int = 220) -> str:
    """One line per ``(label, values)``, a value per run; runs without a value are left out."""
    f = _Frame(start, end, width, height)
    xs = [f.x(t) for t in runs.at]
    values = [v for _, vals in series for v in vals if v is not None]
    top, step = nice_max(max(values) if values else 0)
    out = _open(title, width, height, "line")
    lx = 8
    for i, (label, _) in enumerate(series):  # legend under the title
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{lx}" y="22" width="10" height="3" fill="{color}"/>'
                   f'<text class="legend" x="{lx + 14}" y="27">{escape(label)}</text>')
        lx += 22 + 7 * len(label)
    if unit:
        out.append(f'<text class="tick" x="{width - 8}" y="16" text-anchor="end">{escape(unit)}</text>')
    n_ticks = int(round(top / step))
    for k in range(n_ticks + 1):
        y = round(f.y1 - (f.y1 - f.y0) * k / n_ticks, 1)
        out.append(f'<line class="grid" x1="{f.x0}" y1="{y}" x2="{f.x1}" y2="{y}"/>'
                   f'<text class="tick" x="{f.x0 - 6}" y="{y + 4}" text-anchor="end">{compact(step * k)}</text>')
    out += f.x_axis()
    markers = len(values) <= MAX_MARKERS

    def y(v: float) -> float:
        return round(f.y1 - (f.y1 - f.y0) * v / top, 1)

    for i, (label, vals) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        shown = [i for i, v in enumerate(vals) if v is not None]
        out.append(f'<g class="series" data-series="{escape(label)}" data-points="{len(shown)}">')
        if len(shown) > 1:
            coords = " ".join(f"{xs[i]},{y(vals[i])}" for i in shown)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>')
        if markers:
            for i in shown:
                out.append(f'<circle class="pt" cx="{xs[i]}" cy="{y(vals[i])}" r="2.6" fill="{color}">'
                           f'<title>{escape(runs.run_ids[i])} · {runs.at[i]:%Y-%m-%d %H:%M} UTC · {escape(label)}: '
                           f'{compact(vals[i])}</title></circle>')
        out.append("</g>")
    if not values:
        out.append(f'<text class="empty" x="{(f.x0 + f.x1) / 2}" y="{(f.y0 + f.y1) / 2}" text-anchor="middle">'
                   'no run reported this in the window</text>')
    out.append("</svg>")
    return "".join(out)


def gate_strip(title: str, runs: Timeline, values: list[float | None], start: datetime, end: datetime, *,
               width: int = 640, height: int = 64) -> str:
    """One tick per run: green = gate passed, red = failed, grey = did not finish."""
    f = _Frame(start, end, width, height, top=24, bottom=22)
    out = _open(title, width, height, "gate")
    passed, failed = values.count(1), values.count(0)
    out.append(f'<text class="tick" x="{width - 8}" y="16" text-anchor="end">{passed} passed · {failed} failed'
               '</text>')
    out.append(f'<rect class="lane" x="{f.x0}" y="{f.y0}" width="{f.x1 - f.x0}" height="{f.y1 - f.y0}"/>')
    out += f.x_axis()
    shown = [i for i, v in enumerate(values) if v is not None]
    out.append(f'<g class="series" data-series="{escape(title)}" data-points="{len(shown)}">')
    ticks = range(len(values))
    if len(values) > MAX_MARKERS and shown:  # too many ticks to draw: a passed band, failures on top
        x_first, x_last = f.x(runs.at[shown[0]]), f.x(runs.at[shown[-1]])
        out.append(f'<rect class="pass" x="{x_first}" y="{f.y0 + 2}" width="{max(x_last - x_first, 2)}" '
                   f'height="{f.y1 - f.y0 - 4}" opacity="0.55"/>')
        ticks = [i for i in shown if values[i] == 0]
    for i in ticks:
        cls = {1: "pass", 0: "fail"}.get(values[i], "none")
        verdict = {1: "passed", 0: "FAILED"}.get(values[i], "did not finish")
        out.append(f'<rect class="pt {cls}" x="{f.x(runs.at[i]) - 1}" y="{f.y0 + 2}" width="2.4" '
                   f'height="{f.y1 - f.y0 - 4}"><title>{escape(runs.run_ids[i])} · {runs.at[i]:%Y-%m-%d %H:%M} UTC'
                   f' · {verdict}</title></rect>')
    out.append("</g></svg>")
    return "".join(out)
