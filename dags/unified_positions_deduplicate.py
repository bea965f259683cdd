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

from airflow.sdk import Param, dag, get_current_context, task

from dupguard import settings
from dupguard.dagkit import dag_kwargs
from dupguard.positions import DEFAULTS

PARAMS = {
    "dedupe_buckets": Param(16, type="integer", minimum=1, maximum=4096,
                            description="Wallet ranges repaired one at a time."),
    "stuck_mutation_minutes": Param(DEFAULTS["stuck_mutation_minutes"], type="integer", minimum=1,
                                    description="Kill (by id) mutations of the table pending longer than this."),
    "mutation_timeout_minutes": Param(DEFAULTS["mutation_timeout_minutes"], type="number", minimum=1,
                                      description="How long each DELETE mutation may take."),
    "database": Param("", type="string",
                      description="ClickHouse database of the table; blank = the connection's schema."),
}


def _ctx():
    from dupguard import positions

    context = get_current_context()
    params = positions.run_params(context)
    return context, params, positions.tables_for(settings.CLICKHOUSE_CONN_ID, params["database"])


@dag(dag_id="unified_positions_deduplicate", params=PARAMS,
     **dag_kwargs(doc_md=__doc__, tags=["clickhouse", "polymarket", "positions"], schedule=None))
def unified_positions_deduplicate():
    @task(pool=settings.CLICKHOUSE_POOL)
    def preflight() -> dict:
        """Check the table, kill stuck mutations by id, count rows and distinct lot keys."""
        from dupguard import positions

        _, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            positions.check_columns(client, t.db, t.unified, positions.UNIFIED_COLUMNS)
            mutations = positions.handle_stuck_mutations(client, t.db, t.unified, p["stuck_mutation_minutes"])
            return {"before": positions.table_metrics(client, t), "killed_mutations": mutations["killed"],
                    "pending_mutations": mutations["pending"], "started_at": positions.now_epoch()}

    @task(pool=settings.CLICKHOUSE_POOL)
    def deduplicate() -> dict:
        """Remove surplus copies of lot keys, wallet range by wallet range, keeping one copy each."""
        from dupguard import positions

        _, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.deduplicate(client, t, buckets=p["dedupe_buckets"],
                                         mutation_timeout_s=p["mutation_timeout_minutes"] * 60)

    @task(pool=settings.CLICKHOUSE_POOL)
    def quality_gate(pre: dict) -> dict:
        """No duplicate key left, nothing lost (distinct keys unchanged), sane quantities."""
        from dupguard import positions

        _, _, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.dedupe_gate(client, t, expected_keys=pre["before"]["distinct_keys"])["metrics"]

    @task(pool=settings.CLICKHOUSE_POOL)
    def report(pre: dict, repaired: dict, gated: dict) -> dict:
        """Log and return counts before/after, rows per partition and the run's duration."""
        from dupguard import positions

        _, _, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.report(client, t, before=pre["before"],
                                    started_at=pre["started_at"],
                                    extra={"deduplicate": repaired, "after_metrics": gated})

    pre = preflight()
    repaired = deduplicate()
    gated = quality_gate(pre)
    pre >> repaired >> gated
    report(pre, repaired, gated)


unified_positions_deduplicate()
