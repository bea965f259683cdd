"""Breezeway child tables: the natural keys and the migration's tuning, in the one place the
migration, its rollback, the daily health check and the ETL upsert helper all read.

Every child table has ``id bigserial PRIMARY KEY``, a parent column, a natural id, payload
columns, ``region_code``, ``created_at`` and ``updated_at``. Its natural key is
``(parent, natural id)``; the migration adds ``UNIQUE (<natural key>)`` under the name
``<table>_natural_key`` and the upsert helper uses it as its ``ON CONFLICT`` target.
"""
from __future__ import annotations

from dataclasses import dataclass

from dupguard.common.errors import ConfigError

SCHEMA = "breezeway"
#: dupguard's own objects in the migrated database: the ledger, backups, snapshots, copies.
LEDGER_SCHEMA = "dupguard"
MIGRATION_ID = "breezeway_child_tables_dedup_v1"
MIGRATION_DAG_ID = "child_tables_dedup_migration"
ROLLBACK_DAG_ID = "child_tables_dedup_rollback"

#: The migration's steps in order (the ledger records each; ``stop_after`` names one).
MIGRATION_STEPS = ("claim", "preflight", "backup", "dedup", "reclaim", "constraints", "quality_gate", "finish")

#: Constraints that exist before the migration and that nothing here may ever drop.
PROTECTED_CONSTRAINTS = frozenset({"task_tags_unique"})

#: Columns the upsert helper never overwrites on conflict: the row's first load time.
UPSERT_PRESERVED_COLUMNS = ("created_at",)

#: Columns the migration needs besides the natural key: ``id`` breaks ties and names rows in
#: the backup, ``created_at`` picks the row to keep.
REQUIRED_COLUMNS = ("id", "created_at")

#: The trigger that logs the ids writers change while a table is copied for a swap.
CHANGE_LOG_TRIGGER = "dupguard_reclaim_log"


@dataclass(frozen=True)
class ChildTable:
    name: str
    natural_key: tuple[str, str]

    @property
    def constraint(self) -> str:
        return f"{self.name}_natural_key"

    @property
    def build_index(self) -> str:
        """The unique index built CONCURRENTLY; ``ADD CONSTRAINT ... USING INDEX`` renames it to
        :attr:`constraint`, so a leftover under this name is an unfinished build."""
        return f"{self.name}_nk_build"

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

# --- tuning, with the reason for each value -------------------------------------------------
#: id range per dedup transaction: ~0.1-0.3 s holding row locks only (the DAG's ``batch_ids``).
BATCH_IDS = 50_000
#: A migration run still going this many hours after it started sends one LATE alert (param max_hours).
MAX_HOURS = 4
#: heap pages per restore transaction of the rollback: short transactions, row locks only.
RESTORE_PAGES_PER_BATCH = 500
#: the dedup's delete batches refresh the ledger heartbeat this often, so a long dedup is not
#: mistaken for a dead run (see STALE_CLAIM_MINUTES).
HEARTBEAT_EVERY_BATCHES = 20
#: an exclusive lock we cannot get within 100 ms is released and retried, so writers never
#: queue behind our waiting request for longer than that (the issue's budget for a writer's
#: longest stall is 150 ms, waiting plus holding) ...
LOCK_TIMEOUT_MS = 100
#: ... up to this many times, with a growing pause in between (0.25 s more each time, at most
#: 3 s: about 5 minutes in all).
LOCK_RETRIES = 100
#: bounded clean-and-retry of CREATE UNIQUE INDEX CONCURRENTLY while writers add duplicates.
CONSTRAINT_ATTEMPTS = 5
#: a table losing more than 20% of its rows is deduped by copy-swap (kept rows copied,
#: TRUNCATE + reload: no row-by-row DELETE, space back to the OS at once); otherwise DELETE
#: batches, and the reclaim compacts when fewer than 80% of its original rows remain, else
#: plain VACUUM.
REWRITE_WHEN_LIVE_BELOW = 0.8
#: the dedup session's work_mem: the keepers' hash aggregate (one group per natural key) stays
#: in memory instead of spilling.
DEDUP_WORK_MEM_MB = 256
#: a claim of a run Airflow does not know is stale after this silence.
STALE_CLAIM_MINUTES = 30


def table(name: str) -> ChildTable:
    """The configured child table ``name``; a clear error for anything else."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(f"'{name}' is not a configured Breezeway child table "
                          f"(configured: {', '.join(BY_NAME)})") from None
