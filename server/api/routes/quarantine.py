"""Recent rejects: payloads and batch items the ingest refused, with the reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from server import queries
from server.api.deps import CurrentClinician, SessionDep

router = APIRouter(prefix="/api/quarantine", tags=["quarantine"])


@router.get("", summary="Recent quarantined payloads, newest first")
def recent(conn: SessionDep, clinician: CurrentClinician, hub: str | None = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return queries.recent_quarantine(conn, limit=limit, hub_id=hub)
