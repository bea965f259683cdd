"""A small client of Airflow's REST API (``/api/v2``, token from ``/auth/token``).

Used by the demo (unpause and trigger DAGs once the UI is up) and by the end-to-end tests.
"""
from __future__ import annotations

import time
from typing import Any

import httpx

FINISHED = {"success", "failed"}


class AirflowApi:
    def __init__(self, base_url: str, username: str = "admin", password: str = "admin", timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._username = username
        self._password = password
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def login(self) -> str:
        r = self._client.post("/auth/token", json={"username": self._username, "password": self._password})
        r.raise_for_status()
        self._token = r.json()["access_token"]
        return self._token

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        if self._token is None:
            self.login()
        r = self._client.request(method, f"/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"}, **kw)
        if r.status_code == 401:
            self.login()
            r = self._client.request(method, f"/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"}, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def health(self) -> dict[str, Any]:
        return self._client.get("/api/v2/monitor/health").json()

    def dag_ids(self) -> list[str]:
        return [d["dag_id"] for d in self._request("GET", "/dags", params={"limit": 100})["dags"]]

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = set(dag_ids) - set(self.dag_ids())
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs not parsed after {timeout:.0f}s: {sorted(missing)}")
            time.sleep(2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        return self._request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs of ``dag_id`` first."""
        return self._request("GET", f"/dags/{dag_id}/dagRuns",
                             params={"limit": limit, "order_by": "-start_date"})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s: "
                                   f"{self.task_instances(dag_id, run_id)}")
            time.sleep(2)
