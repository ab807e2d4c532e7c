"""The care-team workspace's JSON API: who am I, my caseload, one patient's record
(detail, chart series, timeline), and what a nurse does to it (notes, status,
personal rule settings).  Every route takes its scope from ``server.api.scope``
(404 outside it) and is audited there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.errors import RuleError
from alerts.ruleset import load_ruleset
from alerts.settings_store import set_patient_rule
from homeward.kinds import Kind
from server import audit, record_queries
from server.access import Scope, patient_condition
from server.api.deps import Problem, SessionDep
from server.api.scope import AdminScope, CallerScope, ListAccess, PatientAccess
from server.api.types import BoundedDatetime, DbId, Text

router = APIRouter(tags=["workspace"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such patient in your scope"}}
Severity = Literal["red", "amber", "info"]
Status = Literal["active", "admitted", "away", "discharged"]


# -- models -----------------------------------------------------------------------------

class TeamRef(BaseModel):
    id: str
    name: str


class Me(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    organisation_ids: list[int]
    teams: list[TeamRef]


class CareTeam(BaseModel):
    id: str
    name: str
    lead: bool


class LatestReading(BaseModel):
    values: dict[str, float]
    taken_at: str


class News2(BaseModel):
    total: int
    partial: bool
    response: str


class HubHealth(BaseModel):
    id: str
    state: str
    last_seen_at: str | None
    outbox_depth: int | None


class Adherence(BaseModel):
    expected: int = Field(description="readings the patient's schedules asked for (7 days)")
    received: int = Field(description="of those, readings received (at most one per slot)")


class CaseloadRow(BaseModel):
    id: int
    name: str
    nhs_number: str | None
    status: str
    teams: list[CareTeam]
    latest: dict[str, LatestReading] = Field(description="per kind, the latest reading")
    news2: News2 | None = Field(description="from the latest readings of the last 24 h")
    open_alerts: int
    highest_severity: str | None
    oldest_unacknowledged_at: str | None
    last_reading_at: str | None
    hub: HubHealth | None
    lowest_battery: int | None
    adherence: Adherence | None


class PatientDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    nhs_number: str | None
    date_of_birth: str | None
    status: str
    teams: list[dict[str, Any]]
    status_history: list[dict[str, Any]]
    hubs: list[dict[str, Any]]
    rule_settings: list[dict[str, Any]]


class Series(BaseModel):
    patient_id: int
    kind: str
    metric: str
    from_: str = Field(alias="from")
    to: str
    resolution: Literal["raw", "minute", "hour", "day"]
    points: list[dict[str, Any]] = Field(
        description="raw: {t, v}; minute/hour/day: {t, min, mean, max, n}")


class TimelineEntry(BaseModel):
    at: str
    type: str = Field(description="alert.<event>, note, status, rule_setting, device.*, "
                                  "handover.<step>, task.<step>, care_team.<event>, "
                                  "message.<direction>")
    clinician_id: int | None
    author: str | None
    team_id: str | None
    team_name: str | None = Field(None, description="the team that did it")
    organisation: str | None = Field(None, description="that team's organisation")
    detail: dict[str, Any]


class NoteBody(BaseModel):
    text: Annotated[Text, Field(min_length=1, max_length=10_000)]
    team: Annotated[Text, Field(max_length=64)] | None = None


class Note(BaseModel):
    id: int
    at: str
    team_id: str | None
    text: str
    author: str


class StatusBody(BaseModel):
    status: Status
    note: Annotated[Text, Field(max_length=2000)] | None = None
    expected_end: BoundedDatetime | None = Field(
        default=None, description="required for 'away': when the patient is expected back")
    team: Annotated[Text, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _away_needs_an_end(self) -> StatusBody:
        if self.status == "away" and self.expected_end is None:
            raise ValueError("'away' needs expected_end")
        return self


class StatusChange(BaseModel):
    patient_id: int
    status: str
    previous: str
    at: str
    expected_end: str | None
    resolved_alerts: list[int]


class RuleSettingBody(BaseModel):
    enabled: bool = True
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="parameters merged over the rule's own")
    valid_from: BoundedDatetime | None = Field(default=None, description="default: now")
    reason: Annotated[Text, Field(min_length=1, max_length=2000)]


class RuleSetting(BaseModel):
    id: int
    patient_id: int
    rule_id: str
    enabled: bool
    overrides: dict[str, Any]
    valid_from: str


class AuditRow(BaseModel):
    id: int
    at: str
    clinician_id: int | None
    username: str | None
    display_name: str | None
    role: str
    action: str
    patient_id: int | None
    resource: str
    request_id: str | None
    client_addr: str | None
    outcome: str


# -- routes -----------------------------------------------------------------------------

@router.get("/api/me", response_model=Me, summary="The caller: role, organisation, teams")
def me(scope: CallerScope) -> Me:
    return Me(id=scope.clinician_id, username=scope.username,
              display_name=scope.display_name, role=scope.role,
              organisation_ids=list(scope.organisation_ids),
              teams=[TeamRef(id=t, name=n) for t, n in scope.teams])


@router.get("/api/patients", response_model=list[CaseloadRow],
            summary="My caseload, in attention order")
def caseload(
    conn: SessionDep, access: ListAccess,
    team: Annotated[Text | None, Query(max_length=64)] = None,
    status: Status | None = None, severity: Severity | None = None,
    q: Annotated[Text | None, Query(max_length=100, description="name or NHS number")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    # Encoded here rather than through the response model: validating and re-encoding
    # 2,000 rows of nested dicts took longer than building them (homeward bench api).
    # The model still documents the route, and tests hold the rows to it.
    rows = record_queries.caseload(conn, access.scope, team=team, status=status,
                                   severity=severity, q=q, limit=limit)
    return Response(orjson.dumps(rows), media_type="application/json")


@router.get("/api/patients/{patient_id}", response_model=PatientDetail, responses=NOT_FOUND,
            summary="One patient: care teams, status history, hub and devices, settings")
def patient(conn: SessionDep, access: PatientAccess) -> dict[str, Any]:
    assert access.patient_id is not None
    return record_queries.patient_detail(conn, access.patient_id)


@router.get("/api/patients/{patient_id}/series", response_model=Series, responses=NOT_FOUND,
            response_model_by_alias=True,
            summary="Chart points: raw for short ranges, hourly/daily min/mean/max for long")
def series(
    conn: SessionDep, access: PatientAccess, kind: Kind,
    metric: Annotated[Text, Query(max_length=64, pattern=r"^[a-z0-9_]+$")],
    start: Annotated[BoundedDatetime | None, Query(alias="from")] = None,
    end: Annotated[BoundedDatetime | None, Query(alias="to")] = None,
    resolution: Literal["raw", "hour", "day"] | None = None,
) -> dict[str, Any]:
    assert access.patient_id is not None
    end_at = end or datetime.now(UTC)
    start_at = start or end_at - timedelta(days=7)
    if start_at >= end_at:
        raise RequestValidationError([{"loc": ("query", "from"), "type": "value_error",
                                       "msg": "'from' must be before 'to'"}])
    return record_queries.series(conn, access.patient_id, kind=kind.value, metric=metric,
                                 start=start_at, end=end_at, resolution=resolution)


@router.get("/api/patients/{patient_id}/timeline", response_model=list[TimelineEntry],
            responses=NOT_FOUND, summary="The shared timeline: alerts, notes, status, settings, "
                                         "devices, hand-overs, tasks, care team, messages; "
                                         "newest first")
def timeline(conn: SessionDep, access: PatientAccess,
             limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    assert access.patient_id is not None
    return record_queries.timeline(conn, access.patient_id, limit=limit)


@router.post("/api/patients/{patient_id}/notes", response_model=Note, status_code=201,
             responses=NOT_FOUND, summary="Add a note to the patient's record")
def add_note(body: NoteBody, conn: SessionDep, access: PatientAccess) -> dict[str, Any]:
    assert access.patient_id is not None
    return record_queries.add_note(conn, access.scope, access.patient_id, body.text, body.team)


@router.post("/api/patients/{patient_id}/status", response_model=StatusChange,
             responses=NOT_FOUND, summary="active, admitted, away (with an end) or discharged")
def set_status(body: StatusBody, conn: SessionDep, access: PatientAccess) -> dict[str, Any]:
    assert access.patient_id is not None
    return record_queries.set_status(conn, access.scope, access.patient_id,
                                     status=body.status, note=body.note,
                                     expected_end=body.expected_end, team_id=body.team)


@router.put("/api/patients/{patient_id}/rules/{rule_id}", response_model=RuleSetting,
            responses=NOT_FOUND,
            summary="A personal rule setting from valid_from, kept with its history")
def set_rule(rule_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
             body: RuleSettingBody, conn: SessionDep, access: PatientAccess) -> RuleSetting:
    assert access.patient_id is not None
    start = body.valid_from or datetime.now(UTC)
    try:
        setting_id = set_patient_rule(conn, patient_id=access.patient_id, rule_id=rule_id,
                                      enabled=body.enabled, params=body.overrides,
                                      set_by=access.scope.clinician_id, valid_from=start,
                                      note=body.reason, ruleset=load_ruleset())
    except (RuleError, ValueError) as err:
        where = ("path", "rule_id") if "unknown rule" in str(err) else ("body", "overrides")
        raise RequestValidationError([{"loc": where, "type": "value_error",
                                       "msg": str(err)}]) from err
    return RuleSetting(id=setting_id, patient_id=access.patient_id, rule_id=rule_id,
                       enabled=body.enabled, overrides=body.overrides,
                       valid_from=start.isoformat())


@router.get("/api/patients/{patient_id}/audit", response_model=list[AuditRow],
            responses=NOT_FOUND, summary="Who opened or changed this patient's record")
def patient_audit(conn: SessionDep, access: PatientAccess,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    assert access.patient_id is not None
    rows = audit.search(conn, patient_id=access.patient_id, limit=limit)
    return [{**r, "at": r["at"].isoformat()} for r in rows]


@router.get("/api/audit", response_model=list[AuditRow],
            responses={403: {"model": Problem, "description": "admins only"}},
            summary="Who read or changed patient data (admins)")
def audit_log(
    conn: SessionDep, scope: AdminScope,
    patient: DbId | None = None, clinician: DbId | None = None,
    start: Annotated[BoundedDatetime | None, Query(alias="from")] = None,
    end: Annotated[BoundedDatetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    rows = audit.search(conn, patient_id=patient, clinician_id=clinician, start=start,
                        end=end, limit=limit,
                        visible=_admin_visible(scope))
    return [{**r, "at": r["at"].isoformat()} for r in rows]


def _admin_visible(scope: Scope) -> sql.Composable:
    """An admin reads the audit of her organisation's patients, and of requests that
    named no patient (listings, refusals)."""
    return sql.SQL("(a.patient_id IS NULL OR {})").format(
        patient_condition(scope, "a.patient_id"))
