"""Breezeway (PostgreSQL): the one-shot dedup migration of the six child tables, its rollback
and the ETL's upsert on the natural key.

| module | what |
|---|---|
| ``config`` | the child tables and their natural keys, the tuning values with their reasons |
| ``ledger`` | ``dupguard.migration_ledger``: claim, owner checks, step figures, finish |
| ``preflight`` | catalog check and key snapshot (``preflight``), backup tables (``backup``) |
| ``dedup`` | keep the oldest row per key (``dedup``), give the space back (``reclaim``) |
| ``swap`` | copy the rows that stay online, swap them in under a millisecond exclusive lock |
| ``constraints`` | ``UNIQUE (<natural key>)`` online: concurrent index build, ``ADD CONSTRAINT ... USING INDEX`` |
| ``gates`` | the gate specs (migration, rollback, daily health) and their figures |
| ``rollback`` | drop the constraints, restore every removed row, finish the rollback |
| ``upsert`` | ``upsert_children``: the ETL's fixed statement |
| ``render`` | the SQL files of ``include/sql/breezeway/`` rendered for one table |
| ``tasks`` | the Airflow adapter (the only module that knows about Airflow) |

Every step is a plain function ``step(conn_id, run_id) -> dict`` (the DAGs call them through
``tasks``; tests and the bench call them directly); each checks that its run holds the claim,
is idempotent and records its figures in the ledger.
"""
