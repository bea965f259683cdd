"""The dupguard FastAPI app (mounted by the api-server at ``/dupguard``).

Every route depends on Airflow's own ``get_user``: the API's ``Authorization: Bearer <JWT>`` or
the UI's session cookie ``_token``; no credential is 401, a forged or expired one 401/403. A
route about one DAG also asks the auth manager whether the user may read that DAG's XComs.

    GET /api/runs?dag_id=&limit=        newest runs first, each with its tasks' reports
    GET /api/series?dag_id=&metric=&since=   one value per run (catalog.metrics)
    GET /api/metrics?dag_id=            the metric names of a DAG
    GET /api/gates?dag_id=&run_id=      the kept gate validations of a run
    GET /                               the dashboard (?window=24h|7d)
    GET /run/{dag_id}/{run_id}          a run's reports and gate results (?task_id=)
    GET /docs/{dag_id}/{run_id}/{gate}  a gate validation's Data Docs page
"""

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any


def _user_may_read(user: Any, dag_id: str | None) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.XCOM,
                                                details=DagDetails(id=dag_id), user=user)


def _allowed_dags(user: Any) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def create_app():
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, get_user
    from dupguard.common import data_docs
    from dupguard.ui import catalog, pages, queries

    app = FastAPI(title="dupguard", description=__doc__, dependencies=[Depends(get_user)],
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def readable(user: Any, dag_id: str) -> None:
        if not _user_may_read(user, dag_id):
            raise HTTPException(403, f"you may not read the runs of DAG {dag_id}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        """JSON for the API; a small page (with the login link) for a browser."""
        if request.url.path.startswith(f"{base(request)}/api/") or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        login = None
        if exc.status_code in (401, 403):
            try:
                from airflow.api_fastapi.app import get_auth_manager

                login = get_auth_manager().get_url_login()
            except Exception:  # noqa: BLE001 - the page still says what is wrong
                login = "/"
        html = pages.render("message.html", status=f"{exc.status_code}", message=str(exc.detail), login=login)
        return HTMLResponse(html, status_code=exc.status_code)

    @app.get("/api/runs")
    def api_runs(user: GetUserDep, session: SessionDep, dag_id: Annotated[str, Query(min_length=1)],
                 limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50) -> JSONResponse:
        """The DAG's newest runs first, each with ``reports``: task_id -> the task's return value."""
        readable(user, dag_id)
        found = queries.runs(session, dag_id, limit=limit)
        reps = queries.reports(session, [r.id for r in found])
        return JSONResponse({"dag_id": dag_id, "runs": [queries.run_dict(r, reps[r.id]) for r in found]})

    @app.get("/api/metrics")
    def api_metrics(user: GetUserDep, dag_id: Annotated[str, Query(min_length=1)]) -> JSONResponse:
        readable(user, dag_id)
        return JSONResponse({"dag_id": dag_id, "metrics": [
            {"name": m.name, "label": m.label, "unit": m.unit, "tasks": list(m.tasks)}
            for m in catalog.metrics(dag_id).values()]})

    @app.get("/api/series")
    def api_series(user: GetUserDep, session: SessionDep, dag_id: Annotated[str, Query(min_length=1)],
                   metric: Annotated[str, Query(min_length=1)], since: datetime | None = None) -> JSONResponse:
        """One point per run of ``dag_id`` since ``since`` (default: the last 24 h), oldest first."""
        readable(user, dag_id)
        since = _utc(since) if since else datetime.now(timezone.utc) - timedelta(hours=24)
        try:
            s = queries.series(session, dag_id, [metric], since)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from exc
        m = catalog.metric(dag_id, metric)
        return JSONResponse({"dag_id": dag_id, "metric": metric, "label": m.label, "unit": m.unit,
                             "since": since.isoformat(), "points": s.points(metric)})

    @app.get("/api/gates")
    def api_gates(user: GetUserDep, dag_id: Annotated[str, Query(min_length=1)],
                  run_id: Annotated[str, Query(min_length=1)]) -> JSONResponse:
        """Every kept gate validation of one run (the records the Data Docs pages render)."""
        readable(user, dag_id)
        return JSONResponse({"dag_id": dag_id, "run_id": run_id, "validations": data_docs.for_run(dag_id, run_id)})

    @app.get("/", response_class=HTMLResponse)
    def dashboard(request: Request, user: GetUserDep, session: SessionDep,
                  window: Annotated[str, Query(pattern="^(24h|7d)$")] = "24h") -> HTMLResponse:
        html = pages.dashboard(session, window=window, allowed=_allowed_dags(user), base=base(request))
        return HTMLResponse(html)

    @app.get("/run/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_view(request: Request, user: GetUserDep, session: SessionDep, dag_id: str, run_id: str,
                 task_id: str | None = None) -> HTMLResponse:
        readable(user, dag_id)
        status, html = pages.run_page(session, dag_id=dag_id, run_id=run_id, task_id=task_id or None,
                                      base=base(request))
        return HTMLResponse(html, status_code=status)

    @app.get("/docs/{dag_id}/{run_id}/{gate}", response_class=HTMLResponse)
    def docs_view(request: Request, user: GetUserDep, dag_id: str, run_id: str, gate: str) -> HTMLResponse:
        readable(user, dag_id)
        status, html = pages.docs_page(dag_id=dag_id, run_id=run_id, gate=gate, base=base(request))
        return HTMLResponse(html, status_code=status)

    return app
