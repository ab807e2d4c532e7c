"""The FHIR API's reads: rows for server.fhir.resources, each query scoped by server.access.

Every query that returns patient data takes its condition from
:func:`server.access.patient_condition` or :func:`~server.access.alert_condition`;
nothing here decides who sees what.  Pages are keyset pages (``server.fhir.search``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from server import collaboration_view
from server.access import (
    NotInScope,
    Scope,
    alert_condition,
    handover_condition,
    patient_condition,
    task_condition,
)

from . import resources as fhir
from .search import Bound

Conn = psycopg.Connection[Any]
Row = dict[str, Any]

READING_COLUMNS = sql.SQL(
    'r.id, r.taken_at, r.kind, r.hub_id, r.device, r."values", r.flags, r.received_at,'
    " r.committed_at, r.patient_id")
PATIENT_COLUMNS = sql.SQL("p.id, p.nhs_number, p.display_name, p.date_of_birth, p.status")
ALERT_COLUMNS = sql.SQL(
    "a.id, a.category, a.patient_id, a.rule_id, a.rule, a.severity, a.state, a.summary,"
    " a.opened_at, a.updated_at, a.resolved_at, a.acknowledged_by, a.acknowledged_at,"
    " a.readings, a.team_id")


def _bounds(column: str, bounds: Sequence[Bound]) -> list[sql.Composable]:
    return [sql.SQL("{} {} {}").format(sql.SQL(column), sql.SQL(b.op), sql.Literal(b.at))
            for b in bounds]


def _any_of(column: str, alternatives: Sequence[Sequence[Any]]) -> list[sql.Composable]:
    """AND over repetitions of OR over alternatives: ``column = ANY(...)`` each."""
    return [sql.SQL("{} = ANY({})").format(sql.SQL(column), sql.Literal(list(alts)))
            for alts in alternatives]


def _fetch(conn: Conn, query: sql.Composed) -> list[Row]:
    """Every row of ``query``, as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def _where(parts: Sequence[sql.Composable]) -> sql.Composable:
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")


# -- Patient -------------------------------------------------------------------------------

def patient(conn: Conn, patient_id: int) -> Row:
    """A patient's row; the caller has checked the scope (PatientAccess)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql.SQL("SELECT {} FROM patient p WHERE p.id = %s").format(
            PATIENT_COLUMNS), (patient_id,)).fetchone()
    if row is None:
        raise NotInScope(f"patient {patient_id} not found")
    return row


def patients(conn: Conn, scope: Scope, *, ids: Sequence[Sequence[int]] = (),
             nhs_numbers: Sequence[Sequence[str]] = (), after: int | None = None,
             limit: int) -> list[Row]:
    where = [patient_condition(scope, "p.id"), *_any_of("p.id", ids),
             *_any_of("p.nhs_number", nhs_numbers)]
    if after is not None:
        where.append(sql.SQL("p.id > {}").format(sql.Literal(after)))
    query = sql.SQL("SELECT {} FROM patient p WHERE {} ORDER BY p.id LIMIT {}").format(
        PATIENT_COLUMNS, _where(where), sql.Literal(limit))
    return _fetch(conn, query)


# -- Observation ---------------------------------------------------------------------------

def reading_patient(conn: Conn, scope: Scope, observation_id: str) -> int:
    """The patient of the reading an Observation id names; NotInScope if none in scope."""
    try:
        reading_id, _part = fhir.parse_observation_id(observation_id)
    except ValueError as err:
        raise NotInScope(f"Observation/{observation_id} not found") from err
    query = sql.SQL("SELECT r.patient_id FROM reading r WHERE r.id = {} AND {}").format(
        sql.Literal(reading_id), patient_condition(scope, "r.patient_id"))
    row = conn.execute(query).fetchone()
    if row is None:
        raise NotInScope(f"Observation/{observation_id} not found")
    return int(row[0])


def reading(conn: Conn, reading_id: uuid.UUID) -> Row | None:
    query = sql.SQL("SELECT {} FROM reading r WHERE r.id = %s").format(READING_COLUMNS)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (reading_id,)).fetchone()


def readings(conn: Conn, scope: Scope, *, patients: Sequence[Sequence[int]],
             kinds: Sequence[str], taken: Sequence[Bound], updated: Sequence[Bound],
             as_of: datetime, start: tuple[datetime, uuid.UUID] | None, inclusive: bool,
             descending: bool, limit: int) -> list[Row]:
    """Readings in (taken_at, id) order from ``start``, stored by ``as_of``.

    ``as_of`` is when the search began: a reading committed later is left out of
    every page of that search, so paging neither repeats nor shifts while readings
    arrive (search.py, the cursor)."""
    where = [patient_condition(scope, "r.patient_id"), *_any_of("r.patient_id", patients),
             sql.SQL("r.kind = ANY({})").format(sql.Literal(list(kinds))),
             *_bounds("r.taken_at", taken), *_bounds("r.committed_at", updated),
             sql.SQL("r.committed_at <= {}").format(sql.Literal(as_of))]
    if start is not None:
        where.append(sql.SQL("(r.taken_at, r.id) {} ({}, {})").format(
            sql.SQL(("<" if descending else ">") + ("=" if inclusive else "")),
            sql.Literal(start[0]),
            sql.Literal(start[1])))
    order = sql.SQL("DESC" if descending else "ASC")
    query = sql.SQL("SELECT {} FROM reading r WHERE {} ORDER BY r.taken_at {o}, r.id {o}"
                    " LIMIT {}").format(READING_COLUMNS, _where(where), sql.Literal(limit),
                                        o=order)
    return _fetch(conn, query)


# -- Flag ----------------------------------------------------------------------------------

def alert(conn: Conn, alert_id: int) -> Row | None:
    """An alert's row; the caller has checked the scope (AlertAccess)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("SELECT {} FROM alert a WHERE a.id = %s").format(
            ALERT_COLUMNS), (alert_id,)).fetchone()


def alerts(conn: Conn, scope: Scope, *, patients: Sequence[Sequence[int]],
           states: Sequence[str] | None, updated: Sequence[Bound], after: int | None,
           limit: int) -> list[Row]:
    """Clinical alerts in scope (a system alert is no Flag), by id."""
    where = [sql.SQL("a.category = 'clinical'"), alert_condition(scope),
             *_any_of("a.patient_id", patients), *_bounds("a.updated_at", updated)]
    if states is not None:
        where.append(sql.SQL("a.state = ANY({})").format(sql.Literal(list(states))))
    if after is not None:
        where.append(sql.SQL("a.id > {}").format(sql.Literal(after)))
    query = sql.SQL("SELECT {} FROM alert a WHERE {} ORDER BY a.id LIMIT {}").format(
        ALERT_COLUMNS, _where(where), sql.Literal(limit))
    return _fetch(conn, query)


# -- Device --------------------------------------------------------------------------------

def _hub_patients(scope: Scope) -> sql.Composable:
    """``hub_id`` of every hub that served a patient in scope, with that patient."""
    return sql.SQL("SELECT e.hub_id, e.patient_id, e.valid_from FROM enrolment e WHERE {}"
                   ).format(patient_condition(scope, "e.patient_id"))


def device_patient(conn: Conn, scope: Scope, fhir_id: str) -> tuple[Row, int]:
    """(device or hub row with ``resource``: "device" | "hub", the patient it served
    most recently in scope) for a Device id; NotInScope otherwise.

    A device is in scope while its hub served a patient in scope, at any time: its
    readings in that patient's record point at it."""
    query = sql.SQL(
        "SELECT 'device' AS resource, d.hub_id, d.address, d.kind, d.name, d.paired_at,"
        " d.removed_at, NULL AS id, NULL AS state, NULL AS last_seen_at, e.patient_id"
        " FROM device d JOIN ({hubs}) e ON e.hub_id = d.hub_id"
        " UNION ALL SELECT 'hub', h.id, NULL, NULL, NULL, NULL, NULL, h.id, h.state,"
        " h.last_seen_at, e.patient_id FROM hub h JOIN ({hubs}) e ON e.hub_id = h.id"
        " ORDER BY 1, 2").format(hubs=_hub_patients(scope))
    # The ids are derived (hashes for some), so they are matched here rather than in SQL;
    # a scope has the devices of its patients' hubs, a few per patient.
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(query):
            own = (fhir.device_id(row["hub_id"], row["address"]) if row["resource"] == "device"
                   else fhir.hub_device_id(row["hub_id"]))
            if own == fhir_id:
                return row, int(row["patient_id"])
    raise NotInScope(f"Device/{fhir_id} not found")


def devices(conn: Conn, patient_ids: Sequence[int]) -> list[Row]:
    """The devices (then hubs) of the hubs that served these patients, ``resource`` set."""
    query = (
        "SELECT DISTINCT 'device' AS resource, d.hub_id, d.address, d.kind, d.name,"
        " d.paired_at, d.removed_at, NULL AS id, NULL AS state, NULL::timestamptz AS"
        " last_seen_at FROM device d JOIN enrolment e ON e.hub_id = d.hub_id"
        " WHERE e.patient_id = ANY(%(p)s)"
        " UNION SELECT 'hub', h.id, NULL, NULL, NULL, NULL::timestamptz, NULL::timestamptz,"
        " h.id, h.state, h.last_seen_at FROM hub h JOIN enrolment e ON e.hub_id = h.id"
        " WHERE e.patient_id = ANY(%(p)s) ORDER BY 1 DESC, 2, 3")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, {"p": list(patient_ids)}).fetchall()


def device_resource(row: Row) -> fhir.Resource:
    return fhir.device(row) if row["resource"] == "device" else fhir.hub_device(row)


# -- CareTeam ------------------------------------------------------------------------------

def care_teams(conn: Conn, patient_ids: Sequence[int]) -> dict[int, list[fhir.TeamRow]]:
    """Each patient's care team, lead first."""
    out: dict[int, list[fhir.TeamRow]] = {p: [] for p in patient_ids}
    for row in conn.execute(
            "SELECT pt.patient_id, t.id, t.name, t.kind, o.id, o.name FROM patient_team pt"
            " JOIN team t ON t.id = pt.team_id JOIN organisation o ON o.id = t.organisation_id"
            " WHERE pt.patient_id = ANY(%s) ORDER BY pt.patient_id, pt.lead DESC, t.name",
            (list(patient_ids),)):
        out[int(row[0])].append((row[1], row[2], row[3], int(row[4]), row[5]))
    return out


def patient_ids(conn: Conn, scope: Scope, alternatives: Sequence[Sequence[int]]) -> list[int]:
    """The patients in scope that every repetition of ``patient=`` allows, by id."""
    query = sql.SQL("SELECT p.id FROM patient p WHERE {} ORDER BY p.id").format(
        _where([patient_condition(scope, "p.id"), *_any_of("p.id", alternatives)]))
    return [int(r[0]) for r in conn.execute(query)]


def stream(conn: Conn, query: sql.Composed, *, chunk: int = 2000) -> Iterator[Row]:
    """Rows of ``query`` through a server-side cursor, ``chunk`` at a time: memory stays
    flat however many there are (bulk export)."""
    with conn.transaction(), conn.cursor(name=f"fhir_{uuid.uuid4().hex}",
                                         row_factory=dict_row) as cur:
        cur.itersize = chunk
        cur.execute(query)
        yield from cur


# -- Task and Communication ----------------------------------------------------------------

_MESSAGES = sql.SQL(
    "SELECT m.*, c.display_name AS author_name, tm.name AS team_name FROM patient_message m"
    " LEFT JOIN clinician c ON c.id = m.clinician_id LEFT JOIN team tm ON tm.id = m.team_id"
    " WHERE {} ORDER BY m.sent_at, m.id LIMIT 5000")


def task_resources(conn: Conn, scope: Scope, patient_ids: Sequence[int]) -> list[fhir.Resource]:
    """The patients' tasks and hand-overs as Tasks."""
    ids = sql.Literal(list(patient_ids))
    now = datetime.now(UTC)
    tasks = collaboration_view.task_rows(conn, [
        sql.SQL("t.patient_id = ANY({})").format(ids), task_condition(scope)], at=now)
    handovers = collaboration_view.handover_rows(conn, [
        sql.SQL("h.patient_id = ANY({})").format(ids), handover_condition(scope)])
    return [*(fhir.task(r) for r in tasks), *(fhir.handover_task(r) for r in handovers)]


def _numbered(fhir_id: str, prefix: str) -> int | None:
    head, _, number = fhir_id.partition("-")
    if head != prefix or not number.isascii() or not number.isdigit() or len(number) > 18:
        return None
    return int(number)


def task_resource(conn: Conn, scope: Scope, fhir_id: str) -> tuple[fhir.Resource, int]:
    """(Task, its patient) for ``task-N`` or ``handover-N`` in scope; NotInScope else."""
    if (number := _numbered(fhir_id, "task")) is not None:
        rows = collaboration_view.task_rows(conn, [
            sql.SQL("t.id = {}").format(sql.Literal(number)), task_condition(scope)],
            at=datetime.now(UTC))
        if rows:
            return fhir.task(rows[0]), int(rows[0]["patient_id"])
    elif (number := _numbered(fhir_id, "handover")) is not None:
        rows = collaboration_view.handover_rows(conn, [
            sql.SQL("h.id = {}").format(sql.Literal(number)), handover_condition(scope)])
        if rows:
            return fhir.handover_task(rows[0]), int(rows[0]["patient_id"])
    raise NotInScope(f"Task/{fhir_id} not found")


def communications(conn: Conn, scope: Scope, patient_ids: Sequence[int]
                   ) -> list[fhir.Resource]:
    rows = _fetch(conn, _MESSAGES.format(sql.SQL("m.patient_id = ANY({}) AND {}").format(
        sql.Literal(list(patient_ids)), patient_condition(scope, "m.patient_id"))))
    return [fhir.communication(r) for r in rows]


def communication(conn: Conn, scope: Scope, fhir_id: str) -> tuple[fhir.Resource, int]:
    number = _numbered(fhir_id, "message")
    if number is not None:
        rows = _fetch(conn, _MESSAGES.format(sql.SQL("m.id = {} AND {}").format(
            sql.Literal(number), patient_condition(scope, "m.patient_id"))))
        if rows:
            return fhir.communication(rows[0]), int(rows[0]["patient_id"])
    raise NotInScope(f"Communication/{fhir_id} not found")
