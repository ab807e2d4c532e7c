"""The signed-in patient as FastAPI dependencies: the portal's parallel to ``scope.py``.

A patient is a different kind of caller from a clinician: named by the portal's own
session cookie (``PATIENT_COOKIE``, path ``/my``; never the dashboard's, and never a
bearer token), with one scope: themselves.  ``PatientSelf`` yields the signed-in
patient and writes one ``access_audit`` row per request when it ends: role
``patient``, no clinician, the patient's own id, the outcome as for clinicians
(``ok``, ``not_found`` for an id that is not theirs, ``refused``, ``error``).
Portal routes take every id they are given through the patient's own rows, so
another patient's id is a 404, the same as an id that does not exist.

A state-changing request must carry the session's CSRF token (``PortalForm``: a
``csrf_token`` field of the urlencoded form, or ``X-CSRF-Token``), else it is a 403;
the Origin check of ``server.api.csrf`` applies as everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from server import audit, patient_auth
from server.api.csrf import FORM_FIELD, HEADER, csrf_token, token_matches
from server.api.deps import PoolDep, SettingsDep
from server.api.scope import _action, _outcome, _resource, request_id

PATIENT_COOKIE = "homeward_patient_session"
#: The portal's pages: the patient's cookie is sent to these paths only.
PORTAL_PATH = "/my"
ROLE = "patient"


@dataclass(frozen=True, slots=True)
class PatientCaller:
    patient_id: int
    name: str
    #: The session id, for the CSRF token of the patient's forms.
    session_id: str

    def csrf(self, secret: str) -> str:
        return csrf_token(self.session_id, secret)


def signed_in_patient(request: Request, pool: PoolDep, settings: SettingsDep) -> PatientCaller:
    """The patient of a live portal session; 401 without one (pages go to sign-in)."""
    cookie = request.cookies.get(PATIENT_COOKIE)
    found = None
    if cookie:
        with pool.connection() as conn:
            found = patient_auth.session_patient(
                conn, cookie, idle_seconds=settings.patient_session_idle_seconds)
    if cookie is None or found is None:
        raise HTTPException(401, detail="sign in to the patient portal at /my/sign-in")
    return PatientCaller(found[0], found[1], cookie)


SignedInPatient = Annotated[PatientCaller, Depends(signed_in_patient)]


def write_audit(request: Request, pool: PoolDep, patient_id: int,
                outcome: audit.Outcome) -> None:
    client = request.client.host if request.client else None
    with pool.connection() as conn:
        audit.record(conn, audit.AuditEntry(
            clinician_id=None, role=ROLE, action=_action(request), resource=_resource(request),
            patient_id=patient_id, request_id=request_id(request), client_addr=client,
            outcome=outcome))


def patient_self(request: Request, pool: PoolDep, caller: SignedInPatient
                 ) -> Iterator[PatientCaller]:
    """The signed-in patient, and the request audited as theirs when it ends."""
    error: BaseException | None = None
    try:
        yield caller
    except BaseException as err:
        error = err
        raise
    finally:
        # a portal page answers its refusals itself (routes.portal.PortalRoute), which
        # leaves them on the request's state rather than raising them through here
        error = error or getattr(request.state, "portal_error", None)
        write_audit(request, pool, caller.patient_id, _outcome(error))


PatientSelf = Annotated[PatientCaller, Depends(patient_self)]


def form_fields(body: bytes) -> dict[str, str]:
    """An urlencoded form's first value of each field; NUL in any field is a 422."""
    form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
    bad = [{"loc": ("body", k), "type": "string_pattern_mismatch",
            "msg": "text must not contain NUL characters"} for k, v in form.items() if "\0" in v]
    if bad:
        raise RequestValidationError(bad)
    return form


async def portal_form(request: Request, caller: PatientSelf,
                      settings: SettingsDep) -> dict[str, str]:
    """A signed-in patient's form post, its CSRF token checked (403 without it)."""
    form = form_fields(await request.body())
    given = form.get(FORM_FIELD) or request.headers.get(HEADER)
    if not token_matches(given, caller.session_id, settings.secret_key):
        raise HTTPException(403, detail="missing or wrong CSRF token: reload the page and "
                                        "try again")
    return form


PortalForm = Annotated[dict[str, str], Depends(portal_form)]
