"""``GET /health``: ok only when the platform is doing its job, not merely running.

Degraded (503) when any of these fails, each named in ``degraded``:

- ``database``: PostgreSQL does not answer;
- ``broker``: the MQTT broker does not accept a TCP connection;
- ``evaluation_backlog``: the oldest reading waiting for the alert engine was
  queued longer ago than ``health_evaluation_backlog_seconds`` (the engine is
  down or not keeping pace, so alerts are late);
- ``ingest_stalled``: an ingest has held a message unacknowledged longer than
  ``health_ingest_held_seconds`` (a message it cannot store is blocking it);
- ``ingest_silent``: a running ingest has not beaten for
  ``INGEST_SILENT_SECONDS`` (killed or hung without a clean stop).

The ingest checks read the heartbeats of migration 0103 (``ingest_heartbeat``,
written by ``server.ingest_health``); an API with no ingest heartbeats (none
running yet, or a deployment without one) does not degrade for that.
"""

from __future__ import annotations

import socket
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from homeward.settings import Settings
from server import queries
from server.api.deps import PoolDep, SettingsDep

router = APIRouter(tags=["health"])

#: A running ingest beats every 5 s (server.ingest_health.HEARTBEAT_EVERY_S); six missed
#: beats is a stopped ingest (the rule in migration 0103's comment).
INGEST_SILENT_SECONDS = 30.0


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    degraded: list[str] = Field(description="the checks that failed; empty when ok")
    database: str
    broker: str
    evaluation_backlog: dict[str, Any] | None = Field(
        default=None, description="oldest_seconds: age of the oldest queued reading (null "
                                  "when none); limit_seconds")
    ingest: dict[str, Any] | None = Field(
        default=None, description="clients: per running ingest, its client_id, "
                                  "heartbeat_seconds, held_seconds (age of the oldest "
                                  "message held unacknowledged, null when none), "
                                  "held_messages, suspects; held_limit_seconds, "
                                  "silent_limit_seconds")


def _database_checks(pool: PoolDep, settings: Settings, result: dict[str, Any]) -> list[str]:
    degraded: list[str] = []
    try:
        with pool.connection(timeout=3) as conn:
            conn.execute("SELECT 1")
            result["database"] = "ok"
            oldest = queries.evaluation_backlog_seconds(conn)
            ingests = queries.ingest_heartbeats(conn)
    except Exception as err:
        result["database"] = f"error: {type(err).__name__}: {err}".strip()
        return ["database"]
    limit = settings.health_evaluation_backlog_seconds
    result["evaluation_backlog"] = {"oldest_seconds": oldest, "limit_seconds": limit}
    if oldest is not None and oldest > limit:
        degraded.append("evaluation_backlog")
    held_limit = settings.health_ingest_held_seconds
    result["ingest"] = {"clients": ingests, "held_limit_seconds": held_limit,
                        "silent_limit_seconds": INGEST_SILENT_SECONDS}
    if any((i["held_seconds"] or 0) > held_limit for i in ingests):
        degraded.append("ingest_stalled")
    if any(i["heartbeat_seconds"] > INGEST_SILENT_SECONDS for i in ingests):
        degraded.append("ingest_silent")
    return degraded


@router.get("/health", summary="Ready: database, broker, alert backlog and ingest (no "
                               "authentication)", response_model=Health,
            responses={503: {"model": Health, "description": "degraded: `degraded` names "
                                                             "what failed"}})
def health(pool: PoolDep, settings: SettingsDep) -> JSONResponse:
    result: dict[str, Any] = {}
    degraded = _database_checks(pool, settings, result)
    try:
        with socket.create_connection((settings.mqtt_host, settings.mqtt_port), timeout=2):
            result["broker"] = "ok"
    except OSError as err:
        result["broker"] = f"error: {err}"
        degraded.append("broker")
    ok = not degraded
    body = Health(status="ok" if ok else "degraded", degraded=degraded, **result)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)
