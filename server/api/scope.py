"""The access model as FastAPI dependencies: the caller's scope, and audited access.

Routes never filter by team themselves.  A route that reads or writes one
patient's data takes ``PatientAccess`` (its ``{patient_id}`` path parameter),
one about an alert takes ``AlertAccess`` (``{alert_id}``), a listing of
patient data takes ``ListAccess``; the FHIR API's reads take the same by their
own ids (``ObservationAccess``, ``DeviceAccess``) and its searches
``SearchAccess``.  Each checks the scope (404 when out of it), and writes one
audit row when the request ends, with the outcome.  Admin-only routes take
``AdminScope`` (403 for other roles).  ``server.access`` holds the SQL;
``tests/test_access.py`` walks every route of the OpenAPI document to hold
every route to this.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import orjson
import psycopg
from fastapi import Depends, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError

from alerts.handovers import HandoverRefused
from alerts.store import AlertNotFound, InvalidTransition, UnknownOutcome
from alerts.tasks import TaskRefused
from server import audit
from server.access import (
    NotInScope,
    Scope,
    load_scope,
    patient_ids_in_scope,
    require_alert,
    require_handover,
    require_invitation,
    require_patient,
    require_task,
    require_team,
    visible_teams,
)
from server.api.deps import CurrentClinician, PoolDep
from server.api.types import DbId
from server.care_team import CareTeamRefused, NotAllowed
from server.fhir import store as fhir_store
from server.fhir.search import SearchError, parse_reference

#: Exceptions that mean "the route said no" (a 4xx), not that it failed.
_REFUSALS = (RequestValidationError, InvalidTransition, UnknownOutcome, AlertNotFound,
             SearchError, HandoverRefused, TaskRefused, CareTeamRefused, NotAllowed)
_REQUEST_ID_MAX = 64


#: The only paths a system client (role ``system``) may use: the read-only FHIR API.
SYSTEM_CLIENT_PREFIX = "/fhir/"


def caller_scope(clinician: CurrentClinician, pool: PoolDep, request: Request) -> Scope:
    with pool.connection() as conn:
        scope = load_scope(conn, int(clinician["id"]))
    if scope is None:  # deactivated since the session began
        raise HTTPException(401, detail="this account is not active",
                            headers={"WWW-Authenticate": "Bearer"})
    if scope.role == "system" and not request.url.path.startswith(SYSTEM_CLIENT_PREFIX):
        raise HTTPException(403, detail="a system client may use only the FHIR API (/fhir/r4)")
    return scope


CallerScope = Annotated[Scope, Depends(caller_scope)]


def admin_scope(scope: CallerScope) -> Scope:
    if not scope.is_admin:
        raise HTTPException(403, detail="this needs the admin role")
    return scope


AdminScope = Annotated[Scope, Depends(admin_scope)]


def request_id(request: Request) -> str:
    """The caller's X-Request-ID when it is sane, else a new one (kept for the request)."""
    existing = getattr(request.state, "request_id", None)
    if isinstance(existing, str):
        return existing
    given = request.headers.get("x-request-id", "")
    value = (given if 0 < len(given) <= _REQUEST_ID_MAX and given.isprintable()
             and given.isascii() else uuid.uuid4().hex)
    request.state.request_id = value
    return value


def _resource(request: Request) -> str:
    query = request.url.query
    return (request.url.path + ("?" + query if query else ""))[:300]


def _action(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def _outcome(err: BaseException | None) -> audit.Outcome:
    if err is None:
        return "ok"
    if isinstance(err, HTTPException):
        return "not_found" if err.status_code == 404 else (
            "refused" if err.status_code < 500 else "error")
    return "refused" if isinstance(err, _REFUSALS) else "error"


@dataclass(frozen=True, slots=True)
class Access:
    """The caller, and the patient the request is about (None: a listing, or a
    system alert)."""

    scope: Scope
    patient_id: int | None


def _audited(request: Request, pool: PoolDep, scope: Scope,
             patient_id: int | None) -> Iterator[Access]:
    error: BaseException | None = None
    try:
        yield Access(scope, patient_id)
    except BaseException as err:
        error = err
        raise
    finally:
        _write(request, pool, scope, patient_id, _outcome(error))


def _entry(request: Request, scope: Scope, patient_id: int | None,
           outcome: audit.Outcome) -> audit.AuditEntry:
    client = request.client.host if request.client else None
    return audit.AuditEntry(clinician_id=scope.clinician_id, role=scope.role,
                            action=_action(request), resource=_resource(request),
                            patient_id=patient_id, request_id=request_id(request),
                            client_addr=client, outcome=outcome)


def _write(request: Request, pool: PoolDep, scope: Scope, patient_id: int | None,
           outcome: audit.Outcome) -> None:
    with pool.connection() as conn:
        audit.record(conn, _entry(request, scope, patient_id, outcome))


def audit_patients(request: Request, pool: PoolDep, scope: Scope,
                   patient_ids: list[int]) -> None:
    """One audit row per patient a response carries the data of (a bulk export file),
    beside the request's own row, so the audit of each patient shows it."""
    with pool.connection() as conn:
        audit.record_many(conn, [_entry(request, scope, p, "ok") for p in patient_ids])


def _resolved(request: Request, pool: PoolDep, scope: Scope,
              resolve: Callable[[psycopg.Connection[Any]], int | None]) -> Iterator[Access]:
    """Audited access to what ``resolve`` finds in scope (its patient id, or None for a
    system alert); 404, audited as not found, when it raises NotInScope."""
    with pool.connection() as conn:
        try:
            patient_id = resolve(conn)
        except NotInScope as err:
            _write(request, pool, scope, None, "not_found")
            raise HTTPException(404, detail=str(err)) from err
    yield from _audited(request, pool, scope, patient_id)


def patient_access(patient_id: DbId, request: Request, pool: PoolDep,
                   scope: CallerScope) -> Iterator[Access]:
    def resolve(conn: psycopg.Connection[Any]) -> int:
        require_patient(conn, scope, patient_id)
        return patient_id
    yield from _resolved(request, pool, scope, resolve)


def alert_access(alert_id: DbId, request: Request, pool: PoolDep,
                 scope: CallerScope) -> Iterator[Access]:
    yield from _resolved(request, pool, scope, lambda conn: require_alert(conn, scope, alert_id))


def observation_access(observation_id: str, request: Request, pool: PoolDep,
                       scope: CallerScope) -> Iterator[Access]:
    """A FHIR Observation id (a reading's, or its pulse rate's): its reading's patient."""
    yield from _resolved(request, pool, scope,
                         lambda conn: fhir_store.reading_patient(conn, scope, observation_id))


def device_access(device_id: str, request: Request, pool: PoolDep,
                  scope: CallerScope) -> Iterator[Access]:
    """A FHIR Device id (a paired device or a hub): in scope while its hub served a
    patient in scope; audited as that patient's."""
    yield from _resolved(request, pool, scope,
                         lambda conn: fhir_store.device_patient(conn, scope, device_id)[1])


def fhir_task_access(task_id: str, request: Request, pool: PoolDep,
                     scope: CallerScope) -> Iterator[Access]:
    """A FHIR Task id (``task-N``, ``handover-N``): its patient's, in scope."""
    yield from _resolved(request, pool, scope,
                         lambda conn: fhir_store.task_resource(conn, scope, task_id)[1])


def communication_access(communication_id: str, request: Request, pool: PoolDep,
                         scope: CallerScope) -> Iterator[Access]:
    """A FHIR Communication id (``message-N``): its patient's, in scope."""
    yield from _resolved(request, pool, scope,
                         lambda conn: fhir_store.communication(conn, scope,
                                                               communication_id)[1])


def search_access(request: Request, pool: PoolDep, scope: CallerScope) -> Iterator[Access]:
    """A FHIR search: every patient its ``patient``/``subject`` parameters name must be
    in scope (else 404, as a read); audited as that patient's when it names one."""
    named: set[int] = set()
    for key, value in request.query_params.multi_items():
        if key in ("patient", "subject"):
            # a bad reference: the route answers 400 for it (and the request is audited)
            with contextlib.suppress(SearchError):
                named.update(parse_reference(v) for v in value.split(","))

    def resolve(conn: psycopg.Connection[Any]) -> int | None:
        for patient_id in sorted(named):
            require_patient(conn, scope, patient_id)
        return next(iter(named)) if len(named) == 1 else None
    yield from _resolved(request, pool, scope, resolve)


def invitation_access(invitation_id: DbId, request: Request, pool: PoolDep,
                      scope: CallerScope) -> Iterator[Access]:
    """A care-team invitation to one of the caller's teams: audited as its patient's."""
    yield from _resolved(request, pool, scope,
                         lambda conn: require_invitation(conn, scope, invitation_id))


def handover_access(handover_id: DbId, request: Request, pool: PoolDep,
                    scope: CallerScope) -> Iterator[Access]:
    """A hand-over from or to one of the caller's teams, or about a patient in scope."""
    yield from _resolved(request, pool, scope,
                         lambda conn: require_handover(conn, scope, handover_id))


def task_access(task_id: DbId, request: Request, pool: PoolDep,
                scope: CallerScope) -> Iterator[Access]:
    """A task about a patient in scope, or asked by one of the caller's teams."""
    yield from _resolved(request, pool, scope, lambda conn: require_task(conn, scope, task_id))


def team_access(team_id: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")],
                request: Request, pool: PoolDep, scope: CallerScope) -> Iterator[Access]:
    """A team's own data (its shift report): a member of the team, or an admin of its
    organisation; 404, audited as not found, otherwise.  The request's audit row names
    no patient (``audit_patients`` adds one per patient the answer carries)."""
    def resolve(conn: psycopg.Connection[Any]) -> None:
        require_team(conn, scope, team_id)
    yield from _resolved(request, pool, scope, resolve)


def list_access(request: Request, pool: PoolDep, scope: CallerScope) -> Iterator[Access]:
    yield from _audited(request, pool, scope, None)


def admin_access(request: Request, pool: PoolDep, scope: AdminScope) -> Iterator[Access]:
    """An admin's request (403 for other roles), audited with its outcome."""
    yield from _audited(request, pool, scope, None)


def admin_patient_access(patient_id: DbId, request: Request, pool: PoolDep,
                         scope: AdminScope) -> Iterator[Access]:
    """An admin's request about one of her organisation's patients (404 otherwise)."""
    yield from patient_access(patient_id, request, pool, scope)


PatientAccess = Annotated[Access, Depends(patient_access)]
InvitationAccess = Annotated[Access, Depends(invitation_access)]
HandoverAccess = Annotated[Access, Depends(handover_access)]
TaskAccess = Annotated[Access, Depends(task_access)]
TeamAccess = Annotated[Access, Depends(team_access)]
ObservationAccess = Annotated[Access, Depends(observation_access)]
DeviceAccess = Annotated[Access, Depends(device_access)]
SearchAccess = Annotated[Access, Depends(search_access)]
FhirTaskAccess = Annotated[Access, Depends(fhir_task_access)]
CommunicationAccess = Annotated[Access, Depends(communication_access)]
AlertAccess = Annotated[Access, Depends(alert_access)]
ListAccess = Annotated[Access, Depends(list_access)]
AdminAccess = Annotated[Access, Depends(admin_access)]
AdminPatientAccess = Annotated[Access, Depends(admin_patient_access)]


class StreamScope:
    """Which live alert events a subscriber may receive: an event about a patient in
    scope, or about an alert routed to a team in scope.  The patient ids are
    read once and again every ``refresh_s``, not per event, so a busy stream costs no
    query per event; a patient added to one of her teams appears within that time."""

    def __init__(self, pool: PoolDep, scope: Scope, *, refresh_s: float = 30.0) -> None:
        self._pool, self._scope, self._refresh_s = pool, scope, refresh_s
        self._patients: set[int] = set()
        self._teams: set[str] = set()
        self._read_at = float("-inf")

    def _read(self) -> None:
        with self._pool.connection() as conn:
            self._patients = patient_ids_in_scope(conn, self._scope)
            self._teams = {str(r[0]) for r in conn.execute(visible_teams(self._scope))}

    async def allows(self, payload: str) -> bool:
        if time.monotonic() - self._read_at > self._refresh_s:
            await anyio.to_thread.run_sync(self._read)
            self._read_at = time.monotonic()
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        # as access.alert_condition: its patient is in scope, or it is routed to her team
        return event.get("patient_id") in self._patients or event.get("team_id") in self._teams
