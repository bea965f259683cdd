"""The quality-gate helper on real PostgreSQL and the embedded ClickHouse engine."""
from __future__ import annotations

import great_expectations as gx
import psycopg
import pytest

from dupguard.connections import clickhouse_client
from dupguard.gate import GateFailed, run_gate

ZERO = dict(min_value=0, max_value=0)


@pytest.fixture()
def pg_dups(pg_cluster):
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS gate_probe")
        c.execute("CREATE TABLE gate_probe (id int, v text)")
        c.execute("INSERT INTO gate_probe SELECT g, 'x' FROM generate_series(1, 1000) g")
    yield pg_cluster
    with psycopg.connect(pg_cluster.dsn("telemetry"), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS gate_probe")


DUP_QUERY = "SELECT count(*) AS duplicate_ids FROM (SELECT id FROM gate_probe GROUP BY id HAVING count(*) > 1) d"


def test_pg_query_gate_passes_and_writes_data_docs(pg_dups, tmp_path, monkeypatch):
    monkeypatch.setenv("DUPGUARD_DATA_DOCS_DIR", str(tmp_path))
    summary = run_gate("pg clean", [gx.expectations.ExpectColumnValuesToBeBetween(column="duplicate_ids", **ZERO),
                                    gx.expectations.ExpectTableRowCountToEqual(value=1)],
                       conn_id="telemetry_postgres", query=DUP_QUERY)
    assert summary["success"] is True
    assert summary["evaluated"] == 2 and summary["failed"] == 0
    assert (tmp_path / "index.html").exists()
    assert list((tmp_path / "validations").rglob("*.html")), "a validation page is written"


def test_pg_query_gate_fails_listing_every_failure(pg_dups, caplog):
    with psycopg.connect(pg_dups.dsn("telemetry"), autocommit=True) as c:
        c.execute("INSERT INTO gate_probe VALUES (7, 'dup'), (8, 'dup')")
    with pytest.raises(GateFailed) as err:
        run_gate("pg dirty", [gx.expectations.ExpectColumnValuesToBeBetween(column="duplicate_ids", **ZERO),
                              gx.expectations.ExpectTableRowCountToEqual(value=2)],
                 conn_id="telemetry_postgres", query=DUP_QUERY)
    assert len(err.value.failures) == 2
    text = str(err.value)
    assert "expect_column_values_to_be_between" in text and "expect_table_row_count_to_equal" in text
    assert "gate pg dirty | FAIL" in caplog.text


def test_pg_table_gate(pg_dups):
    summary = run_gate("pg table", [gx.expectations.ExpectTableRowCountToBeBetween(min_value=1000, max_value=1000)],
                       conn_id="telemetry_postgres", table="public.gate_probe")
    assert summary["success"] and summary["results"][0]["observed"] == 1000


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
    exp = [gx.expectations.ExpectColumnValuesToBeBetween(column="duplicate_keys", **ZERO),
           gx.expectations.ExpectColumnValuesToBeBetween(column="total", min_value=1)]
    assert run_gate("ch clean", exp, dataframe=clean)["success"]
    with pytest.raises(GateFailed) as err:
        run_gate("ch dirty", exp, dataframe=dirty)
    assert [f["expectation"] for f in err.value.failures] == ["expect_column_values_to_be_between"]
    assert "duplicate_keys" in err.value.failures[0]["description"]


def test_gate_rejects_ambiguous_source():
    with pytest.raises(ValueError, match="exactly one"):
        run_gate("x", [gx.expectations.ExpectTableRowCountToEqual(value=1)])
