"""Alerts: list, one, acknowledge, resolve, and a live stream of alert events (SSE)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, get_args

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from starlette.types import Receive, Scope, Send

from alerts import store
from alerts.model import ACTIVE_STATES, CLOSED_STATES, OUTCOMES
from server import web_sessions
from server.access import alert_condition
from server.api.alert_events import OVERFLOW, AlertEvents, StreamLimit, Subscription
from server.api.alert_models import Alert, AlertDetail
from server.api.deps import (
    AUTH_RESPONSES,
    NOT_FOUND,
    PoolDep,
    Problem,
    SessionDep,
    SettingsDep,
    session_of,
)
from server.api.scope import AlertAccess, ListAccess, StreamScope
from server.api.types import DbId, Text

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

#: Seconds between keep-alive comments on an idle event stream.
STREAM_KEEPALIVE = 15.0
#: How often a stream opened with the session cookie checks that its session still
#: stands (sign-out, expiry): it ends within this plus one keep-alive (docs/security.md).
SESSION_RECHECK_S = 30.0


StateFilter = Literal["open", "acknowledged", "resolved", "auto_resolved", "all"]
assert set(get_args(StateFilter)) == {*ACTIVE_STATES, *CLOSED_STATES, "all"}


def _known_outcome(value: str) -> str:
    if value not in OUTCOMES:
        raise ValueError(f"unknown outcome; one of: {', '.join(OUTCOMES)}")
    return value


#: One of alerts.model.OUTCOMES, validated and published as an enum in the OpenAPI.
Outcome = Annotated[str, AfterValidator(_known_outcome),
                    WithJsonSchema({"type": "string", "enum": list(OUTCOMES)})]

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "the alert is already closed"}}


class AcknowledgeBody(BaseModel):
    note: Text | None = Field(default=None, max_length=2000)


class ResolveBody(BaseModel):
    outcome: Outcome = Field(description="the coded outcome (alerts.model.OUTCOMES)")
    note: Text | None = Field(default=None, max_length=2000)


@router.get("", summary="Alerts, most urgent first (default: open and acknowledged)",
            responses=AUTH_RESPONSES, response_model=list[Alert])
def list_alerts(
    conn: SessionDep, access: ListAccess,
    state: Annotated[list[StateFilter] | None,
                     Query(description="repeat for several; 'all' for every state")] = None,
    team: Text | None = None, patient: DbId | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    states: tuple[str, ...] | None = ("open", "acknowledged")
    if state:
        states = None if "all" in state else tuple(state)
    return store.list_alerts(conn, states=states, team_id=team, patient_id=patient, limit=limit,
                             visible=alert_condition(access.scope))


class EventStream(StreamingResponse):
    """An SSE response that gives its subscription back however the response ends
    (finished, client gone, or never started)."""

    def __init__(self, content: AsyncIterator[str], events: AlertEvents,
                 subscription: Subscription) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._events, self._subscription = events, subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._events.unsubscribe(self._subscription)


@router.get("/stream", summary="Server-sent events: one 'alert' event per alert change",
            response_class=StreamingResponse,
            responses={**AUTH_RESPONSES,
                       200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "an endless event stream"},
                       429: {"model": Problem,
                             "description": "this clinician already holds the most live "
                                            "streams allowed "
                                            "(HOMEWARD_API_STREAMS_PER_CLINICIAN)"}})
async def stream(request: Request, access: ListAccess, pool: PoolDep,
                 settings: SettingsDep) -> StreamingResponse:
    """Relays the ``alert_event`` notifications of the alert engine; the process shares
    one database connection among all its streams (``server.api.alert_events``)."""
    events: AlertEvents = request.app.state.alert_events
    try:
        sub = await events.subscribe(access.scope.clinician_id)
    except StreamLimit as err:
        raise HTTPException(429, detail=str(err), headers={"Retry-After": "30"}) from err

    visible = StreamScope(pool, access.scope)
    session = session_of(request)

    def session_stands() -> bool:
        assert session is not None
        with pool.connection() as conn:
            return web_sessions.session_live(conn, session,
                                             idle_seconds=settings.session_idle_seconds)

    async def lines() -> AsyncIterator[str]:
        yield ": connected\n\n"
        checked = time.monotonic()
        while not await request.is_disconnected():
            if session is not None and time.monotonic() - checked >= SESSION_RECHECK_S:
                checked = time.monotonic()
                if not await anyio.to_thread.run_sync(session_stands):
                    return  # signed out or expired: nothing more on this session
            try:
                payload = await asyncio.wait_for(sub.queue.get(), timeout=STREAM_KEEPALIVE)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if payload is OVERFLOW:
                return
            if isinstance(payload, str) and await visible.allows(payload):
                yield f"event: alert\ndata: {payload}\n\n"

    return EventStream(lines(), events, sub)


@router.get("/{alert_id}", summary="One alert with its history",
            responses={**AUTH_RESPONSES, **NOT_FOUND}, response_model=AlertDetail)
def get_alert(alert_id: DbId, conn: SessionDep, access: AlertAccess) -> dict[str, Any]:
    alert = store.get_alert(conn, alert_id)
    if alert is None:
        raise HTTPException(404, detail=f"alert {alert_id} not found")
    return alert


@router.post("/{alert_id}/acknowledge", summary="Take the alert (409 if already resolved)",
             responses={**AUTH_RESPONSES, **NOT_FOUND, **CONFLICT}, response_model=AlertDetail)
def acknowledge(alert_id: DbId, conn: SessionDep, access: AlertAccess,
                body: AcknowledgeBody | None = None) -> dict[str, Any]:
    return store.acknowledge(conn, alert_id, clinician_id=access.scope.clinician_id,
                             note=body.note if body else None)


@router.post("/{alert_id}/resolve", summary="Close the alert with an outcome (409 if closed)",
             responses={**AUTH_RESPONSES, **NOT_FOUND, **CONFLICT}, response_model=AlertDetail)
def resolve(alert_id: DbId, body: ResolveBody, conn: SessionDep,
            access: AlertAccess) -> dict[str, Any]:
    return store.resolve(conn, alert_id, clinician_id=access.scope.clinician_id,
                         outcome=body.outcome,
                         note=body.note)
