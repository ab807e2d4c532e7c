"""A patient's readings over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from homeward.kinds import Kind
from server import queries
from server.api.deps import AUTH_RESPONSES, NOT_FOUND, SessionDep
from server.api.scope import PatientAccess
from server.api.types import TIME_MAX, TIME_MIN, BoundedDatetime, DbId

router = APIRouter(prefix="/api/patients", tags=["patients"])

DEFAULT_RANGE = timedelta(days=7)


TIME_HELP = (f"RFC 3339; naive = UTC; from {TIME_MIN.date().isoformat()} and before "
             f"{TIME_MAX.date().isoformat()}")


class Reading(BaseModel):
    id: str = Field(description="the reading's UUID, its idempotency key end to end")
    kind: str
    taken_at: str = Field(description="when the device took it (RFC 3339)")
    values: dict[str, float] = Field(description="per metric, in the kind's UCUM unit")
    flags: list[str]
    device: str
    hub_id: str
    received_at: str = Field(description="when the ingest received it (RFC 3339)")


class Readings(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    patient_id: int
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    kind: str | None
    count: int
    readings: list[Reading]


@router.get("/{patient_id}/readings", response_model=Readings, response_model_by_alias=True,
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
