"""A patient's readings over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from homeward.kinds import Kind
from server import queries
from server.api.deps import AUTH_RESPONSES, NOT_FOUND, SessionDep
from server.api.scope import PatientAccess
from server.api.types import TIME_MAX, TIME_MIN, BoundedDatetime, DbId

router = APIRouter(prefix="/api/patients", tags=["patients"])

DEFAULT_RANGE = timedelta(days=7)


TIME_HELP = (f"RFC 3339; naive = UTC; from {TIME_MIN.date().isoformat()} and before "
             f"{TIME_MAX.date().isoformat()}")


@router.get("/{patient_id}/readings",
            summary="Readings taken in [from, to), oldest first (default: the last 7 days)",
            responses={**AUTH_RESPONSES, **NOT_FOUND})
def readings(
    patient_id: DbId, conn: SessionDep, access: PatientAccess,
    start: Annotated[BoundedDatetime | None, Query(alias="from", description=TIME_HELP)] = None,
    end: Annotated[BoundedDatetime | None, Query(alias="to", description=TIME_HELP)] = None,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    end_at = end or datetime.now(UTC)
    start_at = start or end_at - DEFAULT_RANGE
    if start_at >= end_at:
        raise RequestValidationError([{"loc": ("query", "from"), "type": "value_error",
                                       "msg": "'from' must be before 'to'"}])
    rows = queries.patient_readings(conn, patient_id=patient_id, start=start_at, end=end_at,
                                    kind=kind.value if kind else None, limit=limit)
    return {"patient_id": patient_id, "from": start_at.isoformat(), "to": end_at.isoformat(),
            "kind": kind.value if kind else None, "count": len(rows), "readings": rows}
