"""The window of a per-minute cleanup run, from the run's own dates (never wall-clock now), so a
run can be re-run and tested for any moment."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dupguard.telemetry.config import DEFAULT_LOOKBACK_MINUTES, DEFAULT_MAX_CATCHUP_HOURS, TelemetryConfigError


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    reason: str  # "lookback", "catch-up" (back to the last successful run) or "capped"

    def as_dict(self) -> dict[str, str | float]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "reason": self.reason,
                "minutes": round((self.end - self.start).total_seconds() / 60, 2)}


def compute_window(end: datetime | None, last_success: datetime | None, *,
                   lookback: timedelta = timedelta(minutes=DEFAULT_LOOKBACK_MINUTES),
                   max_catchup: timedelta = timedelta(hours=DEFAULT_MAX_CATCHUP_HOURS)) -> Window:
    """Window of a run: ``[start, end)``, ``end`` being the run's logical date.

    ``start`` is ``end - lookback``; when the last successful run ended before that (scheduler
    down, DAG paused, failed runs), it reaches back to it, at most ``max_catchup``.
    """
    if end is None:
        raise TelemetryConfigError("the cleanup window needs the run's logical date "
                                   "(a run without one cannot be cleaned)")
    if lookback <= timedelta(0) or max_catchup < lookback:
        raise TelemetryConfigError(f"bad window settings: lookback={lookback}, max_catchup={max_catchup}")
    start, reason = end - lookback, "lookback"
    if last_success is not None and last_success < start:
        start, reason = last_success, "catch-up"
        if start < end - max_catchup:
            start, reason = end - max_catchup, "capped"
    return Window(start, end, reason)
