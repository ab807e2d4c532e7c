"""Working together (issue 9, docs/collaboration.md): the care team across organisations,
hand-overs with an SBAR note, and tasks between teams.

Every route takes an access dependency from server.api.scope (404 outside the
caller's scope, one audit row per request).  Who may act (a member of the team
that holds an alert hands it over; a member of the receiving team answers; the
invited team's lead accepts an invitation) is checked by the lifecycle modules
(alerts.handovers, alerts.tasks, server.care_team), which answer 403, 409 or 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from psycopg import sql
from pydantic import BaseModel, Field

from alerts import handovers, tasks
from server import care_team, collaboration_view
from server.access import (
    NotInScope,
    handover_condition,
    require_team,
    task_condition,
    visible_teams,
)
from server.api.deps import AUTH_RESPONSES, PoolDep, Problem, SessionDep
from server.api.scope import (
    Access,
    AlertAccess,
    CallerScope,
    HandoverAccess,
    InvitationAccess,
    ListAccess,
    PatientAccess,
    TaskAccess,
    patient_access,
)
from server.api.types import BoundedDatetime, DbId, Text
from server.record_queries import _jsonable

router = APIRouter(tags=["working together"])

TeamId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    403: {"model": Problem, "description": "your team or role may not do this"},
    404: {"model": Problem, "description": "not found in your scope"},
    409: {"model": Problem, "description": "its state does not allow it (already answered, "
                                           "already on the care team, ...)"},
}


def now(request: Request) -> datetime:
    """The app's clock (tests inject one, ``app.state.clock``), else the wall clock."""
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


def _json(rows: Any) -> Any:
    """Rows as JSON-ready values (times as RFC 3339), as the record routes answer them."""
    return _jsonable(rows)


# -- the care team -------------------------------------------------------------------------

class CareTeamBody(BaseModel):
    team: TeamId
    role: Literal["lead", "contributor"] = "contributor"
    note: Annotated[Text, Field(max_length=2000)] | None = None


class ReasonBody(BaseModel):
    reason: Annotated[Text, Field(min_length=1, max_length=2000)]


@router.get("/api/patients/{patient_id}/care-team", responses=RESPONSES,
            summary="The patient's care team: teams, their organisations and roles")
def care_team_members(patient_id: DbId, conn: SessionDep,
                      access: PatientAccess) -> list[dict[str, Any]]:
    return _json(care_team.members(conn, patient_id))  # type: ignore[no-any-return]


@router.post("/api/patients/{patient_id}/care-team", status_code=201, responses=RESPONSES,
             summary="Add a team: at once within an organisation already on the care team, "
                     "else an invitation its team lead or admin answers")
def care_team_invite(patient_id: DbId, body: CareTeamBody, request: Request,
                     conn: SessionDep, access: PatientAccess) -> dict[str, Any]:
    return _json(care_team.invite(  # type: ignore[no-any-return]
        conn, access.scope, patient_id=patient_id, team_id=body.team, role=body.role,
        note=body.note, at=now(request)))


@router.delete("/api/patients/{patient_id}/care-team/{team_id}", status_code=204,
               responses=RESPONSES, response_class=Response,
               summary="Take a team off the care team: its access ends now")
def care_team_remove(patient_id: DbId, team_id: str, request: Request, conn: SessionDep,
                     access: PatientAccess) -> Response:
    care_team.remove(conn, access.scope, patient_id=patient_id, team_id=team_id,
                     at=now(request))
    return Response(status_code=204)


@router.get("/api/care-team-invitations", responses=RESPONSES,
            summary="Invitations to your teams (an admin: her organisations' teams)")
def invitations(conn: SessionDep, access: ListAccess,
                team: Annotated[str | None, Query(max_length=64)] = None,
                state: Literal["offered", "accepted", "declined", "cancelled"] | None = None,
                ) -> list[dict[str, Any]]:
    return _json(care_team.invitations(  # type: ignore[no-any-return]
        conn, access.scope, team=team, state=state))


@router.post("/api/care-team-invitations/{invitation_id}/accept", responses=RESPONSES,
             summary="Accept: the team joins the care team and sees the patient from now")
def invitation_accept(invitation_id: DbId, request: Request, conn: SessionDep,
                      access: InvitationAccess) -> dict[str, Any]:
    return _json(care_team.answer(  # type: ignore[no-any-return]
        conn, access.scope, invitation_id, accept=True, reason=None, at=now(request)))


@router.post("/api/care-team-invitations/{invitation_id}/decline", responses=RESPONSES,
             summary="Decline, with a reason")
def invitation_decline(invitation_id: DbId, body: ReasonBody, request: Request,
                       conn: SessionDep, access: InvitationAccess) -> dict[str, Any]:
    return _json(care_team.answer(  # type: ignore[no-any-return]
        conn, access.scope, invitation_id, accept=False, reason=body.reason,
        at=now(request)))


# -- hand-overs ----------------------------------------------------------------------------

class SbarNote(BaseModel):
    situation: Annotated[Text, Field(min_length=1, max_length=handovers.NOTE_MAX)]
    background: Annotated[Text, Field(min_length=1, max_length=handovers.NOTE_MAX)]
    assessment: Annotated[Text, Field(min_length=1, max_length=handovers.NOTE_MAX)]
    recommendation: Annotated[Text, Field(min_length=1, max_length=handovers.NOTE_MAX)]


class HandoverBody(BaseModel):
    to_team: TeamId
    note: SbarNote


def _acting_team(conn: Any, scope: Any, holder: str | None) -> str:
    """The team a hand-over is sent from: the one holding it, which must be the caller's."""
    if holder is None or not _acts_for(conn, scope, holder):
        raise care_team.NotAllowed(
            f"only a member of the team that holds it ({holder or 'none'}) can hand it over")
    return holder


@router.post("/api/alerts/{alert_id}/handover", status_code=201, responses=RESPONSES,
             summary="Offer the alert to another team, with an SBAR note")
def handover_alert(alert_id: DbId, body: HandoverBody, request: Request, conn: SessionDep,
                   access: AlertAccess) -> dict[str, Any]:
    with conn.transaction():
        patient_id, holder = handovers.offer_for_alert(conn, alert_id)
        offer = handovers.Offer("alert", patient_id, _acting_team(conn, access.scope, holder),
                                body.to_team, body.note.model_dump(), alert_id)
        return _json(handovers.offer(  # type: ignore[no-any-return]
            conn, offer, clinician_id=access.scope.clinician_id, at=now(request)))


@router.post("/api/patients/{patient_id}/handover", status_code=201, responses=RESPONSES,
             summary="Offer the lead responsibility for the patient to another team")
def handover_lead(patient_id: DbId, body: HandoverBody, request: Request, conn: SessionDep,
                  access: PatientAccess) -> dict[str, Any]:
    with conn.transaction():
        lead = handovers.lead_team(conn, patient_id)
        if lead is None:  # no lead yet: the caller's team on the care team offers it
            care = care_team.members(conn, patient_id)
            lead = next((m["team_id"] for m in care if m["team_id"] in
                         access.scope.team_ids), None)
        offer = handovers.Offer("lead", patient_id, _acting_team(conn, access.scope, lead),
                                body.to_team, body.note.model_dump())
        return _json(handovers.offer(  # type: ignore[no-any-return]
            conn, offer, clinician_id=access.scope.clinician_id, at=now(request)))


def handover_rows(conn: Any, where: list[sql.Composable]) -> list[dict[str, Any]]:
    return _json(collaboration_view.handover_rows(  # type: ignore[no-any-return]
        conn, where, newest_first=True))


@router.get("/api/handovers", responses=RESPONSES,
            summary="Hand-overs from or to your teams (both teams' queues), newest first")
def handover_list(conn: SessionDep, access: ListAccess,
                  team: Annotated[str | None, Query(max_length=64)] = None,
                  state: Literal["offered", "accepted", "declined", "expired"] | None = None,
                  ) -> list[dict[str, Any]]:
    where: list[sql.Composable] = [
        sql.SQL("(h.from_team IN ({t}) OR h.to_team IN ({t}))").format(
            t=visible_teams(access.scope))]
    if team is not None:
        where.append(sql.SQL("(h.from_team = {x} OR h.to_team = {x})").format(
            x=sql.Literal(team)))
    if state is not None:
        where.append(sql.SQL("h.state = {}").format(sql.Literal(state)))
    return handover_rows(conn, where)


@router.get("/api/handovers/{handover_id}", responses=RESPONSES, summary="One hand-over")
def handover_get(handover_id: DbId, conn: SessionDep,
                 access: HandoverAccess) -> dict[str, Any]:
    rows = handover_rows(conn, [sql.SQL("h.id = {}").format(sql.Literal(handover_id)),
                                handover_condition(access.scope)])
    return rows[0]


def _acts_for(conn: Any, scope: Any, team_id: str | None) -> bool:
    """Whether the caller acts for ``team_id``: a member, or an admin of its organisation."""
    if team_id is None:
        return False
    try:
        require_team(conn, scope, team_id)
    except NotInScope:
        return False
    return True


def _receiving(access: Access, conn: Any, handover_id: int) -> None:
    found = handovers.get(conn, handover_id)
    if found is None or not _acts_for(conn, access.scope, found["to_team"]):
        raise care_team.NotAllowed("only a member of the receiving team (or an admin of its "
                                   "organisation) can answer a hand-over")


@router.post("/api/handovers/{handover_id}/accept", responses=RESPONSES,
             summary="Accept: the receiving team's routing and escalation apply from now")
def handover_accept(handover_id: DbId, request: Request, conn: SessionDep,
                    access: HandoverAccess) -> dict[str, Any]:
    _receiving(access, conn, handover_id)
    return _json(handovers.accept(conn, handover_id,  # type: ignore[no-any-return]
                                  clinician_id=access.scope.clinician_id, at=now(request)))


@router.post("/api/handovers/{handover_id}/decline", responses=RESPONSES,
             summary="Decline, with a reason: it stays with the sending team")
def handover_decline(handover_id: DbId, body: ReasonBody, request: Request,
                     conn: SessionDep, access: HandoverAccess) -> dict[str, Any]:
    _receiving(access, conn, handover_id)
    return _json(handovers.decline(  # type: ignore[no-any-return]
        conn, handover_id, clinician_id=access.scope.clinician_id, reason=body.reason,
        at=now(request)))


# -- tasks ---------------------------------------------------------------------------------

class TaskBody(BaseModel):
    patient_id: DbId
    team: TeamId
    title: Annotated[Text, Field(min_length=1, max_length=200)]
    due: BoundedDatetime
    detail: Annotated[Text, Field(max_length=4000)] | None = None
    priority: Literal["routine", "urgent", "asap", "stat"] = "routine"
    alert_id: DbId | None = None


class TaskNoteBody(BaseModel):
    note: Annotated[Text, Field(min_length=1, max_length=4000)]


def new_task_access(body: TaskBody, request: Request, pool: PoolDep,
                    scope: CallerScope) -> Iterator[Access]:
    """A new task is about the body's patient: the same scope and audit as a patient route."""
    yield from patient_access(body.patient_id, request, pool, scope)


def task_rows(conn: Any, where: list[sql.Composable], at: datetime) -> list[dict[str, Any]]:
    return _json(collaboration_view.task_rows(conn, where, at=at))  # type: ignore[no-any-return]


@router.post("/api/tasks", status_code=201, responses=RESPONSES,
             summary="Ask a team on the patient's care team for an action")
def task_create(body: TaskBody, request: Request, conn: SessionDep,
                access: Annotated[Access, Depends(new_task_access)]) -> dict[str, Any]:
    care = care_team.members(conn, body.patient_id)
    if body.team not in {m["team_id"] for m in care}:
        raise tasks.TaskRefused(f"team {body.team} is not on the patient's care team: "
                                "invite it first (POST /api/patients/{id}/care-team)")
    mine = next((m["team_id"] for m in care if m["team_id"] in access.scope.team_ids),
                access.scope.team_ids[0] if access.scope.team_ids else None)
    new = tasks.NewTask(body.patient_id, body.team, body.title, body.due, body.detail,
                        body.priority, body.alert_id)
    made = tasks.create(conn, new, clinician_id=access.scope.clinician_id,
                        requested_team=mine, at=now(request))
    return task_rows(conn, [sql.SQL("t.id = {}").format(sql.Literal(made["id"]))],
                     now(request))[0]


@router.get("/api/tasks", responses=RESPONSES,
            summary="The task queue: tasks of your teams, and those they asked for")
def task_list(request: Request, conn: SessionDep, access: ListAccess,
              team: Annotated[str | None, Query(max_length=64)] = None,
              state: Literal["requested", "claimed", "completed", "declined",
                             "cancelled", "open"] | None = None) -> list[dict[str, Any]]:
    where: list[sql.Composable] = [
        sql.SQL("(t.team_id IN ({v}) OR t.requested_team IN ({v}))").format(
            v=visible_teams(access.scope)), task_condition(access.scope)]
    if team is not None:
        where.append(sql.SQL("t.team_id = {}").format(sql.Literal(team)))
    if state == "open":
        where.append(sql.SQL("t.state IN ('requested', 'claimed')"))
    elif state is not None:
        where.append(sql.SQL("t.state = {}").format(sql.Literal(state)))
    return task_rows(conn, where, now(request))


@router.get("/api/tasks/{task_id}", responses=RESPONSES, summary="One task")
def task_get(task_id: DbId, request: Request, conn: SessionDep,
             access: TaskAccess) -> dict[str, Any]:
    return task_rows(conn, [sql.SQL("t.id = {}").format(sql.Literal(task_id)),
                            task_condition(access.scope)], now(request))[0]


def _task_action(task_id: int, action: tasks.Action, request: Request, conn: Any,
                 access: Access, note: str | None) -> dict[str, Any]:
    found = tasks.get(conn, task_id)
    assert found is not None  # TaskAccess found it
    scope = access.scope
    if action == "cancel":
        allowed = found["requested_by"] == scope.clinician_id or _acts_for(
            conn, scope, found["requested_team"])
    else:
        allowed = _acts_for(conn, scope, found["team_id"])
    if not allowed:
        raise care_team.NotAllowed(
            "only the requester's team can cancel a task" if action == "cancel"
            else f"only a member of {found['team_id']} can {action} its task")
    tasks.change(conn, task_id, action, clinician_id=scope.clinician_id, at=now(request),
                 note=note)
    return task_rows(conn, [sql.SQL("t.id = {}").format(sql.Literal(task_id))],
                     now(request))[0]


@router.post("/api/tasks/{task_id}/claim", responses=RESPONSES, summary="Claim the task")
def task_claim(task_id: DbId, request: Request, conn: SessionDep,
               access: TaskAccess) -> dict[str, Any]:
    return _task_action(task_id, "claim", request, conn, access, None)


@router.post("/api/tasks/{task_id}/complete", responses=RESPONSES,
             summary="Complete the task, with a note")
def task_complete(task_id: DbId, body: TaskNoteBody, request: Request, conn: SessionDep,
                  access: TaskAccess) -> dict[str, Any]:
    return _task_action(task_id, "complete", request, conn, access, body.note)


@router.post("/api/tasks/{task_id}/decline", responses=RESPONSES,
             summary="Decline the task, with a reason")
def task_decline(task_id: DbId, body: ReasonBody, request: Request, conn: SessionDep,
                 access: TaskAccess) -> dict[str, Any]:
    return _task_action(task_id, "decline", request, conn, access, body.reason)


@router.post("/api/tasks/{task_id}/cancel", responses=RESPONSES,
             summary="Cancel the task (the requester's team)")
def task_cancel(task_id: DbId, request: Request, conn: SessionDep,
                access: TaskAccess) -> dict[str, Any]:
    return _task_action(task_id, "cancel", request, conn, access, None)
