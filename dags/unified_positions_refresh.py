"""
### unified_positions_refresh

Every six hours (`0 */6 * * *`, UTC) rebuilds the **open (unresolved) positions** of
`pm_trade_fifo_roi_v3_mat_unified` (ClickHouse, connection `polymarket_clickhouse`) from
the fills, with exact FIFO matching, and publishes them without ever showing readers an
empty or half-built table.

1. **preflight** - source tables and columns exist; the newest fill is at most
   `max_source_lag_hours` before the run's logical date; mutations of the unified table
   pending longer than `stuck_mutation_minutes` are killed by id and reported. Creates the
   unified table (partitioned by open/resolved) when it is missing.
2. **build** - every open lot of every wallet (not only recently active ones), and the
   lots of markets resolved since they were published as open (rebuilt as resolved rows),
   into `<table>__staging`.
3. **quality_gate_staging** - staging has no duplicate key, no negative `tokens_held`,
   no `tokens_sold_early > tokens`, at least `min_unresolved_rows` open lots and at least
   `max_drop_ratio` x the published open lots. A failure publishes nothing.
4. **publish** - `REPLACE PARTITION` of the open part (table partitioned by
   `isNull(resolved_at)`), else `DELETE WHERE resolved_at IS NULL` waited on by its own
   mutation id, then insert. The previous open part is kept in `<table>__prev_open`.
5. **quality_gate_health** - published table: no duplicate open key, no lot both open and
   resolved, newest entry at most `max_hours_stale` before the logical date, enough open rows.
6. **report** - counts before/after, rows per partition, duration.

On failure: see the runbook in `docs/positions.md` (each gate's meaning, what to check,
how to re-run or roll back). Trigger by hand with the params below (UI form or
`airflow dags test unified_positions_refresh --conf '{"min_unresolved_rows": 1000}'`).
"""
from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from dupguard import settings
from dupguard.dagkit import dag_kwargs
from dupguard.positions import DEFAULTS

PARAMS = {
    "min_unresolved_rows": Param(DEFAULTS["min_unresolved_rows"], type="integer", minimum=0,
                                 description="Fewest open lots staging may hold (production: 5000000)."),
    "max_drop_ratio": Param(DEFAULTS["max_drop_ratio"], type="number", minimum=0, maximum=1,
                            description="Staged open lots must be >= this x the published open lots."),
    "max_hours_stale": Param(DEFAULTS["max_hours_stale"], type="number", minimum=0,
                             description="Newest published entry at most this many hours before the logical date."),
    "max_source_lag_hours": Param(DEFAULTS["max_source_lag_hours"], type="number", minimum=0,
                                  description="Newest fill at most this many hours before the logical date."),
    "stuck_mutation_minutes": Param(DEFAULTS["stuck_mutation_minutes"], type="integer", minimum=1,
                                    description="Kill (by id) mutations of the table pending longer than this."),
    "mutation_timeout_minutes": Param(DEFAULTS["mutation_timeout_minutes"], type="number", minimum=1,
                                      description="How long publish waits for its own DELETE mutation."),
    "build_buckets": Param(DEFAULTS["build_buckets"], type="integer", minimum=1, maximum=256,
                           description="Wallet ranges the build is split into (memory)."),
    "database": Param("", type="string",
                      description="ClickHouse database of the tables; blank = the connection's schema."),
}


def _ctx():
    from dupguard import positions

    context = get_current_context()
    params = positions.run_params(context)
    tables = positions.tables_for(settings.CLICKHOUSE_CONN_ID, params["database"])
    return context, params, tables


@dag(dag_id="unified_positions_refresh", params=PARAMS,
     **dag_kwargs(doc_md=__doc__, tags=["clickhouse", "polymarket", "positions"], schedule="0 */6 * * *"))
def unified_positions_refresh():
    @task(pool=settings.CLICKHOUSE_POOL)
    def preflight() -> dict:
        """Check source tables, columns and freshness; kill stuck mutations of the unified table by id."""
        from dupguard import positions

        context, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.preflight(client, t, as_of=positions.run_as_of(context),
                                       max_source_lag_hours=p["max_source_lag_hours"],
                                       stuck_mutation_minutes=p["stuck_mutation_minutes"])

    @task(pool=settings.CLICKHOUSE_POOL)
    def build() -> dict:
        """Rebuild every open lot (exact FIFO, set-based in ClickHouse) into the staging table."""
        from dupguard import positions

        _, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.build(client, t, buckets=p["build_buckets"])

    @task(pool=settings.CLICKHOUSE_POOL)
    def quality_gate_staging() -> dict:
        """Gate the staging table before anything is published; a failure leaves the live table untouched."""
        from dupguard import positions

        _, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.staging_gate(client, t, min_unresolved_rows=p["min_unresolved_rows"],
                                          max_drop_ratio=p["max_drop_ratio"])["metrics"]

    @task(pool=settings.CLICKHOUSE_POOL)
    def publish() -> dict:
        """Swap the open part in (REPLACE PARTITION, or DELETE mutation waited by id then insert)."""
        from dupguard import positions

        _, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.publish(client, t, mutation_timeout_s=p["mutation_timeout_minutes"] * 60)

    @task(pool=settings.CLICKHOUSE_POOL)
    def quality_gate_health() -> dict:
        """Gate the published table: no duplicate open key, nothing in both parts, fresh, enough open rows."""
        from dupguard import positions

        context, p, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.health_gate(client, t, as_of=positions.run_as_of(context),
                                         max_hours_stale=p["max_hours_stale"],
                                         min_unresolved_rows=p["min_unresolved_rows"])["metrics"]

    @task(pool=settings.CLICKHOUSE_POOL)
    def report(pre: dict, built: dict, published: dict, health: dict) -> dict:
        """Log and return counts before/after, rows per partition and the run's duration."""
        from dupguard import positions

        _, _, t = _ctx()
        with positions.task_client(settings.CLICKHOUSE_CONN_ID) as client:
            return positions.report(client, t, before=pre["before"],
                                    started_at=pre["started_at"],
                                    extra={"killed_mutations": pre["killed_mutations"], "build": built,
                                           "publish": published, "health": health})

    pre = preflight()
    built = build()
    gated = quality_gate_staging()
    published = publish()
    health = quality_gate_health()
    pre >> built >> gated >> published >> health
    report(pre, built, published, health)


unified_positions_refresh()
