"""Telemetry (PostgreSQL): duplicate ``blocks``, ``streams`` and ``processes`` rows left by the
ingestion service's client retries.

- :mod:`~dupguard.telemetry.config`: the tables, defaults and gate bounds, with their reasons;
- :mod:`~dupguard.telemetry.catalog`: the tables checked against the database, their SQL composed;
- :mod:`~dupguard.telemetry.window`: the window of a per-minute run, from the run's dates;
- :mod:`~dupguard.telemetry.cleanup`: the per-minute delete (``blocks_duplicate_cleanup``);
- :mod:`~dupguard.telemetry.unique_index`: the permanent fix, unique indexes built online
  (``telemetry_unique_indexes``);
- :mod:`~dupguard.telemetry.insert`: the idempotent insert an ingestion service should use;
- :mod:`~dupguard.telemetry.gates`: both DAGs' quality gates, as data;
- :mod:`~dupguard.telemetry.tasks`: the task bodies, the only module that knows Airflow.
"""
