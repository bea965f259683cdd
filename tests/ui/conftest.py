"""The dupguard app on the session's real metadata database, called in-process through FastAPI's
TestClient, mounted at /dupguard as the api-server mounts it, with JWTs from Airflow's own auth
manager."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ui(airflow_home):
    """``(client, token)``: a TestClient of the mounted app and an admin's JWT."""
    from bench.bench_ui import client_and_token
    from tests.airflow_helpers import dagbag

    dagbag()  # the DAGs in the metadata database: the dashboard shows the DAGs a user may read
    client, token = client_and_token()
    with client:
        yield client, token


@pytest.fixture()
def client(ui):
    return ui[0]


@pytest.fixture()
def auth(ui) -> dict[str, str]:
    return {"Authorization": f"Bearer {ui[1]}"}
