"""The read-only FHIR R4 API under ``/fhir/r4`` (docs/fhir.md).

Reads and searches of Patient, Observation, Flag, Device and CareTeam, behind
the same authentication, scope and audit as the rest of the API
(server.api.scope): a read takes the access dependency of its id, a search
``SearchAccess``.  Answers are ``application/fhir+json``; an error is an
OperationOutcome (``install_error_handlers``).  The resources come from the pure
mapping in server.fhir.resources, the rows from server.fhir.store, the search
rules from server.fhir.search.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from homeward.kinds import METRICS, Kind
from server.api.deps import SessionDep
from server.api.limits import allowed_methods
from server.api.scope import (
    AlertAccess,
    CommunicationAccess,
    DeviceAccess,
    FhirTaskAccess,
    ObservationAccess,
    PatientAccess,
    SearchAccess,
)
from server.api.types import DbId
from server.fhir import codes as c
from server.fhir import resources as fhir
from server.fhir import store
from server.fhir.capability import capability_statement
from server.fhir.search import (
    Cursor,
    Search,
    SearchError,
    Token,
    concept_matches,
    date_bounds,
    parse,
    tokens,
)

PREFIX = "/fhir/r4"
MEDIA_TYPE = "application/fhir+json"
#: The OpenAPI schema of any FHIR resource (the FHIR specification defines the rest).
RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["resourceType"], "additionalProperties": True,
    "properties": {"resourceType": {"type": "string"}},
    "externalDocs": {"url": "https://hl7.org/fhir/R4/"}}


def fhir_content(description: str) -> dict[str, Any]:
    return {"description": description, "content": {MEDIA_TYPE: {"schema": RESOURCE_SCHEMA}}}


#: Every FHIR route's error answers: OperationOutcomes.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: fhir_content("OperationOutcome: an unsupported or invalid parameter"),
    401: fhir_content("OperationOutcome: no valid bearer token"),
    403: fhir_content("OperationOutcome: not allowed (a system client outside /fhir)"),
    404: fhir_content("OperationOutcome: no such resource, or outside the caller's scope"),
    503: fhir_content("OperationOutcome: database unavailable; see Retry-After"),
}
OK: dict[int | str, dict[str, Any]] = {200: fhir_content("the resource, or a searchset Bundle")}
router = APIRouter(prefix=PREFIX, tags=["fhir"], responses=ERRORS)

_PATIENT_PARAM = {"name": "patient", "in": "query", "schema": {
    "type": "string", "pattern": r"^(Patient/)?[0-9]{1,18}$"},
    "description": "The patient: 123 or Patient/123 (a comma list is OR)"}
_COUNT_PARAM = {"name": "_count", "in": "query", "schema": {"type": "integer"},
                "description": "Entries per page (default 50), taken as 1 to 1000"}


def search_doc(resource_type: str, *, patient_required: bool = False) -> dict[str, Any]:
    """OpenAPI for a search: its page size and patient; the rest of its parameters (tokens,
    dates) are listed in the description and the CapabilityStatement."""
    from server.fhir.search import SUPPORTED

    params: list[dict[str, Any]] = [{**_COUNT_PARAM}]
    names = [p.name for p in SUPPORTED[resource_type]]
    if "patient" in names:
        params.append({**_PATIENT_PARAM, "required": patient_required})
    return {"parameters": params, "description": (
        f"FHIR search of {resource_type}: {', '.join(names)} (see /fhir/r4/metadata and "
        "docs/fhir.md).  Unsupported parameters are ignored, or answered 400 under "
        "'Prefer: handling=strict'.")}

#: An error's HTTP status -> its OperationOutcome issue type (http://hl7.org/fhir/issue-type).
ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
               405: "not-supported", 406: "not-supported", 409: "conflict",
               410: "deleted", 413: "too-costly", 422: "invalid", 503: "transient"}


class FhirResponse(Response):
    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def outcome(status: int, diagnostics: str, headers: dict[str, str] | None = None
            ) -> FhirResponse:
    severity: fhir.Severity = "error" if status < 500 else "fatal"
    return FhirResponse(fhir.operation_outcome(severity, ISSUE_TYPES.get(status, "processing"),
                                               diagnostics), status_code=status,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer errors under /fhir/ as OperationOutcomes; the app's own handlers elsewhere.

    A path parameter that cannot be an id (``Patient/abc``) is a 404, as FHIR reads
    answer an unknown id; any other invalid input a 400."""
    def for_fhir(handler: Callable[..., Any]) -> Callable[..., Any]:
        async def app_answer(request: Request, exc: Exception) -> Response:
            result = handler(request, exc)
            answer: Response = await result if hasattr(result, "__await__") else result
            return answer

        async def handle(request: Request, exc: Exception) -> Response:
            if not request.url.path.startswith(PREFIX + "/"):
                return await app_answer(request, exc)
            if isinstance(exc, StarletteHTTPException):
                detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
                headers = dict(exc.headers or {})
                if exc.status_code == 405:
                    headers["Allow"] = allowed_methods(request)
                return outcome(exc.status_code, detail, headers)
            if isinstance(exc, RequestValidationError):
                errors = exc.errors()
                if any(e.get("loc", ("",))[0] == "path" for e in errors):
                    return outcome(404, "no such resource")
                return outcome(400, "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                    for e in errors))
            # the app's handler decides the status (503 for the database, ...)
            answer = await app_answer(request, exc)
            return outcome(answer.status_code, orjson.loads(answer.body).get(
                "detail", "error"), {k: v for k, v in answer.headers.items()
                                     if k.lower() == "retry-after"})
        return handle

    async def search_error(request: Request, exc: Exception) -> Response:
        return outcome(400, str(exc))

    for exc_class, handler in list(app.exception_handlers.items()):
        app.exception_handlers[exc_class] = for_fhir(handler)
    app.add_exception_handler(SearchError, search_error)  # raised under /fhir/ only


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def strict_handling(request: Request) -> bool:
    """``Prefer: handling=strict`` (RFC 7240; FHIR search 3.1.1.2)."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().lower() == "handling=strict"
               for p in prefer.replace(";", ",").split(","))


def _search(request: Request, resource_type: str) -> Search:
    return parse(resource_type, request.query_params.multi_items(),
                 strict=strict_handling(request))


def _bundle(request: Request, search: Search, entries: Sequence[fhir.Resource],
            next_cursor: Cursor | None) -> FhirResponse:
    base = base_url(request)
    return FhirResponse(fhir.searchset(
        entries, self_url=search.link(base, search.cursor),
        next_url=search.link(base, next_cursor) if next_cursor is not None else None,
        base_url=base))


def _db_now(conn: Any) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    value: datetime = row[0]
    return value


def _after_id(search: Search) -> int | None:
    if search.cursor is None:
        return None
    try:
        return int(search.cursor.key[0])
    except ValueError as err:
        raise SearchError("_cursor is not one this server gave: start the search again"
                          ) from err


def _id_page(search: Search, rows: list[dict[str, Any]]
             ) -> tuple[list[dict[str, Any]], Cursor | None]:
    """The page of ``rows`` (fetched with one extra) and the cursor after it."""
    if len(rows) <= search.count:
        return rows, None
    # ids only grow, so an id page needs no as-of time: new rows come on later pages
    return rows[:search.count], Cursor((str(rows[search.count - 1]["id"]),), 0, _EPOCH)


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


# -- metadata ------------------------------------------------------------------------------

@router.get("/metadata", summary="The CapabilityStatement: what this server supports",
            response_class=FhirResponse, responses=OK)
def metadata(request: Request) -> FhirResponse:
    return FhirResponse(capability_statement(base_url=base_url(request),
                                             published=_PUBLISHED))


_PUBLISHED = datetime.fromisoformat("2026-12-04T00:00:00+00:00")


# -- Patient -------------------------------------------------------------------------------

@router.get("/Patient", summary="Search patients: identifier, _id", response_class=FhirResponse,
            responses=OK, openapi_extra=search_doc("Patient"))
def patient_search(request: Request, conn: SessionDep, access: SearchAccess) -> FhirResponse:
    search = _search(request, "Patient")
    ids: list[list[int]] = []
    for group in tokens(search, "_id"):
        ids.append([int(t.code) for t in group if t.code.isascii() and t.code.isdigit()])
    nhs: list[list[str]] = [[t.code for t in group if t.system in (None, "", c.NHS_NUMBER)]
                            for group in tokens(search, "identifier")]
    rows = store.patients(conn, access.scope, ids=ids, nhs_numbers=nhs,
                          after=_after_id(search), limit=search.count + 1)
    page, after = _id_page(search, rows)
    return _bundle(request, search, [fhir.patient(r) for r in page], after)


@router.get("/Patient/{patient_id}", summary="Read a patient", response_class=FhirResponse,
            responses=OK)
def patient_read(patient_id: DbId, conn: SessionDep, access: PatientAccess) -> FhirResponse:
    return FhirResponse(fhir.patient(store.patient(conn, patient_id)))


# -- Observation ---------------------------------------------------------------------------

def _shapes() -> dict[Kind, list[tuple[fhir.Resource, list[fhir.Resource]]]]:
    """Per kind, the (code, category) of each Observation one of its readings gives, read
    off the mapping itself, so that a search by code or category asks only for the
    kinds that can match."""
    out = {}
    for kind in Kind:
        row = {"id": uuid.UUID(int=0), "taken_at": _EPOCH, "kind": kind.value,
               "hub_id": "hub", "device": "AA:BB:CC:DD:EE:FF", "flags": [],
               "values": {m.name: m.minimum for m in METRICS[kind]}}
        out[kind] = [(o["code"], o["category"]) for o in fhir.observations(row, patient_id=1)]
    return out


SHAPES = _shapes()


def _matches(code: fhir.Resource, category: list[fhir.Resource],
             codes: list[list[Token]], categories: list[list[Token]]) -> bool:
    return (all(any(concept_matches([code], t) for t in group) for group in codes)
            and all(any(concept_matches(category, t) for t in group) for group in categories))


@router.get("/Observation", response_class=FhirResponse, responses=OK,
            openapi_extra=search_doc("Observation"),
            summary="Search readings: patient, code, category, date, _lastUpdated, _sort")
def observation_search(request: Request, conn: SessionDep,
                       access: SearchAccess) -> FhirResponse:
    search = _search(request, "Observation")
    codes, categories = tokens(search, "code"), tokens(search, "category")
    kinds = [k.value for k, shapes in SHAPES.items()
             if any(_matches(code, cat, codes, categories) for code, cat in shapes)]
    entries, after = (_observation_page(conn, access, search, codes, categories, kinds)
                      if kinds else ([], None))
    return _bundle(request, search, entries, after)


def _observation_page(conn: Any, access: Any, search: Search, codes: list[list[Token]],
                      categories: list[list[Token]], kinds: list[str]
                      ) -> tuple[list[fhir.Resource], Cursor | None]:
    """One page of Observations in (taken_at, reading id, part) order from the cursor.

    A reading gives one or two Observations (its pulse rate is its own), so the cursor
    holds the part to go on from; readings are read in batches until the page is
    full and one more match shows whether there is a next page."""
    cursor = search.cursor
    as_of = cursor.as_of if cursor is not None else _db_now(conn)
    start: tuple[datetime, uuid.UUID] | None = None
    skip = 0
    if cursor is not None:
        try:
            start = (datetime.fromisoformat(cursor.key[0]), uuid.UUID(cursor.key[1]))
        except (ValueError, IndexError) as err:
            raise SearchError("_cursor is not one this server gave: start the search "
                              "again") from err
        skip = cursor.part
    inclusive = True
    batch = min(max(search.count + 1, 100), 1000)
    entries: list[fhir.Resource] = []
    while True:
        rows = store.readings(
            conn, access.scope, patients=search.patients(), kinds=kinds,
            taken=date_bounds(search, "date"), updated=date_bounds(search, "_lastUpdated"),
            as_of=as_of, start=start, inclusive=inclusive, descending=search.descending,
            limit=batch)
        for row in rows:
            first = inclusive and start is not None and (row["taken_at"], row["id"]) == start
            for part, resource in enumerate(fhir.observations(row,
                                                              patient_id=row["patient_id"])):
                if (first and part < skip) or not _matches(
                        resource["code"], resource["category"], codes, categories):
                    continue
                if len(entries) == search.count:
                    return entries, Cursor((row["taken_at"].isoformat(), str(row["id"])),
                                           part, as_of)
                entries.append(resource)
        if len(rows) < batch:
            return entries, None
        start, inclusive = (rows[-1]["taken_at"], rows[-1]["id"]), False


@router.get("/Observation/{observation_id}", summary="Read one Observation",
            response_class=FhirResponse, responses=OK)
def observation_read(observation_id: str, conn: SessionDep,
                     access: ObservationAccess) -> FhirResponse:
    reading_id, _part = fhir.parse_observation_id(observation_id)  # checked by the access
    row = store.reading(conn, reading_id)
    resources = fhir.observations(row, patient_id=row["patient_id"]) if row else []
    for resource in resources:
        if resource["id"] == observation_id:
            return FhirResponse(resource)
    # a pulse-rate id of a reading without a pulse rate
    raise HTTPException(404, detail=f"Observation/{observation_id} not found")


# -- Flag ----------------------------------------------------------------------------------

#: Flag.status -> the alert states it stands for (resources.flag).
FLAG_STATES = {"active": ("open", "acknowledged"), "inactive": ("resolved", "auto_resolved")}


def _flag(row: dict[str, Any]) -> fhir.Resource:
    return fhir.flag(row, evidence_ids=fhir.evidence_ids(row["readings"] or ()))


@router.get("/Flag", summary="Search alerts as Flags: patient, status, _lastUpdated",
            response_class=FhirResponse, responses=OK, openapi_extra=search_doc("Flag"))
def flag_search(request: Request, conn: SessionDep, access: SearchAccess) -> FhirResponse:
    search = _search(request, "Flag")
    states: set[str] | None = None
    for group in tokens(search, "status"):
        allowed = {s for t in group for s in FLAG_STATES.get(t.code, ())}
        states = allowed if states is None else states & allowed
    rows = store.alerts(conn, access.scope, patients=search.patients(),
                        states=sorted(states) if states is not None else None,
                        updated=date_bounds(search, "_lastUpdated"),
                        after=_after_id(search), limit=search.count + 1)
    page, after = _id_page(search, rows)
    return _bundle(request, search, [_flag(r) for r in page], after)


@router.get("/Flag/{alert_id}", summary="Read an alert as a Flag", response_class=FhirResponse,
            responses=OK)
def flag_read(alert_id: DbId, conn: SessionDep, access: AlertAccess) -> FhirResponse:
    row = store.alert(conn, alert_id)
    if row is None or row["category"] != "clinical":
        raise HTTPException(404, detail=f"Flag/{alert_id} not found: a system alert is "
                                        "not about a patient")
    return FhirResponse(_flag(row))


# -- Device --------------------------------------------------------------------------------

def _one_patient_set(conn: Any, access: Any, search: Search) -> list[int]:
    if not search.patients():
        raise SearchError(f"a {search.resource_type} search needs patient=")
    return store.patient_ids(conn, access.scope, search.patients())


@router.get("/Device", summary="A patient's devices and hubs: patient (required)",
            response_class=FhirResponse, responses=OK,
            openapi_extra=search_doc("Device", patient_required=True))
def device_search(request: Request, conn: SessionDep, access: SearchAccess) -> FhirResponse:
    search = _search(request, "Device")
    rows = store.devices(conn, _one_patient_set(conn, access, search))
    return _bundle(request, search, [store.device_resource(r) for r in rows], None)


@router.get("/Device/{device_id}", summary="Read a device or a hub", response_class=FhirResponse,
            responses=OK)
def device_read(device_id: str, conn: SessionDep, access: DeviceAccess) -> FhirResponse:
    row, _patient = store.device_patient(conn, access.scope, device_id)
    return FhirResponse(store.device_resource(row))


# -- CareTeam ------------------------------------------------------------------------------

@router.get("/CareTeam", summary="Search care teams: patient", response_class=FhirResponse,
            responses=OK, openapi_extra=search_doc("CareTeam"))
def care_team_search(request: Request, conn: SessionDep, access: SearchAccess) -> FhirResponse:
    search = _search(request, "CareTeam")
    rows = store.patients(conn, access.scope, ids=search.patients(), after=_after_id(search),
                          limit=search.count + 1)
    page, after = _id_page(search, rows)
    teams = store.care_teams(conn, [int(r["id"]) for r in page])
    return _bundle(request, search, [fhir.care_team(p, t) for p, t in teams.items()], after)


@router.get("/CareTeam/{patient_id}", summary="Read a patient's care team",
            response_class=FhirResponse, responses=OK)
def care_team_read(patient_id: DbId, conn: SessionDep, access: PatientAccess) -> FhirResponse:
    teams = store.care_teams(conn, [patient_id])
    return FhirResponse(fhir.care_team(patient_id, teams[patient_id]))


# -- Task (tasks and hand-overs) and Communication (messages with the patient) -------------

@router.get("/Task", summary="A patient's tasks and hand-overs: patient (required)",
            response_class=FhirResponse, responses=OK,
            openapi_extra=search_doc("Task", patient_required=True))
def task_search(request: Request, conn: SessionDep, access: SearchAccess) -> FhirResponse:
    search = _search(request, "Task")
    found = store.task_resources(conn, access.scope, _one_patient_set(conn, access, search))
    return _bundle(request, search, found, None)


@router.get("/Task/{task_id}", summary="Read a task (task-N) or a hand-over (handover-N)",
            response_class=FhirResponse, responses=OK)
def task_read(task_id: str, conn: SessionDep, access: FhirTaskAccess) -> FhirResponse:
    return FhirResponse(store.task_resource(conn, access.scope, task_id)[0])


@router.get("/Communication", summary="Messages between a patient and the care team: patient "
                                      "(required)", response_class=FhirResponse, responses=OK,
            openapi_extra=search_doc("Communication", patient_required=True))
def communication_search(request: Request, conn: SessionDep,
                         access: SearchAccess) -> FhirResponse:
    search = _search(request, "Communication")
    found = store.communications(conn, access.scope, _one_patient_set(conn, access, search))
    return _bundle(request, search, found, None)


@router.get("/Communication/{communication_id}", summary="Read a message (message-N)",
            response_class=FhirResponse, responses=OK)
def communication_read(communication_id: str, conn: SessionDep,
                       access: CommunicationAccess) -> FhirResponse:
    return FhirResponse(store.communication(conn, access.scope, communication_id)[0])
