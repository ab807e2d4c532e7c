"""FHIR Bulk Data export under /fhir/r4: kick-off, status, files (server.fhir.export).

- ``GET /fhir/r4/Patient/$export`` and ``GET /fhir/r4/Group/{team}/$export``, with
  ``_type``, ``_since`` and ``_outputFormat``: 202 and ``Content-Location``, the
  status URL.  A Group is a team (its care-team patients); a team outside the
  caller's scope is a 404.
- ``GET /fhir/r4/$export-status/{job}``: the manifest (200; the files are streamed
  on demand, so a job is complete as soon as it is made); ``DELETE`` cancels it.
- ``GET /fhir/r4/$export-file/{job}/{type}``: the NDJSON file, streamed.

Only the client that kicked a job off sees it (another's job is a 404).  The
kick-off and every file download are audited, and a download also writes one
audit row per patient it carries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response, StreamingResponse

from homeward.wire import format_time
from server.access import NotInScope, require_team
from server.api.deps import PoolDep, SessionDep
from server.api.routes.fhir import ERRORS, PREFIX, base_url, strict_handling
from server.api.scope import ListAccess, audit_patients
from server.fhir import export

router = APIRouter(prefix=PREFIX, tags=["fhir"], responses=ERRORS)

KICKOFF: dict[int | str, dict[str, Any]] = {202: {
    "description": "accepted; Content-Location is the status URL", "content": {},
    "headers": {"Content-Location": {"schema": {"type": "string"}}}}}
KICKOFF_DOC: dict[str, Any] = {"parameters": [
    {"name": "_type", "in": "query", "schema": {
        "type": "string", "pattern": "^(" + "|".join(export.TYPES) + ")(,(" + "|".join(
            export.TYPES) + "))*$"}, "description": "resource types (default: all)"},
    {"name": "_outputFormat", "in": "query", "schema": {
        "type": "string", "enum": sorted(export.OUTPUT_FORMATS)}}]}
MANIFEST: dict[int | str, dict[str, Any]] = {200: {
    "description": "the completion manifest (FHIR Bulk Data)",
    "content": {"application/json": {"schema": {"type": "object", "required": [
        "transactionTime", "request", "requiresAccessToken", "output", "error"]}}}}}
FILE: dict[int | str, dict[str, Any]] = {200: {
    "description": "NDJSON: one resource a line",
    "content": {export.NDJSON: {"schema": {"type": "string"}}}}}

TeamId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
Type = Annotated[str, Path(pattern="^(" + "|".join(export.TYPES) + ")$")]


def _kickoff(request: Request, conn: SessionDep, access: ListAccess,
             team_id: str | None) -> Response:
    types, since = export.parse_kickoff(request.query_params.multi_items(),
                                        strict=strict_handling(request))
    if team_id is not None:
        try:
            require_team(conn, access.scope, team_id)
        except NotInScope as err:
            raise HTTPException(404, detail=f"Group/{team_id} not found") from err
    job = export.create(conn, access.scope, request=str(request.url), team_id=team_id,
                        types=types, since=since)
    return Response(status_code=202, headers={
        "Content-Location": f"{base_url(request)}/$export-status/{job.id}"})


@router.get("/Patient/$export", status_code=202, response_class=Response,
            responses=KICKOFF, openapi_extra=KICKOFF_DOC,
            summary="Bulk export of every patient in the caller's scope (async kick-off)")
def patient_export(request: Request, conn: SessionDep, access: ListAccess) -> Response:
    return _kickoff(request, conn, access, None)


@router.get("/Group/{team_id}/$export", status_code=202, response_class=Response,
            responses=KICKOFF, openapi_extra=KICKOFF_DOC,
            summary="Bulk export of a team's care-team patients (async kick-off)")
def group_export(team_id: TeamId, request: Request, conn: SessionDep,
                 access: ListAccess) -> Response:
    return _kickoff(request, conn, access, team_id)


def _job(conn: SessionDep, access: ListAccess, job_id: uuid.UUID) -> export.Job:
    job = export.find(conn, access.scope, job_id)
    if job is None:
        raise HTTPException(404, detail=f"export {job_id} not found (or expired)")
    return job


@router.get("/$export-status/{job_id}", summary="An export's manifest",
            response_class=Response, responses=MANIFEST)
def export_status(job_id: uuid.UUID, request: Request, conn: SessionDep,
                  access: ListAccess) -> Response:
    job = _job(conn, access, job_id)
    return Response(orjson.dumps(export.manifest(job, base_url(request))),
                    media_type="application/json",
                    headers={"Expires": format_time(job.expires_at)})


@router.delete("/$export-status/{job_id}", status_code=202, summary="Cancel an export",
               response_class=Response, responses={202: {"description": "cancelled",
                                                         "content": {}}})
def export_delete(job_id: uuid.UUID, conn: SessionDep, access: ListAccess) -> Response:
    export.delete(conn, _job(conn, access, job_id))
    return Response(status_code=202)


@router.get("/$export-file/{job_id}/{resource_type}", summary="One NDJSON file of an export",
            response_class=StreamingResponse, responses=FILE)
def export_file(job_id: uuid.UUID, resource_type: Type, request: Request, pool: PoolDep,
                conn: SessionDep, access: ListAccess) -> StreamingResponse:
    job = _job(conn, access, job_id)
    if resource_type not in job.types:
        raise HTTPException(404, detail=f"export {job_id} has no {resource_type} file")
    patients = export.patients_in_scope(conn, access.scope, job)
    audit_patients(request, pool, access.scope, patients)

    def body() -> Iterator[bytes]:
        # its own connection, held while the file streams (the route's goes back at once)
        with pool.connection() as stream_conn:
            yield from export.ndjson(stream_conn, access.scope, resource_type, job, patients)

    return StreamingResponse(body(), media_type=export.NDJSON)
