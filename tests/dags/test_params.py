"""Every DAG triggers from the UI's form with its defaults.

Airflow's trigger form treats a param as required unless its JSON-schema type admits null, so a
param defaulting to ""/None without ``"null"`` in its type keeps the Trigger button disabled.
"""
from __future__ import annotations

import pytest

from tests.airflow_helpers import ROOT

NOT_GIVEN = ("", None)


def _dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


DAGS = _dags()


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    return set(t) if isinstance(t, list) else {t} if t else set()


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_no_param_without_a_default_is_required_by_the_form(dag_id):
    bad = {}
    for name, param in DAGS[dag_id].params.items():
        p = DAGS[dag_id].params.get_param(name)
        if p.value in NOT_GIVEN and "null" not in _types(p.schema):
            bad[name] = f"default {p.value!r}, type {p.schema.get('type')!r}"
        if "null" in _types(p.schema) and "enum" in p.schema and None not in p.schema["enum"]:
            bad[name] = f"optional enum {p.schema['enum']!r} has no blank (None) choice"
    assert not bad, f"{dag_id}: the trigger form would refuse its defaults: {bad}"


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_every_param_has_a_title_and_a_description(dag_id):
    missing = [name for name in DAGS[dag_id].params
               if not DAGS[dag_id].params.get_param(name).schema.get("title")
               or not DAGS[dag_id].params.get_param(name).description]
    assert not missing, f"{dag_id}: params without title or description: {missing}"
