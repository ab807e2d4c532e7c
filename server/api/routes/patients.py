"""A patient's readings over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from homeward.kinds import Kind
from server import queries
from server.api.deps import CurrentClinician, SessionDep

router = APIRouter(prefix="/api/patients", tags=["patients"])

DEFAULT_RANGE = timedelta(days=7)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@router.get("/{patient_id}/readings",
            summary="Readings taken in [from, to), oldest first (default: the last 7 days)")
def readings(
    patient_id: int, conn: SessionDep, clinician: CurrentClinician,
    start: Annotated[datetime | None, Query(alias="from", description="RFC 3339; naive = UTC")
                     ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="RFC 3339; naive = UTC")
                   ] = None,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    end_at = _aware(end) if end else datetime.now(UTC)
    start_at = _aware(start) if start else end_at - DEFAULT_RANGE
    if start_at >= end_at:
        raise HTTPException(422, detail="'from' must be before 'to'")
    if not queries.patient_exists(conn, patient_id=patient_id):
        raise HTTPException(404, detail=f"patient {patient_id} does not exist")
    rows = queries.patient_readings(conn, patient_id=patient_id, start=start_at, end=end_at,
                                    kind=kind.value if kind else None, limit=limit)
    return {"patient_id": patient_id, "from": start_at.isoformat(), "to": end_at.isoformat(),
            "kind": kind.value if kind else None, "count": len(rows), "readings": rows}
