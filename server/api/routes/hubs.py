"""Hubs: state from their status messages, current patient, paired devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from server import queries
from server.api.deps import AUTH_RESPONSES, SessionDep
from server.api.scope import AdminScope

router = APIRouter(prefix="/api/hubs", tags=["hubs"])


class PairedDevice(BaseModel):
    address: str
    kind: str
    name: str | None


class HubSummary(BaseModel):
    id: str
    state: str
    last_status: dict[str, Any] | None = Field(
        description="the hub's last status message as it sent it (devices, batteries,"
                    " outbox depth); kept when its last will arrives")
    last_status_at: str | None
    last_seen_at: str | None
    patient_id: int | None = Field(description="the patient enrolled on it now")
    devices: list[PairedDevice]


@router.get("", response_model=list[HubSummary], summary="Every hub",
            responses=AUTH_RESPONSES)
def list_hubs(conn: SessionDep, scope: AdminScope) -> list[dict[str, Any]]:
    return queries.hubs(conn)
