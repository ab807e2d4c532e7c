"""Request and response bodies of the admin API (server/api/routes/admin.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from homeward.kinds import Kind
from server.api.types import BoundedDatetime, Text

Role = Literal["nurse", "team_lead", "admin"]
Status = Literal["active", "admitted", "away", "discharged"]
TeamId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
Name = Annotated[str, StringConstraints(pattern=r"^[^\x00]*[^\s\x00][^\x00]*$", max_length=200)]
Short = Annotated[Text, Field(max_length=300)]
Clock = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
HubId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------

class TeamIn(Strict):
    id: TeamId
    name: Name
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,39}$")]
    email: Short | None = None
    webhook_url: Short | None = None
    escalation_policy: Annotated[str, StringConstraints(max_length=64,
                                                        pattern=r"^[^\x00]+$")] | None = None
    fallback_team: TeamId | None = None


class TeamPatch(Strict):
    """Only the fields sent change; null clears email, webhook, policy or fallback."""

    name: Name | SkipJsonSchema[None] = None
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,39}$")
                    ] | SkipJsonSchema[None] = None
    email: Short | None = None
    webhook_url: Short | None = None
    escalation_policy: Annotated[str, StringConstraints(max_length=64,
                                                        pattern=r"^[^\x00]+$")] | None = None
    fallback_team: TeamId | None = None


class ShiftIn(Strict):
    starts: Clock
    ends: Clock
    timezone: Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z_/+-]+$")] = (
        "Europe/London")


class ClinicianIn(Strict):
    username: Username
    display_name: Name
    email: Short | None = None
    role: Role = "nurse"
    teams: Annotated[list[TeamId], Field(max_length=50)] = []
    #: Set this password; without it an invitation link is made.
    password: Annotated[Text, Field(min_length=12, max_length=200)] | None = None
    invite_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 72


class ClinicianPatch(Strict):
    display_name: Name | None = None
    email: Short | None = None
    role: Role | None = None
    teams: Annotated[list[TeamId], Field(max_length=50)] | None = None


class InviteIn(Strict):
    hours: Annotated[int, Field(ge=1, le=24 * 30)] = 72


class PatientIn(Strict):
    display_name: Name
    nhs_number: Annotated[str, StringConstraints(max_length=20, pattern=r"^[0-9 -]+$")
                          ] | None = None
    date_of_birth: date | None = None
    status: Status = "active"
    teams: Annotated[list[TeamId], Field(min_length=1, max_length=20)]
    lead: TeamId | None = None


class CareTeamsIn(Strict):
    teams: Annotated[list[TeamId], Field(min_length=1, max_length=20)]
    lead: TeamId | None = None


class EnrolmentIn(Strict):
    hub_id: HubId
    valid_from: BoundedDatetime | None = None


class HubIn(Strict):
    id: HubId


class DeviceIn(Strict):
    address: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9:._-]{1,64}$")]
    kind: Kind
    name: Short | None = None


class RotaShift(Strict):
    clinician: Username
    level: Annotated[int, Field(ge=0, le=20)] = 0
    starts_at: BoundedDatetime
    ends_at: BoundedDatetime


class RotaIn(Strict):
    """The team's shifts that start in the span of ``shifts`` are replaced by them."""

    shifts: Annotated[list[RotaShift], Field(max_length=5000)]


# -- responses --------------------------------------------------------------------------

class Organisation(BaseModel):
    id: int
    name: str
    created_at: str
    teams: int


class Shift(BaseModel):
    name: str
    starts: str
    ends: str
    timezone: str


class Team(BaseModel):
    id: str
    organisation_id: int
    name: str
    kind: str
    email: str | None
    webhook_url: str | None
    escalation_policy: str | None
    fallback_team: str | None
    shifts: list[Shift]
    members: int


class Clinician(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    role: str
    active: bool
    organisation_id: int | None
    has_password: bool
    teams: list[str]


class ClinicianCreated(BaseModel):
    clinician: Clinician
    #: Shown once: only its hash is kept.
    api_token: str
    invite_url: str | None


class Token(BaseModel):
    api_token: str


class Invite(BaseModel):
    invite_url: str
    expires_in_hours: int


class AdminPatient(BaseModel):
    id: int
    display_name: str
    nhs_number: str | None
    date_of_birth: str | None
    status: str
    care_teams: list[str]
    lead_team: str | None
    hub_id: str | None


class Enrolment(BaseModel):
    id: int
    hub_id: str
    patient_id: int
    valid_from: str


class Device(BaseModel):
    address: str
    kind: str
    name: str | None


class Hub(BaseModel):
    id: str
    organisation_id: int | None
    state: str
    created_at: str
    revoked_at: str | None
    last_seen_at: str | None
    patient_id: int | None
    devices: list[Device]


class HubConfig(BaseModel):
    """What the hub was sent on its retained config topic."""

    hub_id: str
    devices: list[Device]


class RotaImported(BaseModel):
    shifts: int
    replaced: int


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


class Bundle(BaseModel):
    """A hub's provisioning bundle (``homeward edge --bundle``): it holds the hub's
    password, shown this once."""

    v: int
    hub_id: str
    broker_url: str
    password: str
    ca_pem: str | None
