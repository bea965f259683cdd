"""The facts of the telemetry system: the tables, their id and time columns, the defaults of
both DAGs and the gates' bounds, each with the reason for its value."""
from __future__ import annotations

from dataclasses import dataclass

from dupguard.common.errors import ConfigError


class TelemetryConfigError(ConfigError):
    """A table or column named in the configuration does not exist (or is unusable), or a step
    refuses to run; a retry cannot change it."""


@dataclass(frozen=True)
class TelemetryTable:
    """One cleaned table: schema-qualified name, id column, insertion-time column."""

    key: str
    schema: str
    table: str
    id_column: str
    time_column: str = "insert_time"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def unique_index_name(self) -> str:
        """The unique index ``telemetry_unique_indexes`` builds (at most 63 bytes, PostgreSQL's limit)."""
        return f"{self.table}_{self.id_column}_unique"[:63]


#: The tables both DAGs clean (connection ``telemetry_postgres``); the ingestion service's
#: client retries resend rows of all three with the same UUID.
TABLES: tuple[TelemetryTable, ...] = (
    TelemetryTable("blocks", "public", "blocks", "block_id"),
    TelemetryTable("streams", "public", "streams", "stream_id"),
    TelemetryTable("processes", "public", "processes", "process_id"),
)
TABLE_KEYS: tuple[str, ...] = tuple(t.key for t in TABLES)


def table_config(key: str, tables: tuple[TelemetryTable, ...] = TABLES) -> TelemetryTable:
    for t in tables:
        if t.key == key:
            return t
    raise TelemetryConfigError(f"unknown telemetry table '{key}'; configured: {', '.join(t.key for t in tables)}")


# --- blocks_duplicate_cleanup (per minute) -----------------------------------------------
#: The window reaches back this far from the run's logical date: a client retry lands within
#: about 90 s of the first copy, so several consecutive runs see each id, and one late or
#: failed run leaves no id unseen.
DEFAULT_LOOKBACK_MINUTES = 5
#: After downtime the window reaches back to the last successful run, but at most this far:
#: a longer window makes one delete too long; older copies are left to the unique-index DAG.
DEFAULT_MAX_CATCHUP_HOURS = 24
#: A stuck lock fails the task instead of piling up runs (writers would queue behind it).
DEFAULT_LOCK_TIMEOUT_MS = 5_000
#: A runaway delete is cut short before the next minute's run is due.
DEFAULT_STATEMENT_TIMEOUT_MS = 50_000

# --- telemetry_unique_indexes (one-shot) --------------------------------------------------
#: Duplicate ids cleaned per transaction: 0.05-0.1 s per batch at 10M rows (bench), so no
#: row lock is held longer than that.
DEFAULT_BATCH_SIZE = 5_000
#: CREATE UNIQUE INDEX CONCURRENTLY attempts per table: each failure re-cleans what writers
#: added meanwhile; past this, writers must switch to the idempotent insert.
DEFAULT_MAX_BUILD_ATTEMPTS = 3
#: Per dedup batch: wait at most this long for a row lock, and cut a batch that runs away.
BATCH_LOCK_TIMEOUT_MS = 5_000
BATCH_STATEMENT_TIMEOUT_MS = 60_000
#: The concurrent build waits for older transactions to end; give up (and retry) after this.
BUILD_LOCK_TIMEOUT_MS = 300_000


# --- gate bounds ------------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """A gate's bound and why it has that value (shown with each expectation's result)."""

    value: int
    reason: str


#: ``blocks_duplicate_cleanup.quality_gate``, per table: ids with a row in the window that
#: still have a second copy inserted before the window's end.
WINDOW_DUPLICATE_IDS_MAX = Threshold(
    0, "the run deletes every copy but one of each id with a row in its window; a copy inserted before "
       "the window's end that survived means the delete missed it")
#: ``telemetry_unique_indexes.quality_gate``, per table.
VALID_UNIQUE_INDEXES_MIN = Threshold(
    1, "the unique index on the id column is the permanent fix the DAG exists to build")
INVALID_ID_INDEXES_MAX = Threshold(
    0, "an INVALID index left by a failed build makes every ON CONFLICT insert fail and taxes every write")
DUPLICATE_IDS_MAX = Threshold(
    0, "a valid unique index admits no duplicate id; one would mean the index is on another column")
