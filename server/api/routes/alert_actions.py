"""What a nurse does to an alert besides acknowledging and resolving: snooze it, add a
note.  Scoped and audited through ``AlertAccess`` (404 outside the caller's scope)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from alerts import store
from server.api.alert_models import AlertDetail
from server.api.deps import Problem, SessionDep
from server.api.scope import AlertAccess
from server.api.types import BoundedDatetime, Text

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such alert in your scope"},
    409: {"model": Problem, "description": "the alert is closed, or the snooze ends in the past"},
}
#: The longest snooze: a snooze silences notifications, so it must come back to a person.
MAX_SNOOZE = timedelta(days=7)


class SnoozeBody(BaseModel):
    until: BoundedDatetime | None = None
    minutes: Annotated[int, Field(ge=1, le=int(MAX_SNOOZE.total_seconds() // 60))] | None = None
    note: Annotated[Text, Field(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SnoozeBody:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give exactly one of 'until' or 'minutes'")
        return self

    def end(self, now: datetime) -> datetime:
        return self.until if self.until is not None else now + timedelta(
            minutes=self.minutes or 0)


class AlertNoteBody(BaseModel):
    text: Annotated[Text, Field(min_length=1, max_length=10_000)]


@router.post("/{alert_id}/snooze", responses=RESPONSES, response_model=AlertDetail,
             summary="Silence the alert's notifications until a time (at most 7 days)")
def snooze(alert_id: int, body: SnoozeBody, conn: SessionDep,
           access: AlertAccess) -> dict[str, Any]:
    now = datetime.now(UTC)
    until = min(body.end(now), now + MAX_SNOOZE)
    return store.snooze(conn, alert_id, clinician_id=access.scope.clinician_id, until=until,
                        note=body.note, now=now)


@router.post("/{alert_id}/notes", responses=RESPONSES, status_code=201,
             response_model=AlertDetail,
             summary="Add a note to the alert's history")
def add_note(alert_id: int, body: AlertNoteBody, conn: SessionDep,
             access: AlertAccess) -> dict[str, Any]:
    return store.add_note(conn, alert_id, clinician_id=access.scope.clinician_id,
                          text=body.text)
