"""Errors shared by every system."""
from __future__ import annotations


class ConfigError(ValueError):
    """A precondition that a retry cannot change: a table or column named in the configuration is
    missing, a param is out of range, a one-shot job refuses to run. Tasks fail on it at once
    (``dagkit.fail_fast``); transient errors (timeouts, an unreachable database) keep Airflow's retry."""
