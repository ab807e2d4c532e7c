"""Hubs: state from their status messages, current patient, paired devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from server import queries
from server.api.deps import AUTH_RESPONSES, SessionDep
from server.api.scope import AdminScope

router = APIRouter(prefix="/api/hubs", tags=["hubs"])


@router.get("", summary="Every hub", responses=AUTH_RESPONSES)
def list_hubs(conn: SessionDep, scope: AdminScope) -> list[dict[str, Any]]:
    return queries.hubs(conn)
