"""FHIR Bulk Data export (https://hl7.org/fhir/uv/bulkdata/export.html), flat in memory.

A kick-off (``Patient/$export``, ``Group/{team}/$export``) records a job: the
patients in the caller's scope then (on the team's care team, for a Group), the
types, ``_since``, and the transaction time.  The manifest is ready at once:
nothing is written to disk and no worker runs.  Each output file is streamed when
it is downloaded, straight from PostgreSQL through a server-side cursor, a chunk
of rows at a time, so the server's memory does not grow with the export's size.
The scope is applied again at download: a patient who left the caller's scope
since the kick-off is left out.

The transaction time is the instant up to which the export is complete.  A
reading's ``committed_at`` is its inserting transaction's start, so a transaction
still open at kick-off may yet commit rows stamped before now; the transaction
time is therefore set before the start of every transaction open at kick-off
(``pg_stat_activity``).  Every row stamped at or before it is committed by then,
so a follow-up export with ``_since`` = this transaction time misses nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from homeward.wire import format_time
from server.access import Scope, patient_condition

from . import resources as fhir
from . import store
from .search import SearchError

TYPES: Final = ("Patient", "Observation", "Flag", "Device", "CareTeam", "Task",
                 "Communication")
OUTPUT_FORMATS: Final = frozenset({"application/fhir+ndjson", "application/ndjson",
                                   "ndjson"})
NDJSON: Final = "application/fhir+ndjson"
#: How long a job's files can be downloaded.
LIFETIME: Final = timedelta(hours=24)
#: Rows a server-side cursor fetches at once, and lines per chunk sent.
CHUNK: Final = 2000

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Job:
    id: uuid.UUID
    clinician_id: int
    request: str
    team_id: str | None
    types: tuple[str, ...]
    since: datetime | None
    transaction_time: datetime
    patient_ids: tuple[int, ...]
    expires_at: datetime


def parse_kickoff(items: Iterable[tuple[str, str]], *, strict: bool
                  ) -> tuple[tuple[str, ...], datetime | None]:
    """(types, since) from a kick-off's query; SearchError for what cannot be honoured."""
    types: list[str] = []
    since: datetime | None = None
    for key, value in items:
        if key == "_type":
            for name in value.split(","):
                if name not in TYPES:
                    raise SearchError(f"_type {name!r} is not exported (types: "
                                      f"{', '.join(TYPES)})")
                types.append(name)
        elif key == "_since":
            since = _instant(value)
        elif key == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise SearchError(f"_outputFormat {value!r}: only {NDJSON} is offered")
        elif strict:
            raise SearchError(f"the export parameter {key!r} is not supported "
                              "(_type, _since, _outputFormat are)")
    return tuple(dict.fromkeys(types)) or TYPES, since


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise SearchError(f"_since {text!r} is not a FHIR instant") from err
    if value.tzinfo is None:
        raise SearchError(f"_since {text!r} needs a time zone (an instant)")
    return value


def create(conn: Conn, scope: Scope, *, request: str, team_id: str | None,
           types: Sequence[str], since: datetime | None) -> Job:
    """Record a job over the patients in scope now (on ``team_id``'s care team if given)."""
    where = [patient_condition(scope, "p.id")]
    if team_id is not None:
        where.append(sql.SQL("p.id IN (SELECT patient_id FROM patient_team WHERE team_id = {})"
                             ).format(sql.Literal(team_id)))
    patients = [int(r[0]) for r in conn.execute(sql.SQL(
        "SELECT p.id FROM patient p WHERE {} ORDER BY p.id").format(
            sql.SQL(" AND ").join(where)))]
    row = conn.execute(
        "SELECT LEAST(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity"
        "  WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()))").fetchone()
    assert row is not None
    transaction_time: datetime = row[0] - timedelta(microseconds=1)
    job = Job(uuid.uuid4(), scope.clinician_id, request, team_id, tuple(types), since,
              transaction_time, tuple(patients), transaction_time + LIFETIME)
    conn.execute(
        "INSERT INTO fhir_export (id, clinician_id, request, team_id, types, since,"
        " transaction_time, patient_ids, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
        " %s)", (job.id, job.clinician_id, job.request, job.team_id, list(job.types),
                 job.since, job.transaction_time, list(job.patient_ids), job.expires_at))
    return job


def find(conn: Conn, scope: Scope, job_id: uuid.UUID) -> Job | None:
    """The caller's own live job (another's, an expired or a deleted one: None)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT id, clinician_id, request, team_id, types, since, transaction_time,"
            " patient_ids, expires_at FROM fhir_export WHERE id = %s AND clinician_id = %s"
            " AND deleted_at IS NULL AND expires_at > now()",
            (job_id, scope.clinician_id)).fetchone()
    if row is None:
        return None
    return Job(**{**row, "types": tuple(row["types"]),
                  "patient_ids": tuple(int(p) for p in row["patient_ids"])})


def delete(conn: Conn, job: Job) -> None:
    conn.execute("UPDATE fhir_export SET deleted_at = now() WHERE id = %s", (job.id,))


def manifest(job: Job, base_url: str) -> dict[str, Any]:
    """The completion manifest: one NDJSON file per type."""
    return {
        "transactionTime": format_time(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": [{"type": t, "url": f"{base_url}/$export-file/{job.id}/{t}"}
                   for t in job.types],
        "error": [],
    }


def patients_in_scope(conn: Conn, scope: Scope, job: Job) -> list[int]:
    """The job's patients still in the caller's scope (the audit names each)."""
    query = sql.SQL("SELECT p.id FROM patient p WHERE p.id = ANY({}) AND {} ORDER BY p.id"
                    ).format(sql.Literal(list(job.patient_ids)),
                             patient_condition(scope, "p.id"))
    return [int(r[0]) for r in conn.execute(query)]


def _changed(column: str, job: Job) -> sql.Composed:
    """Changed after ``_since`` and at or before the transaction time."""
    out = sql.SQL("{c} <= {t}").format(c=sql.SQL(column), t=sql.Literal(job.transaction_time))
    if job.since is not None:
        out = sql.SQL("{} AND {c} > {s}").format(out, c=sql.SQL(column),
                                                 s=sql.Literal(job.since))
    return out


def _query(resource_type: str, job: Job, patients: Sequence[int]) -> sql.Composed:
    ids = sql.Literal(list(patients))
    match resource_type:
        case "Patient":
            return sql.SQL("SELECT {} FROM patient p WHERE p.id = ANY({})").format(
                store.PATIENT_COLUMNS, ids)
        case "Observation":
            return sql.SQL("SELECT {} FROM reading r WHERE r.patient_id = ANY({}) AND {}"
                           ).format(store.READING_COLUMNS, ids, _changed("r.committed_at", job))
        case "Flag":
            return sql.SQL("SELECT {} FROM alert a WHERE a.category = 'clinical' AND"
                           " a.patient_id = ANY({}) AND {}").format(
                store.ALERT_COLUMNS, ids, _changed("a.updated_at", job))
    raise ValueError(resource_type)


def _resources(conn: Conn, scope: Scope, resource_type: str, job: Job,
               patients: Sequence[int]) -> Iterator[fhir.Resource]:
    if resource_type == "Task":  # a few per patient: not streamed
        yield from store.task_resources(conn, scope, patients)
    elif resource_type == "Communication":
        yield from store.communications(conn, scope, patients)
    elif resource_type == "Device":
        yield from (store.device_resource(r) for r in store.devices(conn, patients))
    elif resource_type == "CareTeam":
        for patient_id, teams in store.care_teams(conn, patients).items():
            yield fhir.care_team(patient_id, teams)
    else:
        rows = store.stream(conn, _query(resource_type, job, patients), chunk=CHUNK)
        if resource_type == "Patient":
            yield from (fhir.patient(r) for r in rows)
        elif resource_type == "Observation":
            for row in rows:
                yield from fhir.observations(row, patient_id=row["patient_id"])
        else:
            for row in rows:
                yield fhir.flag(row, evidence_ids=fhir.evidence_ids(row["readings"] or ()))


def ndjson(conn: Conn, scope: Scope, resource_type: str, job: Job, patients: Sequence[int]
           ) -> Iterator[bytes]:
    """The file's bytes, ``CHUNK`` lines at a time."""
    lines: list[bytes] = []
    for resource in _resources(conn, scope, resource_type, job, patients):
        lines.append(orjson.dumps(resource))
        if len(lines) >= CHUNK:
            yield b"\n".join(lines) + b"\n"
            lines.clear()
    if lines:
        yield b"\n".join(lines) + b"\n"
