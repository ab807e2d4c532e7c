"""Messages to a patient, from the care team's side: send one (from an alert or the
patient's page), and list them with their read, confirmed and replied state.  Scoped
and audited through ``PatientAccess`` (404 outside the caller's scope); the patient
reads and answers them in the portal (``server.api.routes.portal``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StrictBool

from server import patient_messages
from server.api.deps import Problem, SessionDep, SettingsDep
from server.api.scope import PatientAccess
from server.api.types import DbId, Text

router = APIRouter(prefix="/api/patients", tags=["workspace"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such patient in your scope"}}


class MessageBody(BaseModel):
    text: Annotated[Text, Field(min_length=1, max_length=patient_messages.BODY_MAX)]
    needs_confirmation: StrictBool = Field(
        default=False, description="ask the patient to confirm it (a button in the portal)")
    alert_id: DbId | None = Field(default=None,
                                  description="the patient's alert it is about, if any")


class Message(BaseModel):
    id: int
    patient_id: int
    direction: Literal["to_patient", "from_patient"]
    body: str
    needs_confirmation: bool
    sent_at: str
    read_at: str | None = Field(description="when the patient first had it on screen")
    confirmed_at: str | None
    clinician_id: int | None = Field(description="the author (None: the patient's reply)")
    author: str | None
    team_id: str | None
    team_name: str | None
    alert_id: int | None
    reply_to: int | None = Field(description="the message a patient's reply answers")


@router.post("/{patient_id}/messages", response_model=Message, status_code=201,
             responses=RESPONSES,
             summary="Send the patient a message in the portal (optionally to confirm)")
def send_message(body: MessageBody, conn: SessionDep, settings: SettingsDep,
                 access: PatientAccess) -> dict[str, Any]:
    assert access.patient_id is not None
    try:
        return patient_messages.send(conn, settings, access.scope, access.patient_id,
                                     text=body.text.strip() or body.text,
                                     needs_confirmation=body.needs_confirmation,
                                     alert_id=body.alert_id)
    except ValueError as err:
        raise RequestValidationError([{"loc": ("body", "alert_id"), "type": "value_error",
                                       "msg": str(err)}]) from err


@router.get("/{patient_id}/messages", response_model=list[Message], responses=RESPONSES,
            summary="The patient's messages both ways, newest first")
def list_messages(conn: SessionDep, access: PatientAccess,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    assert access.patient_id is not None
    return patient_messages.messages(conn, access.patient_id, limit=limit)
