"""Alerts: list, one, acknowledge, resolve, and a live stream of alert events (SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from alerts import store
from server.api.deps import CurrentClinician, SessionDep, SettingsDep

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

#: Seconds between keep-alive comments on an idle event stream.
STREAM_KEEPALIVE = 15.0


class AcknowledgeBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class ResolveBody(BaseModel):
    outcome: str = Field(description="one of alerts.model.OUTCOMES")
    note: str | None = Field(default=None, max_length=2000)


@router.get("", summary="Alerts, most urgent first (default: open and acknowledged)")
def list_alerts(
    conn: SessionDep, clinician: CurrentClinician,
    state: Annotated[list[str] | None, Query(description="repeat for several; 'all' for "
                                                         "every state")] = None,
    team: str | None = None, patient: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    states: tuple[str, ...] | None = ("open", "acknowledged")
    if state:
        states = None if "all" in state else tuple(state)
    return store.list_alerts(conn, states=states, team_id=team, patient_id=patient, limit=limit)


@router.get("/stream", summary="Server-sent events: one 'alert' event per alert change")
async def stream(request: Request, clinician: CurrentClinician,
                 settings: SettingsDep) -> StreamingResponse:
    """LISTENs on the ``alert_event`` channel that the alert engine NOTIFYs."""
    aconn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    await aconn.execute("LISTEN alert_event")

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                got = False
                async for notify in aconn.notifies(timeout=STREAM_KEEPALIVE, stop_after=1):
                    got = True
                    yield f"event: alert\ndata: {notify.payload}\n\n"
                if not got:
                    yield ": keep-alive\n\n"
        except (asyncio.CancelledError, psycopg.OperationalError):
            pass
        finally:
            await aconn.close()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{alert_id}", summary="One alert with its history")
def get_alert(alert_id: int, conn: SessionDep, clinician: CurrentClinician) -> dict[str, Any]:
    alert = store.get_alert(conn, alert_id)
    if alert is None:
        raise HTTPException(404, detail=f"alert {alert_id} does not exist")
    return alert


@router.post("/{alert_id}/acknowledge", summary="Take the alert (409 if already resolved)")
def acknowledge(alert_id: int, conn: SessionDep, clinician: CurrentClinician,
                body: AcknowledgeBody | None = None) -> dict[str, Any]:
    return store.acknowledge(conn, alert_id, clinician_id=clinician["id"],
                             note=body.note if body else None)


@router.post("/{alert_id}/resolve", summary="Close the alert with an outcome (409 if closed)")
def resolve(alert_id: int, body: ResolveBody, conn: SessionDep,
            clinician: CurrentClinician) -> dict[str, Any]:
    return store.resolve(conn, alert_id, clinician_id=clinician["id"], outcome=body.outcome,
                         note=body.note)
