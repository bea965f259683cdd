"""
### unified_positions_deduplicate

Manual repair (no schedule) of `pm_trade_fifo_roi_v3_mat_unified` when duplicate lot keys
`(tx_hash, wallet, condition_id, outcome_index)` are found - in every partition, resolved
rows included.

1. **preflight** - table and columns exist; stuck mutations (older than
   `stuck_mutation_minutes`) killed by id; counts total rows and distinct keys.
2. **deduplicate** - wallet range by wallet range (`dedupe_buckets`, read through the
   primary index): one copy of each duplicated key is set aside in
   `<table>__dedupe_keep` (the resolved copy first), every copy is deleted by a mutation
   waited on by its own id, the kept copy is inserted back. A crash at any point is
   recovered by the next run (kept copies whose key is absent are inserted first).
3. **quality_gate** - no duplicate key left, the same number of distinct keys as before
   (nothing lost), no negative `tokens_held`, no `tokens_sold_early > tokens`.
4. **report** - counts before/after, rows per partition, duration.

Runbook: `docs/positions.md`. Do not run it while `unified_positions_refresh` publishes
(both take the `clickhouse_embedded` pool in the demo; in production pause the refresh).
"""
from __future__ import annotations

from airflow.sdk import dag, task

from dupguard.common import dagkit, settings
from dupguard.positions import tasks


@dag(dag_id="unified_positions_deduplicate",
     params=tasks.params("dedupe_buckets", "max_bucket_fills", "stuck_mutation_minutes", "mutation_timeout_minutes",
                         "database"),
     **dagkit.dag_kwargs(doc_md=__doc__, tags=["positions", "clickhouse", "dedupe"], schedule=None))
def unified_positions_deduplicate():
    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def preflight(params=None) -> dict:
        """Check the table, kill stuck mutations by id, count rows and distinct lot keys."""
        return tasks.dedupe_preflight(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def deduplicate(params=None) -> dict:
        """Remove surplus copies of lot keys, wallet range by wallet range, keeping one copy each."""
        return tasks.deduplicate(params)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def quality_gate(pre: dict, params=None) -> dict:
        """No duplicate key left, nothing lost (distinct keys unchanged), sane quantities."""
        return tasks.gate_dedupe(params, pre)

    @task(pool=settings.CLICKHOUSE_POOL, queue=settings.CLICKHOUSE_QUEUE)
    def report(pre: dict, repaired: dict, gated: dict, params=None) -> dict:
        """Log and return counts before/after, rows per partition and the run's duration."""
        return tasks.report(params, pre, {"deduplicate": repaired, "after_metrics": gated})

    pre = preflight()
    repaired = deduplicate()
    gated = quality_gate(pre)
    pre >> repaired >> gated
    report(pre, repaired, gated)


unified_positions_deduplicate()
