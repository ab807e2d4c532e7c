"""The FastAPI application: a psycopg connection pool, the routes, JSON errors, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from homeward import __version__
from homeward.settings import Settings, get_settings
from server.api.alert_events import AlertEvents
from server.api.csrf import OriginCheck, request_token
from server.api.deps import Problem
from server.api.limits import BodySizeLimit, unreadable_body, validation_error
from server.api.security_headers import SecurityHeaders

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None, *, pool_max_size: int = 10) -> FastAPI:
    """The app; its connection pool opens on startup and closes on shutdown."""
    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool = ConnectionPool(
            s.database_url, min_size=1, max_size=pool_max_size, open=False,
            kwargs={"autocommit": True, "application_name": "homeward-api"}, timeout=5.0)
        pool.open(wait=False)
        app.state.pool = pool
        app.state.alert_events = AlertEvents(s.database_url,
                                             per_clinician=s.api_streams_per_clinician)
        app.state.login_limiter = anyio.CapacityLimiter(s.api_login_concurrency)
        try:
            yield
        finally:
            await app.state.alert_events.close()
            pool.close()

    # /docs is served by server.api.routes.docs (no inline script); ReDoc not at all
    app = FastAPI(title="Homeward API", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Readings, alerts, hubs and quarantine of the Homeward "
                              "remote-monitoring platform. Authenticate with "
                              "`Authorization: Bearer <token>`.",
                  responses={
                      413: {"model": Problem, "description": "request body larger than "
                                                             "HOMEWARD_API_MAX_BODY_BYTES"},
                      503: {"model": Problem, "description": "database unavailable; the "
                                                             "Retry-After header says when "
                                                             "to try again"}})
    app.state.settings = s
    app.add_middleware(BodySizeLimit, max_bytes=s.api_max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, unreadable_body)
    app.state.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    app.state.templates.env.globals["csrf_token"] = request_token
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    from alerts.store import AlertNotFound, InvalidTransition, UnknownOutcome

    @app.exception_handler(AlertNotFound)
    async def _not_found(request: Request, exc: AlertNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InvalidTransition)
    async def _conflict(request: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(UnknownOutcome)
    async def _bad_outcome(request: Request, exc: UnknownOutcome) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    from alerts.handovers import HandoverRefused
    from alerts.tasks import TaskRefused
    from server.care_team import CareTeamRefused, NotAllowed

    @app.exception_handler(HandoverRefused)
    @app.exception_handler(TaskRefused)
    @app.exception_handler(CareTeamRefused)
    async def _refused(request: Request, exc: Exception) -> JSONResponse:
        # a 422 in FastAPI's shape, as every other 422 of the API
        return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc),
                                         "type": "value_error"}]}, status_code=422)

    @app.exception_handler(NotAllowed)
    async def _not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "database unavailable; try again shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    from server.api.routes import (
        admin,
        alert_actions,
        alerts,
        collaboration,
        dashboard,
        docs,
        fhir,
        fhir_export,
        health,
        hubs,
        invite,
        messages,
        pages,
        patients,
        portal,
        quarantine,
        record,
        reports,
    )

    app.include_router(health.router)
    app.include_router(alerts.router)
    app.include_router(alert_actions.router)
    app.include_router(patients.router)
    app.include_router(collaboration.router)
    app.include_router(record.router)
    app.include_router(messages.router)
    app.include_router(quarantine.router)
    app.include_router(hubs.router)
    app.include_router(dashboard.router)
    app.include_router(pages.router)
    app.include_router(portal.router)  # the patient portal, /my
    app.include_router(reports.router)
    app.include_router(reports.pages)
    app.include_router(admin.router)
    app.include_router(invite.router)
    app.include_router(docs.router)
    app.include_router(fhir_export.router)  # before fhir: Patient/$export is no Patient id
    app.include_router(fhir.router)
    fhir.install_error_handlers(app)  # last: it wraps every handler registered above
    # A state-changing request from another site is a 403 before anything reads it, and
    # every answer, the 413s and 403s of the middlewares included, carries the security
    # headers (docs/security.md).
    app.add_middleware(OriginCheck, dashboard_url=s.dashboard_url)
    app.add_middleware(SecurityHeaders)
    # Outermost (added last): request id, access log line and per-route latency for every
    # request, those other middlewares answer included (server/api/observe.py).
    from server.api.observe import RequestContext

    app.add_middleware(RequestContext)
    return app


def serve(*, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          settings: Settings | None = None) -> None:
    """Run the API with uvicorn until interrupted (``homeward serve``)."""
    import uvicorn

    # log_config=None: uvicorn's lines go to the root handler (homeward.logs, JSON or
    # console); its access log is replaced by RequestContext's line with the request id.
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level,
                log_config=None, access_log=False)
