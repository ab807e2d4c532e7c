"""``GET /health``: is the database reachable, is the broker reachable."""

from __future__ import annotations

import socket
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.api.deps import PoolDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Database and broker connectivity (no authentication)")
def health(pool: PoolDep, settings: SettingsDep) -> JSONResponse:
    result: dict[str, Any] = {}
    try:
        with pool.connection(timeout=3) as conn:
            conn.execute("SELECT 1")
        result["database"] = "ok"
    except Exception as err:
        result["database"] = f"error: {type(err).__name__}: {err}".strip()
    try:
        with socket.create_connection((settings.mqtt_host, settings.mqtt_port), timeout=2):
            result["broker"] = "ok"
    except OSError as err:
        result["broker"] = f"error: {err}"
    ok = result["database"] == "ok" and result["broker"] == "ok"
    result["status"] = "ok" if ok else "degraded"
    return JSONResponse(result, status_code=200 if ok else 503)
