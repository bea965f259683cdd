"""The facts of the daily health check (``dedup_health_daily``), with the reason for each."""
from __future__ import annotations

from datetime import timedelta

#: The telemetry check looks at the ids inserted in one day ...
TELEMETRY_DAY = timedelta(days=1)
#: ... ending this long before the run's logical date, so the copies the per-minute cleanup has
#: not reached yet do not count as a breach.
TELEMETRY_SETTLE = timedelta(minutes=10)
#: Each PostgreSQL check scans its tables once (aggregates only); one that runs longer than this
#: is cut short and retried instead of holding a connection all day.
STATEMENT_TIMEOUT_MS = 600_000
#: The positions thresholds the daily check shares with ``unified_positions_refresh``'s
#: post-publish gate (same params, same defaults).
POSITIONS_PARAMS = ("max_hours_stale", "min_unresolved_rows")
