"""
### telemetry_unique_indexes — the permanent fix: unique indexes built online

**Schedule**: none (trigger by hand, once). Safe to run again: every step checks the current
state first. Connection `telemetry_postgres`. Ingestion may keep writing meanwhile.

Per table (`blocks`, `streams`, `processes`, in parallel):

* **dedup_<table>**: remove every duplicate of the whole table: one read-only scan (ACCESS SHARE,
  nobody waits) finds the duplicated ids, then `batch_size` ids per short transaction are cleaned
  through the id index (progress logged as counts and percent). Keeps the oldest
  `insert_time` per id (NULL last, ties by `ctid`), the same rule as `blocks_duplicate_cleanup`.
* **build_unique_index_<table>**: drop an INVALID index left by an earlier failed build, then
  `CREATE UNIQUE INDEX CONCURRENTLY`; when it fails because writers added duplicates meanwhile,
  clean again and retry (`max_build_attempts`).
* **drop_old_index_<table>**: drop the old non-unique id index once the unique one is valid.

**quality_gate**: each id column has a valid unique index, no invalid id index is left, and no
id has two rows. Params: `batch_size`, `max_build_attempts`. No lock is held longer than one
batch; the concurrent build only takes SHARE UPDATE EXCLUSIVE (readers and writers go on).

**When it fails**: see the runbook in `docs/telemetry.md` (re-running is always safe).
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, chain, dag, task

from dupguard.common.dagkit import dag_kwargs
from dupguard.telemetry import config


@dag(
    dag_id="telemetry_unique_indexes",
    **dag_kwargs(
        doc_md=__doc__,
        tags=["telemetry", "postgres", "migration"],
        schedule=None,
        default_args_overrides={"retry_delay": timedelta(seconds=30)},
        params={
            "batch_size": Param(config.DEFAULT_BATCH_SIZE, type="integer", minimum=1, title="Batch size (ids)",
                                description="Duplicate ids cleaned per transaction: no row lock outlives one batch."),
            "max_build_attempts": Param(config.DEFAULT_MAX_BUILD_ATTEMPTS, type="integer", minimum=1,
                                        title="Max build attempts",
                                        description="CREATE UNIQUE INDEX CONCURRENTLY attempts per table; each "
                                                    "failed one cleans the copies writers added meanwhile."),
        },
    ),
)
def telemetry_unique_indexes():
    @task
    def dedup(table_key: str, params=None) -> dict:
        """Remove every duplicate of the whole table in short batches walked in id order
        (progress logged in counts and percent). Skipped once a valid unique index exists."""
        from dupguard.telemetry import tasks

        return tasks.dedup(table_key, params)

    @task
    def build_unique_index(table_key: str, params=None) -> dict:
        """CREATE UNIQUE INDEX CONCURRENTLY on the id column; drops an INVALID leftover first,
        and on a unique violation (writers added duplicates) cleans again and retries."""
        from dupguard.telemetry import tasks

        return tasks.build_unique_index(table_key, params)

    @task
    def drop_old_index(table_key: str) -> dict:
        """DROP INDEX CONCURRENTLY of the old non-unique id index, once the unique one is valid."""
        from dupguard.telemetry import tasks

        return tasks.drop_old_index(table_key)

    @task
    def quality_gate() -> dict:
        """great-expectations gate: a valid unique index on each id column, no invalid id
        index left, zero duplicate ids in each table."""
        from dupguard.telemetry import tasks

        return tasks.unique_gate()

    gate = quality_gate()
    for key in config.TABLE_KEYS:
        chain(dedup.override(task_id=f"dedup_{key}")(key),
              build_unique_index.override(task_id=f"build_unique_index_{key}")(key),
              drop_old_index.override(task_id=f"drop_old_index_{key}")(key),
              gate)


telemetry_unique_indexes()
