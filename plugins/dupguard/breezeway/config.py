"""Breezeway child tables: the natural keys, in the one place the migration and the
ETL upsert helper both read.

Every child table has ``id bigserial PRIMARY KEY``, a parent column, a natural id, payload
columns, ``region_code``, ``created_at`` and ``updated_at``. Its natural key is
``(parent, natural id)``; the migration adds ``UNIQUE (<natural key>)`` under the name
``<table>_natural_key`` and the upsert helper uses it as its ``ON CONFLICT`` target.
"""
from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "breezeway"
LEDGER_SCHEMA = "dupguard"
MIGRATION_ID = "breezeway_child_tables_dedup_v1"
MIGRATION_DAG_ID = "child_tables_dedup_migration"
ROLLBACK_DAG_ID = "child_tables_dedup_rollback"

# Constraints that exist before the migration and that nothing here may ever drop.
PROTECTED_CONSTRAINTS = frozenset({"task_tags_unique"})

# Columns the upsert helper never overwrites on conflict: the row's first load time.
UPSERT_PRESERVED_COLUMNS = ("created_at",)


@dataclass(frozen=True)
class ChildTable:
    name: str
    natural_key: tuple[str, str]

    @property
    def constraint(self) -> str:
        return f"{self.name}_natural_key"

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


CHILD_TABLES: tuple[ChildTable, ...] = (
    ChildTable("property_photos", ("property_pk", "photo_id")),
    ChildTable("task_requirements", ("task_pk", "requirement_id")),
    ChildTable("task_comments", ("task_pk", "comment_id")),
    ChildTable("task_assignments", ("task_pk", "assignee_id")),
    ChildTable("task_photos", ("task_pk", "photo_id")),
    ChildTable("reservation_guests", ("reservation_pk", "guest_id")),
)
BY_NAME = {t.name: t for t in CHILD_TABLES}

# Tuning, with the reason for each value.
BATCH_IDS = 50_000            # id range per dedup/restore transaction: ~0.1-0.3 s, row locks only
LOCK_TIMEOUT_MS = 1_000       # an exclusive lock we cannot get within 1 s is released and retried,
                              # so writers never queue behind us for longer than that
LOCK_RETRIES = 30             # ... up to this many times, with a growing pause in between
CONSTRAINT_ATTEMPTS = 5       # bounded clean-and-retry of CREATE UNIQUE INDEX CONCURRENTLY
REWRITE_WHEN_LIVE_BELOW = 0.8  # a table losing more than 20% of its rows is deduped by copy-swap (kept
                               # rows copied, TRUNCATE + reload: no row-by-row DELETE, space back to
                               # the OS at once); otherwise DELETE batches, and the reclaim compacts
                               # when fewer than 80% of its original rows remain, else plain VACUUM
DEDUP_WORK_MEM_MB = 256       # the dedup session's work_mem: the keepers' hash aggregate (one group
                              # per natural key) stays in memory instead of spilling
STALE_CLAIM_MINUTES = 30      # a claim of a run Airflow does not know is stale after this silence


def table(name: str) -> ChildTable:
    """The configured child table ``name``; a clear error for anything else."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"'{name}' is not a configured Breezeway child table "
                         f"(configured: {', '.join(BY_NAME)})") from None
