"""The quality gate (specs rendered into great-expectations) on real PostgreSQL and the embedded
ClickHouse engine: verdicts fail without retry, errors are retried."""
from __future__ import annotations

import psycopg
import pytest

from dupguard.common.connections import clickhouse_client
from dupguard.common.gate import Check, GateError, GateFailed, GateSpec, at_least, run_gate, zero


@pytest.fixture()
def pg_dups(pg_cluster):
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS gate_probe")
        c.execute("CREATE TABLE gate_probe (id int, v text)")
        c.execute("INSERT INTO gate_probe SELECT g, 'x' FROM generate_series(1, 1000) g")
    yield pg_cluster
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS gate_probe")


DUP_QUERY = ("SELECT count(*) AS duplicate_ids, (SELECT count(*) FROM gate_probe) AS total_rows"
             " FROM (SELECT id FROM gate_probe GROUP BY id HAVING count(*) > 1) d")
SPEC = GateSpec("pg probe", (zero("duplicate_ids", "one row per id"),
                             at_least("total_rows", "min_rows", "the table must not shrink"),
                             Check(None, "one aggregate row", min=1, kind="rows")), ("public.gate_probe",))


def test_pg_gate_passes_with_run_time_bounds_and_writes_data_docs(pg_dups):
    from dupguard.common import settings

    summary = run_gate(SPEC, conn_id="telemetry_postgres", query=DUP_QUERY, bounds={"min_rows": 1000})
    assert summary["success"] is True
    assert summary["evaluated"] == 3 and summary["failed"] == 0
    assert summary["tables"] == ["public.gate_probe"]
    assert {r["reason"] for r in summary["results"]} == {"one row per id", "the table must not shrink",
                                                         "one aggregate row"}
    assert summary["data_docs"] and settings.data_docs_dir().exists()


def test_pg_gate_fails_listing_every_failure_with_offending_keys(pg_dups, caplog):
    with psycopg.connect(pg_dups.dsn("telemetry"), autocommit=True) as c:
        c.execute("INSERT INTO gate_probe VALUES (7, 'dup'), (8, 'dup')")
    with pytest.raises(GateFailed) as err:
        run_gate(SPEC, conn_id="telemetry_postgres", query=DUP_QUERY, bounds={"min_rows": 5000},
                 offending=lambda: [7, 8])
    assert [f["column"] for f in err.value.failures] == ["duplicate_ids", "total_rows"]
    assert err.value.failures[1]["min"] == 5000
    assert err.value.summary["offending"] == [7, 8]
    assert "offending keys" in str(err.value) and "[7, 8]" in str(err.value)
    assert "gate pg probe | FAIL" in caplog.text


def test_a_metric_that_cannot_be_computed_is_an_error_not_a_verdict(pg_cluster):
    """A missing table (or a lost connection) is retried like any transient failure."""
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(GateError, match="could not compute") as err:
        run_gate(SPEC, conn_id="telemetry_postgres", query="SELECT count(*) AS duplicate_ids, 1 AS total_rows "
                 "FROM no_such_table", bounds={"min_rows": 1})
    assert not isinstance(err.value, AirflowFailException)
    assert "no_such_table" in str(err.value)


def test_a_bound_without_its_value_is_refused():
    with pytest.raises(ValueError, match="min_rows"):
        run_gate(SPEC, conn_id="telemetry_postgres", query=DUP_QUERY)


def test_clickhouse_dataframe_gate_pass_and_fail(chdb_dir):
    with clickhouse_client("polymarket_clickhouse") as ch:
        ch.command("DROP TABLE IF EXISTS gate_probe")
        ch.command("CREATE TABLE gate_probe (k String, v UInt32) ENGINE = MergeTree ORDER BY k")
        ch.insert("gate_probe", [["a", 1], ["b", 2], ["c", 3]], column_names=["k", "v"])
        agg = "SELECT count() AS total, count() - uniqExact(k) AS duplicate_keys FROM gate_probe"
        clean = ch.query_df(agg)
        ch.insert("gate_probe", [["a", 9]], column_names=["k", "v"])
        dirty = ch.query_df(agg)
        ch.command("DROP TABLE gate_probe")
    spec = GateSpec("ch probe", (zero("duplicate_keys", "one row per key"), at_least("total", 1, "not empty")))
    assert run_gate(spec, dataframe=clean)["success"]
    with pytest.raises(GateFailed) as err:
        run_gate(spec, dataframe=dirty)
    assert [f["column"] for f in err.value.failures] == ["duplicate_keys"]
    assert err.value.failures[0]["observed"] == {"unexpected_count": 1, "unexpected_values": [1]}


def test_gate_rejects_ambiguous_source():
    with pytest.raises(ValueError, match="exactly one"):
        run_gate(SPEC)
