"""The admin API: teams, clinicians, patients, enrolments, hubs, devices and rotas of
the caller's organisations.

Admins only (``AdminAccess``: 403 for other roles), every request audited with
its outcome; an id outside the caller's organisations answers 404 as if it did
not exist.  Organisations themselves are made by the installation's operator
(``homeward admin org create``).  Over ``server.admin``; docs/admin.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from server import admin, admin_queries, invites
from server.access import Scope
from server.admin_rota import export_rota, import_rota
from server.api import admin_models as m
from server.api.deps import AUTH_RESPONSES, Problem, SessionDep, SettingsDep
from server.api.scope import AdminAccess, AdminPatientAccess
from server.api.types import BoundedDatetime, DbId
from server.hub_provisioning import BrokerRefused
from server.rota_io import RotaEntry

router = APIRouter(prefix="/api/admin", tags=["admin"])

T = TypeVar("T")
Conn = Any

REFUSALS: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    403: {"model": Problem, "description": "the caller is not an admin"},
    404: {"model": Problem, "description": "no such resource in the caller's organisations"},
    409: {"model": Problem, "description": "a duplicate, or a state that forbids it"},
}
PUBLISH = {**REFUSALS, 502: {"model": Problem, "description": "saved, but the broker did not "
                                                             "take the hub's config"}}
TeamPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
HubPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ShiftPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
AddressPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9:._-]{1,64}$")]


@contextmanager
def _answers() -> Iterator[None]:
    """server.admin's refusals as HTTP answers."""
    try:
        yield
    except admin.NotFound as err:
        raise HTTPException(404, detail=str(err)) from err
    except (admin.Conflict, invites.InviteRefused) as err:
        raise HTTPException(409, detail=str(err)) from err
    except admin.AdminError as err:
        if isinstance(err, BrokerRefused):
            raise HTTPException(502, detail=str(err)) from err
        raise _invalid(str(err)) from err


def _invalid(message: str, where: tuple[str, ...] = ("body",)) -> RequestValidationError:
    """A 422 in FastAPI's shape (``{"detail": [{"loc", "msg", "type"}]}``)."""
    return RequestValidationError([{"loc": where, "msg": message, "type": "value_error"}])


def _call(fn: Callable[[], T]) -> T:
    with _answers():
        return fn()


def _orgs(scope: Scope) -> list[int]:
    return list(scope.organisation_ids)


def _one(rows: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if not rows:
        raise HTTPException(404, detail=f"{what} not found")
    return rows[0]


def _team(conn: Conn, scope: Scope, team_id: str) -> dict[str, Any]:
    return _one(admin_queries.teams(conn, _orgs(scope), team_id), f"team {team_id!r}")


def _teams_in_scope(conn: Conn, scope: Scope, teams: list[str]) -> None:
    for team_id in teams:
        if not admin_queries.teams(conn, _orgs(scope), team_id):
            raise HTTPException(404, detail=f"unknown team {team_id!r}")


def _clinician(conn: Conn, scope: Scope, clinician_id: int) -> dict[str, Any]:
    return _one(admin_queries.clinicians(conn, _orgs(scope), clinician_id),
                f"clinician {clinician_id}")


def _hub(conn: Conn, scope: Scope, hub_id: str) -> dict[str, Any]:
    return _one(admin_queries.hubs(conn, _orgs(scope), hub_id), f"hub {hub_id!r}")


def _not_self(scope: Scope, clinician_id: int, what: str) -> None:
    if clinician_id == scope.clinician_id:
        raise HTTPException(409, detail=f"you cannot {what} yourself; another admin can, "
                                        "or the operator with `homeward admin clinician`")


# -- teams ------------------------------------------------------------------------------

@router.get("/teams", response_model=list[m.Team], responses=REFUSALS,
            summary="The teams of the caller's organisations")
def list_teams(conn: SessionDep, access: AdminAccess) -> list[dict[str, Any]]:
    return admin_queries.teams(conn, _orgs(access.scope))


@router.post("/teams", response_model=m.Team, status_code=201, responses=REFUSALS,
             summary="Create a team in the caller's organisation")
def create_team(body: m.TeamIn, conn: SessionDep, access: AdminAccess) -> dict[str, Any]:
    scope = access.scope
    if not scope.organisation_ids:
        raise HTTPException(409, detail="you belong to no organisation")
    if body.fallback_team:
        _teams_in_scope(conn, scope, [body.fallback_team])
    _call(lambda: admin.create_team(
        conn, team_id=body.id, organisation_id=scope.organisation_ids[0], name=body.name,
        kind=body.kind, email=body.email, webhook_url=body.webhook_url,
        escalation_policy=body.escalation_policy, fallback_team=body.fallback_team))
    return _team(conn, scope, body.id)


@router.patch("/teams/{team_id}", response_model=m.Team, responses=REFUSALS,
              summary="Change a team's name, kind, contact, escalation policy or fallback")
def update_team(team_id: TeamPath, body: m.TeamPatch, conn: SessionDep,
                access: AdminAccess) -> dict[str, Any]:
    _team(conn, access.scope, team_id)
    changes = m.dump(body)
    if changes.get("fallback_team"):
        _teams_in_scope(conn, access.scope, [changes["fallback_team"]])
    _call(lambda: admin.update_team(conn, team_id=team_id, changes=changes))
    return _team(conn, access.scope, team_id)


@router.put("/teams/{team_id}/shifts/{shift}", response_model=m.Team, responses=REFUSALS,
            summary="Define a named shift of the team (an end before the start: next day)")
def set_shift(team_id: TeamPath, shift: ShiftPath, body: m.ShiftIn, conn: SessionDep,
              access: AdminAccess) -> dict[str, Any]:
    _team(conn, access.scope, team_id)
    _call(lambda: admin.set_team_shift(conn, team_id=team_id, name=shift, starts=body.starts,
                                       ends=body.ends, timezone=body.timezone))
    return _team(conn, access.scope, team_id)


@router.delete("/teams/{team_id}/shifts/{shift}", status_code=204, responses=REFUSALS,
               summary="Remove a named shift")
def remove_shift(team_id: TeamPath, shift: ShiftPath, conn: SessionDep,
                 access: AdminAccess) -> Response:
    _team(conn, access.scope, team_id)
    if not admin.remove_team_shift(conn, team_id=team_id, name=shift):
        raise HTTPException(404, detail=f"team {team_id!r} has no shift {shift!r}")
    return Response(status_code=204)


@router.get("/teams/{team_id}/rota", response_model=list[m.RotaShift], responses=REFUSALS,
            summary="The team's shifts starting in [from, to)")
def get_rota(team_id: TeamPath, conn: SessionDep, access: AdminAccess,
             start: Annotated[BoundedDatetime | None, Query(alias="from")] = None,
             end: Annotated[BoundedDatetime | None, Query(alias="to")] = None,
             ) -> list[dict[str, Any]]:
    _team(conn, access.scope, team_id)
    lo = start or datetime.now(UTC)
    hi = end or lo + timedelta(days=28)
    entries = export_rota(conn, start=lo, end=hi, teams=[team_id])
    return [{"clinician": e.clinician, "level": e.level, "starts_at": e.starts_at,
             "ends_at": e.ends_at} for e in entries]


@router.put("/teams/{team_id}/rota", response_model=m.RotaImported, responses=REFUSALS,
            summary="Replace the team's shifts in the span of those sent")
def put_rota(team_id: TeamPath, body: m.RotaIn, conn: SessionDep,
             access: AdminAccess) -> m.RotaImported:
    _team(conn, access.scope, team_id)
    people = {c["username"] for c in admin_queries.clinicians(conn, _orgs(access.scope))}
    entries = []
    for n, s in enumerate(body.shifts):
        if s.clinician not in people:
            raise HTTPException(404, detail=f"shifts[{n}]: unknown clinician {s.clinician!r}")
        if s.ends_at <= s.starts_at:
            raise _invalid("ends_at must be after starts_at", ("body", "shifts", str(n)))
        entries.append(RotaEntry(team_id, s.clinician, s.level, s.starts_at, s.ends_at,
                                 where=f"shifts[{n}]"))
    done = _call(lambda: import_rota(conn, entries))
    return m.RotaImported(shifts=done.shifts, replaced=done.replaced)


# -- clinicians -------------------------------------------------------------------------

@router.get("/clinicians", response_model=list[m.Clinician], responses=REFUSALS,
            summary="The clinicians of the caller's organisations")
def list_clinicians(conn: SessionDep, access: AdminAccess) -> list[dict[str, Any]]:
    return admin_queries.clinicians(conn, _orgs(access.scope))


@router.post("/clinicians", response_model=m.ClinicianCreated, status_code=201,
             responses=REFUSALS,
             summary="Create a clinician: her token, and an invitation link unless a password")
def create_clinician(body: m.ClinicianIn, conn: SessionDep, access: AdminAccess,
                     settings: SettingsDep) -> dict[str, Any]:
    scope = access.scope
    if not scope.organisation_ids:
        raise HTTPException(409, detail="you belong to no organisation")
    _teams_in_scope(conn, scope, body.teams)
    made = _call(lambda: admin.create_clinician(
        conn, username=body.username, display_name=body.display_name, email=body.email,
        role=body.role, teams=body.teams, password=body.password,
        organisation_id=scope.organisation_ids[0]))
    link = None
    if body.password is None:
        token = invites.create_invite(conn, clinician_id=made.id, created_by=scope.clinician_id,
                                      ttl=timedelta(hours=body.invite_hours))
        link = invites.invite_url(settings.dashboard_url, token)
    return {"clinician": _clinician(conn, scope, made.id), "api_token": made.api_token,
            "invite_url": link}


@router.patch("/clinicians/{clinician_id}", response_model=m.Clinician, responses=REFUSALS,
              summary="Change a clinician's name, e-mail, role or teams")
def update_clinician(clinician_id: DbId, body: m.ClinicianPatch, conn: SessionDep,
                     access: AdminAccess) -> dict[str, Any]:
    scope = access.scope
    _clinician(conn, scope, clinician_id)
    changes = m.dump(body)
    if "role" in changes:
        _not_self(scope, clinician_id, "change the role of")
    if changes.get("teams") is not None:
        _teams_in_scope(conn, scope, changes["teams"])

    def apply() -> None:
        with conn.transaction():
            if changes.get("role") is not None:
                admin.set_role(conn, clinician_id=clinician_id, role=changes["role"])
            if changes.get("teams") is not None:
                admin.set_clinician_teams(conn, clinician_id=clinician_id,
                                          teams=changes["teams"])
            if changes.get("display_name") is not None:
                conn.execute("UPDATE clinician SET display_name = %s WHERE id = %s",
                             (changes["display_name"], clinician_id))
            if "email" in changes:
                conn.execute("UPDATE clinician SET email = %s WHERE id = %s",
                             (changes["email"], clinician_id))

    _call(apply)
    return _clinician(conn, scope, clinician_id)


@router.post("/clinicians/{clinician_id}/invite", response_model=m.Invite, status_code=201,
             responses=REFUSALS, summary="A new one-time invitation link (sets a password)")
def invite_clinician(clinician_id: DbId, body: m.InviteIn, conn: SessionDep,
                     access: AdminAccess, settings: SettingsDep) -> m.Invite:
    _clinician(conn, access.scope, clinician_id)
    token = _call(lambda: invites.create_invite(conn, clinician_id=clinician_id,
                                                created_by=access.scope.clinician_id,
                                                ttl=timedelta(hours=body.hours)))
    return m.Invite(invite_url=invites.invite_url(settings.dashboard_url, token),
                    expires_in_hours=body.hours)


@router.post("/clinicians/{clinician_id}/token", response_model=m.Token, responses=REFUSALS,
             summary="A new API token for the clinician; the old one stops working")
def rotate_token(clinician_id: DbId, conn: SessionDep, access: AdminAccess) -> m.Token:
    _clinician(conn, access.scope, clinician_id)
    _not_self(access.scope, clinician_id, "rotate the token of")
    return m.Token(api_token=_call(lambda: admin.rotate_api_token(
        conn, clinician_id=clinician_id)))


@router.post("/clinicians/{clinician_id}/deactivate", response_model=m.Clinician,
             responses=REFUSALS, summary="She can no longer sign in or use her token")
def deactivate(clinician_id: DbId, conn: SessionDep, access: AdminAccess) -> dict[str, Any]:
    _clinician(conn, access.scope, clinician_id)
    _not_self(access.scope, clinician_id, "deactivate")
    _call(lambda: admin.deactivate_clinician(conn, clinician_id=clinician_id))
    return _clinician(conn, access.scope, clinician_id)


# -- patients and enrolments --------------------------------------------------------------

@router.get("/patients", response_model=list[m.AdminPatient], responses=REFUSALS,
            summary="The patients of the caller's organisations, with care teams and hub")
def list_patients(conn: SessionDep, access: AdminAccess) -> list[dict[str, Any]]:
    return admin_queries.patients(conn, _orgs(access.scope))


@router.post("/patients", response_model=m.AdminPatient, status_code=201,
             responses=REFUSALS,
             summary="Create a patient on care teams of the caller's organisation")
def create_patient(body: m.PatientIn, conn: SessionDep, access: AdminAccess
                   ) -> dict[str, Any]:
    _teams_in_scope(conn, access.scope, [*body.teams, *([body.lead] if body.lead else [])])
    patient_id = _call(lambda: admin.create_patient(
        conn, display_name=body.display_name, teams=body.teams, nhs_number=body.nhs_number,
        date_of_birth=body.date_of_birth, status=body.status, lead=body.lead))
    return _one(admin_queries.patients(conn, _orgs(access.scope), patient_id), "patient")


@router.put("/patients/{patient_id}/care-teams", response_model=m.AdminPatient,
            responses=REFUSALS, summary="The patient's care team becomes exactly these teams")
def set_care_teams(body: m.CareTeamsIn, conn: SessionDep, access: AdminPatientAccess
                   ) -> dict[str, Any]:
    assert access.patient_id is not None
    _teams_in_scope(conn, access.scope, [*body.teams, *([body.lead] if body.lead else [])])
    _call(lambda: admin.set_care_teams(conn, patient_id=access.patient_id or 0,
                                       teams=body.teams, lead=body.lead))
    return _one(admin_queries.patients(conn, _orgs(access.scope), access.patient_id),
                "patient")


@router.post("/patients/{patient_id}/enrolments", response_model=m.Enrolment,
             status_code=201, responses=REFUSALS,
             summary="Enrol a hub to the patient from valid_from (default now)")
def enrol(body: m.EnrolmentIn, conn: SessionDep, access: AdminPatientAccess) -> m.Enrolment:
    assert access.patient_id is not None
    _hub(conn, access.scope, body.hub_id)
    start = body.valid_from or datetime.now(UTC)
    enrolment = _call(lambda: admin.enrol(conn, hub_id=body.hub_id,
                                          patient_id=access.patient_id or 0, valid_from=start))
    return m.Enrolment(id=enrolment, hub_id=body.hub_id, patient_id=access.patient_id,
                       valid_from=start.isoformat())


# -- hubs and devices ---------------------------------------------------------------------

@router.get("/hubs", response_model=list[m.Hub], responses=REFUSALS,
            summary="The hubs of the caller's organisations, with patient and devices")
def list_hubs(conn: SessionDep, access: AdminAccess) -> list[dict[str, Any]]:
    return admin_queries.hubs(conn, _orgs(access.scope))


@router.post("/hubs", response_model=m.Hub, status_code=201, responses=REFUSALS,
             summary="Record a hub (its broker credentials: `homeward admin hub provision`)")
def create_hub(body: m.HubIn, conn: SessionDep, access: AdminAccess) -> dict[str, Any]:
    if not access.scope.organisation_ids:
        raise HTTPException(409, detail="you belong to no organisation")
    _call(lambda: admin.create_hub(conn, hub_id=body.id,
                                   organisation_id=access.scope.organisation_ids[0]))
    return _hub(conn, access.scope, body.id)


def _publish(conn: Conn, hub_id: str, settings: Any) -> m.HubConfig:
    from server.hub_config import publish_hub_config

    try:
        config = publish_hub_config(conn, hub_id, settings=settings, timeout=5.0)
    except (OSError, TimeoutError) as err:
        raise HTTPException(502, detail=f"saved, but the hub's config was not published "
                                        f"({err}); POST /api/admin/hubs/{hub_id}/config "
                                        "to publish it again") from err
    return m.HubConfig(hub_id=hub_id, devices=[m.Device(address=d.address, kind=d.kind.value,
                                                        name=d.name) for d in config.devices])


@router.post("/hubs/{hub_id}/devices", response_model=m.HubConfig, responses=PUBLISH,
             summary="Pair a device; the hub's retained config is published")
def pair_device(hub_id: HubPath, body: m.DeviceIn, conn: SessionDep, access: AdminAccess,
                settings: SettingsDep) -> m.HubConfig:
    _hub(conn, access.scope, hub_id)
    _call(lambda: admin.pair_device(conn, hub_id=hub_id, address=body.address, kind=body.kind,
                                    name=body.name))
    return _publish(conn, hub_id, settings)


@router.delete("/hubs/{hub_id}/devices/{address}", response_model=m.HubConfig,
               responses=PUBLISH,
               summary="Unpair a device; the hub's retained config is published")
def unpair_device(hub_id: HubPath, address: AddressPath, conn: SessionDep,
                  access: AdminAccess, settings: SettingsDep) -> m.HubConfig:
    _hub(conn, access.scope, hub_id)
    if not admin.remove_device(conn, hub_id=hub_id, address=address):
        raise HTTPException(404, detail=f"{address} is not paired with hub {hub_id!r}")
    return _publish(conn, hub_id, settings)


@router.post("/hubs/{hub_id}/config", response_model=m.HubConfig, responses=PUBLISH,
             summary="Publish the hub's retained config again")
def publish_config(hub_id: HubPath, conn: SessionDep, access: AdminAccess,
                   settings: SettingsDep) -> m.HubConfig:
    _hub(conn, access.scope, hub_id)
    return _publish(conn, hub_id, settings)


# -- hub credentials --------------------------------------------------------------------

BROKER = {**REFUSALS, 502: {"model": Problem, "description": "the broker could not be "
                                                            "reached, or refused"}}


@router.post("/hubs/{hub_id}/credentials", response_model=m.Bundle, status_code=201,
             responses=BROKER,
             summary="Broker credentials for the hub: its provisioning bundle, shown once")
def provision_hub(hub_id: HubPath, conn: SessionDep, access: AdminAccess,
                  settings: SettingsDep, replace: bool = False) -> m.Bundle:
    from server.hub_provisioning import provision

    hub = _hub(conn, access.scope, hub_id)
    bundle = _call(lambda: provision(conn, hub_id=hub_id,
                                     organisation_id=hub["organisation_id"],
                                     settings=settings, replace=replace))
    return m.Bundle(**bundle.model_dump())


@router.delete("/hubs/{hub_id}/credentials", response_model=m.Hub, responses=BROKER,
               summary="Revoke the hub's broker credentials now (it is disconnected)")
def revoke_hub(hub_id: HubPath, conn: SessionDep, access: AdminAccess,
               settings: SettingsDep) -> dict[str, Any]:
    from server.hub_provisioning import revoke

    _hub(conn, access.scope, hub_id)
    _call(lambda: revoke(conn, hub_id=hub_id, settings=settings))
    return _hub(conn, access.scope, hub_id)
