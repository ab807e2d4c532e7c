"""Recent rejects: payloads and batch items the ingest refused, with the reason.

What a hub sent is untrusted: a listing shows at most ``PREVIEW_BYTES`` of each
payload and of each item's JSON, escaped (``server.api.previews``), beside the
full size, so no payload can break the listing or make it large.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from server import queries
from server.api.deps import AUTH_RESPONSES, SessionDep
from server.api.previews import PREVIEW_BYTES, escape_bytes
from server.api.scope import AdminScope
from server.api.types import DbId, Text

router = APIRouter(prefix="/api/quarantine", tags=["quarantine"])


class QuarantinedPayload(BaseModel):
    id: int
    received_at: str
    hub_id: str | None
    topic: str
    item_index: int | None
    reason: str
    item_preview: str | None = None
    item_bytes: int | None = None
    payload_preview: str | None = None
    payload_bytes: int | None = None
    truncated: bool


def _listed(row: dict[str, Any]) -> QuarantinedPayload:
    item_head, payload_head = row["item_head"], row["payload_head"]
    return QuarantinedPayload(
        id=row["id"], received_at=row["received_at"], hub_id=row["hub_id"],
        topic=row["topic"], item_index=row["item_index"], reason=row["reason"],
        item_preview=None if item_head is None else escape_bytes(bytes(item_head)),
        item_bytes=row["item_bytes"],
        payload_preview=None if payload_head is None else escape_bytes(bytes(payload_head)),
        payload_bytes=row["payload_bytes"],
        truncated=(row["payload_bytes"] or 0) > PREVIEW_BYTES
        or (row["item_bytes"] or 0) > PREVIEW_BYTES)


@router.get("", summary="Recent quarantined payloads, newest first, with bounded previews",
            responses=AUTH_RESPONSES)
def recent(conn: SessionDep, scope: AdminScope,
           hub: Text | None = None,
           before: Annotated[DbId | None, Query(description="page on: only ids below this "
                                                            "(the last id of the page before)")
                             ] = None,
           limit: Annotated[int, Query(ge=1, le=200)] = 100) -> list[QuarantinedPayload]:
    rows = queries.recent_quarantine(conn, limit=limit, hub_id=hub, before_id=before,
                                     head_bytes=PREVIEW_BYTES)
    return [_listed(r) for r in rows]
