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

from airflow.sdk import Param, chain, dag, get_current_context, task

from dupguard import telemetry, telemetry_unique
from dupguard.dagkit import dag_kwargs


@dag(
    dag_id="telemetry_unique_indexes",
    **dag_kwargs(
        doc_md=__doc__,
        tags=["telemetry", "postgres", "unique-index"],
        schedule=None,
        default_args_overrides={"retry_delay": timedelta(seconds=30)},
        params={
            "batch_size": Param(telemetry_unique.DEFAULT_BATCH_SIZE, type="integer", minimum=1,
                                description="duplicate ids cleaned per transaction"),
            "max_build_attempts": Param(telemetry_unique.DEFAULT_MAX_BUILD_ATTEMPTS, type="integer", minimum=1,
                                        description="CREATE UNIQUE INDEX CONCURRENTLY attempts per table"),
        },
    ),
)
def telemetry_unique_indexes():
    @task
    def dedup(table_key: str) -> dict:
        """Remove every duplicate of the whole table in short batches walked in id order
        (progress logged in counts and percent). Skipped once a valid unique index exists."""
        from dupguard.telemetry_tasks import run_dedup

        return run_dedup(get_current_context(), table_key)

    @task
    def build_unique_index(table_key: str) -> dict:
        """CREATE UNIQUE INDEX CONCURRENTLY on the id column; drops an INVALID leftover first,
        and on a unique violation (writers added duplicates) cleans again and retries."""
        from dupguard.telemetry_tasks import run_build

        return run_build(get_current_context(), table_key)

    @task
    def drop_old_index(table_key: str) -> dict:
        """DROP INDEX CONCURRENTLY of the old non-unique id index, once the unique one is valid."""
        from dupguard.telemetry_tasks import run_drop_old

        return run_drop_old(get_current_context(), table_key)

    @task
    def quality_gate() -> dict:
        """great-expectations gate: a valid unique index on each id column, no invalid id
        index left, zero duplicate ids in each table."""
        from dupguard.telemetry_tasks import run_unique_gate

        return run_unique_gate(get_current_context())

    gate = quality_gate()
    for key in telemetry.TABLE_KEYS:
        chain(dedup.override(task_id=f"dedup_{key}")(key),
              build_unique_index.override(task_id=f"build_unique_index_{key}")(key),
              drop_old_index.override(task_id=f"drop_old_index_{key}")(key),
              gate)


telemetry_unique_indexes()
