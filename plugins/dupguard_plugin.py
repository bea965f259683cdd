"""dupguard's Airflow plugin: its view in the UI.

- ``fastapi_apps``: the dupguard app at ``/dupguard`` (dashboard, per-run view, Data Docs pages,
  ``/dupguard/api/runs`` and ``/dupguard/api/series``), served by the api-server behind Airflow's
  own login;
- ``external_views``: a top-level **dupguard** entry in the navigation (the dashboard, in the UI's
  frame), and a **dupguard** tab on every run and task-instance page (that run's reports and
  gate results).

Airflow imports plugins in every process, task processes included, so this module stays light:
the FastAPI app (and FastAPI itself) is built on the api-server's first request.
"""
from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

_ICON = ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' "
         "stroke='%23475569' stroke-width='2' stroke-linecap='round' stroke-linejoin='round'>"
         "<path d='M12 3l8 3v6c0 4.5-3.4 8.3-8 9-4.6-.7-8-4.5-8-9V6z'/><path d='M8.5 12.5l2.5 2.5 4.5-5'/></svg>")


class DupguardApp:
    """ASGI app that builds :func:`dupguard.ui.app.create_app` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from dupguard.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class DupguardPlugin(AirflowPlugin):
    name = "dupguard"
    fastapi_apps = [{"app": DupguardApp(), "url_prefix": "/dupguard", "name": "dupguard"}]
    external_views = [
        {"name": "dupguard", "href": "/dupguard/", "destination": "nav", "url_route": "dupguard",
         "icon": _ICON, "nav_top_level": True},
        {"name": "dupguard", "href": "/dupguard/run/{DAG_ID}/{RUN_ID}", "destination": "dag_run",
         "url_route": "dupguard-run"},
        {"name": "dupguard", "href": "/dupguard/run/{DAG_ID}/{RUN_ID}?task_id={TASK_ID}",
         "destination": "task_instance", "url_route": "dupguard-task"},
    ]
