"""The runbook, kept in one place: what a failed task means and what to do next.

Alerts carry the entry's next step; the README's runbook table is rendered from these entries
(``python -m dupguard.common.runbook`` prints it; a test checks README.md holds it).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    dag_id: str
    task: str  # a task id, or an fnmatch pattern such as ``delete_duplicate_*``
    symptom: str
    meaning: str
    next_step: str
    tables: str = ""
    error: str = ""  # when set, the entry speaks only for failures whose kind (exception class) starts so


ENTRIES: tuple[Entry, ...] = (
    Entry("blocks_duplicate_cleanup", "delete_duplicate_*", "dropped INVALID unique index",
          "a killed unique-index build left an INVALID unique index that rejected writers; it was dropped "
          "and the cleanup ran", "trigger telemetry_unique_indexes again", "telemetry blocks, streams, processes",
          error="InvalidIndexDropped"),
    Entry("blocks_duplicate_cleanup", "delete_duplicate_*", "worker killed (task lost, then retried)",
          "the delete's transaction was rolled back with its dead client: nothing was deleted, nothing lost",
          "nothing: the retry or the next run deletes those copies (its window reaches back over the gap)",
          "telemetry blocks, streams, processes", error="unknown"),
    Entry("blocks_duplicate_cleanup", "delete_duplicate_*", "lock or statement timeout",
          "a long transaction holds the table",
          "find the blocker in pg_stat_activity; the next run reaches back over the gap",
          "telemetry blocks, streams, processes"),
    Entry("blocks_duplicate_cleanup", "quality_gate", "gate failed",
          "copies inserted before the window's end survived the delete",
          "clear the run (it converges); list the ids with include/sql/telemetry/cleanup/find_window_duplicates.sql",
          "telemetry blocks, streams, processes"),
    Entry("blocks_duplicate_cleanup", "<run>", "run timed out (5 min)",
          "a delete waited on locks for the whole run",
          "find the blocker in pg_stat_activity; the next run reaches back over the gap"),
    Entry("telemetry_unique_indexes", "build_unique_index_*", "build failed after every attempt",
          "writers kept inserting duplicates through every attempt",
          "switch ingestion to dupguard.telemetry.insert.IdempotentInserter, then trigger again "
          "(an INVALID leftover is dropped first)", "telemetry blocks, streams, processes"),
    Entry("telemetry_unique_indexes", "build_unique_index_*", "worker killed (task lost, then retried)",
          "the build's worker died; its orphaned CREATE INDEX CONCURRENTLY either finished or left an INVALID index",
          "nothing: the retry keeps a finished index or drops the INVALID leftover and builds again; until then "
          "the per-minute cleanup drops a leftover that rejects writers", "telemetry blocks, streams, processes",
          error="unknown"),
    Entry("telemetry_unique_indexes", "*", "any other failure",
          "a step of the online build failed; every step is idempotent",
          "fix the cause named in the error and trigger the DAG again", "telemetry blocks, streams, processes"),
    Entry("unified_positions_refresh", "preflight", "missing table or column, stale feed",
          "a table or column is missing, or the fills feed is older than max_source_lag_hours",
          "fix the source; nothing was published", "pm_canonical_fills_v4, pm_condition_resolutions"),
    Entry("unified_positions_refresh", "quality_gate_staging", "gate failed",
          "the build is wrong or smaller than allowed",
          "nothing was published; inspect <table>__staging, re-run with other thresholds if a mass "
          "resolution explains it", "pm_trade_fifo_roi_v3_mat_unified__staging"),
    Entry("unified_positions_refresh", "publish", "worker killed (task lost, then retried)",
          "a swap was interrupted; on an unpartitioned table the open part may be empty until the retry (heartbeat "
          "timeout + retry_delay); the retry completes it from the gated staging table or puts the saved "
          "generation back", "nothing, or clear publish to complete it at once; SELECT * FROM <table>__publish_log "
          "ORDER BY at shows the steps; unified_positions_adopt_partitioning removes the empty window",
          "pm_trade_fifo_roi_v3_mat_unified", error="unknown"),
    Entry("unified_positions_refresh", "publish", "mutation failed or timed out",
          "its own DELETE mutation failed or timed out",
          "clear the task (idempotent); system.mutations shows the reason", "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("unified_positions_refresh", "quality_gate_health", "gate failed",
          "duplicates, stale data or too few open rows after publish",
          "duplicates: trigger unified_positions_deduplicate; stale: check the feed; a bad publish: trigger "
          "unified_positions_rollback", "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("unified_positions_refresh", "<late>", "still running late_after_minutes (default 90) after its start",
          "a build or a mutation is slow or stuck",
          "look at the running task's log and system.mutations (a mutation pending for minutes is killed by the next "
          "preflight); the run keeps going unless you stop it",
          "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("unified_positions_deduplicate", "*", "any failure",
          "a wallet range could not be repaired", "clear the failed task (each range is idempotent)",
          "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("unified_positions_rollback", "*", "any failure",
          "the previous open part could not be restored",
          "check a good <table>__open_gen_* exists (<table>__publish_log, good = 1); trigger again", "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("unified_positions_adopt_partitioning", "quality_gate", "gate failed",
          "the partitioned copy differs from the table (rows or keys); nothing was exchanged",
          "trigger again: the differing wallet ranges are copied again", "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("unified_positions_adopt_partitioning", "*", "any other failure",
          "a step of the adoption failed; done ranges are remembered", "trigger again: it resumes",
          "pm_trade_fifo_roi_v3_mat_unified"),
    Entry("child_tables_dedup_migration", "claim", "claim refused",
          "another run holds the migration and Airflow shows it running or queued (under the scheduler a killed "
          "worker's task is failed after the heartbeat timeout and retried in the same run, which keeps the claim; "
          "a killed `airflow dags test` run stays running forever)",
          "if the run named in the error has a task running, wait for it; if not (a killed `airflow dags test`), "
          "mark that run failed (its page: Mark run as failed, or PATCH /api/v2/dags/child_tables_dedup_migration/"
          "dagRuns/<run_id> with {\"state\": \"failed\"}) and trigger again: it takes the claim over and resumes "
          "where the ledger says", "dupguard.migration_ledger"),
    Entry("child_tables_dedup_migration", "constraints", "worker killed during the index build",
          "the retried step drops INVALID leftovers (dropped_invalid in its report)",
          "nothing: the retry (after the heartbeat timeout and retry_delay) finishes it; if the retry failed too, "
          "trigger again (see claim refused)", "breezeway child tables", error="unknown"),
    Entry("child_tables_dedup_migration", "*", "worker killed (task lost, then retried)",
          "the scheduler failed the try after the heartbeat timeout; the retry resumes: steps the ledger records are "
          "not redone, a half-done dedup keeps what it committed (removed rows are in the backup) and finishes",
          "nothing: the run ends green on the retry; if the retry failed too, trigger again (see claim refused)",
          "breezeway child tables", error="unknown"),
    Entry("child_tables_dedup_migration", "preflight", "missing table or column",
          "a configured table or column is missing", "fix the schema or breezeway/config.py; nothing changed",
          "breezeway child tables"),
    Entry("child_tables_dedup_migration", "quality_gate", "gate failed",
          "duplicates left, or a natural key lost",
          "duplicates: trigger with force=true; a lost key: trigger child_tables_dedup_rollback",
          "breezeway child tables"),
    Entry("child_tables_dedup_migration", "<late>", "still running after max_hours",
          "a step waits on locks or the tables are larger than expected",
          "look at the running task's log and pg_stat_activity (a step waiting on a lock names the blocking pid); the "
          "run goes on; if you stop it, trigger again: it resumes at the step the ledger names",
          "breezeway child tables"),
    Entry("child_tables_dedup_migration", "*", "dedup, reclaim or constraints failed",
          "a step failed; the ledger keeps what is done", "trigger the DAG again: it resumes where it stopped",
          "breezeway child tables"),
    Entry("child_tables_dedup_rollback", "*", "any failure",
          "the restore stopped part-way; restored rows stay", "trigger the rollback again (idempotent)",
          "breezeway child tables"),
    Entry("dedup_health_daily", "gate_telemetry", "gate failed",
          "old duplicates survived the per-minute cleanup", "run telemetry_unique_indexes",
          "telemetry blocks, streams, processes"),
    Entry("dedup_health_daily", "gate_breezeway", "gate failed",
          "a constraint was dropped after the migration, or duplicates came back",
          "trigger child_tables_dedup_migration with force=true", "breezeway child tables"),
    Entry("dedup_health_daily", "gate_positions", "gate failed",
          "duplicates, stale data or too few open rows", "duplicates: trigger unified_positions_deduplicate; "
          "stale: check the feed", "pm_trade_fifo_roi_v3_mat_unified"),
)

DEFAULT = Entry("*", "*", "any failure", "see the error and the task log",
                "fix the cause named in the error and clear the task")


def entry(dag_id: str, task_id: str, kind: str = "") -> Entry:
    """The entry for a failure of ``task_id`` (``<run>``/``<late>`` for run-level alerts) of kind
    ``kind`` (its exception class): the first matching entry made for that kind, else the first
    matching entry made for any kind."""
    matching = [e for e in ENTRIES if e.dag_id == dag_id and fnmatch.fnmatchcase(task_id, e.task)]
    for e in matching:
        if e.error and kind.startswith(e.error):
            return e
    return next((e for e in matching if not e.error), DEFAULT)


def markdown_table() -> str:
    """The README's runbook table."""
    rows = ["| failed | symptom | what it means | what to do |", "|---|---|---|---|"]
    for e in ENTRIES:
        rows.append(f"| `{e.dag_id}.{e.task}` | {e.symptom} | {e.meaning} | {e.next_step} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
