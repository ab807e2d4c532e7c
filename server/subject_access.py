"""Subject-access export: everything held about one patient, as one JSON bundle.

The bundle (format ``homeward-subject-access/1``) is one JSON object::

    {"format": ..., "generated_at": ..., "patient_id": ...,
     "sections": {"patient": {...}, "care_teams": [...], "status_history": [...],
                  "enrolments": [...], "devices": [...], "readings": [...],
                  "unattributed_readings": [...], "rejected_readings": [...],
                  "alerts": [...], "alert_events": [...], "notifications": [...],
                  "notification_attempts": [...], "notes": [...], "rule_settings": [...],
                  "care_team_history": [...], "care_team_invitations": [...],
                  "handovers": [...], "tasks": [...], "messages": [...],
                  "access_audit": [...]}}

It is written as a stream (readings through a server-side cursor), so a year
of 1 Hz oximetry does not have to fit in memory, and read in one REPEATABLE
READ transaction, so its sections agree with each other.  What it covers is
what ``erase_patient()`` deletes: the two lists are kept side by side in
server/migrations/0300_data_lifecycle.sql and here.  The access audit lists
who (name, role) did what to the record and when; the staff member's network
address is theirs, not the patient's, and is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson
import psycopg
from psycopg.rows import dict_row

from server import audit

Conn = psycopg.Connection[Any]
FORMAT = "homeward-subject-access/1"

#: The patient's hub enrolments as windows (hub, from, to).
_WINDOWS = ("SELECT hub_id, valid_from, coalesce(valid_to, 'infinity') AS valid_to"
            " FROM enrolment WHERE patient_id = %(p)s")

#: Each list section: its name and the query over %(p)s (the patient's id).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("care_teams",
     "SELECT pt.team_id, t.name AS team_name, t.kind, o.name AS organisation, pt.lead,"
     " pt.added_at FROM patient_team pt JOIN team t ON t.id = pt.team_id"
     " JOIN organisation o ON o.id = t.organisation_id WHERE pt.patient_id = %(p)s"
     " ORDER BY pt.team_id"),
    ("status_history",
     "SELECT s.id, s.at, s.status, s.expected_end, s.note, s.team_id,"
     " c.display_name AS by FROM patient_status_event s"
     " LEFT JOIN clinician c ON c.id = s.clinician_id WHERE s.patient_id = %(p)s"
     " ORDER BY s.at, s.id"),
    ("enrolments",
     "SELECT id, hub_id, valid_from, valid_to FROM enrolment WHERE patient_id = %(p)s"
     " ORDER BY valid_from, id"),
    ("devices",
     "SELECT d.hub_id, d.address, d.kind, d.name, d.paired_at, d.removed_at FROM device d"
     " WHERE d.hub_id IN (SELECT hub_id FROM enrolment WHERE patient_id = %(p)s)"
     " ORDER BY d.hub_id, d.address"),
    ("readings",
     "SELECT id, taken_at, kind, hub_id, device, \"values\", flags, raw, received_at,"
     " committed_at FROM reading WHERE patient_id = %(p)s ORDER BY taken_at, id"),
    ("unattributed_readings",
     "SELECT r.id, r.taken_at, r.kind, r.hub_id, r.device, r.\"values\", r.flags, r.raw,"
     " r.received_at, r.committed_at FROM reading r JOIN (" + _WINDOWS + ") w"
     " ON r.hub_id = w.hub_id AND r.taken_at >= w.valid_from AND r.taken_at < w.valid_to"
     " WHERE r.patient_id IS NULL ORDER BY r.taken_at, r.id"),
    ("rejected_readings",
     "SELECT q.id, q.received_at, q.hub_id, q.topic, q.item_index, q.reason, q.item,"
     " encode(q.payload, 'base64') AS payload_base64 FROM quarantine q JOIN (" + _WINDOWS
     + ") w ON q.hub_id = w.hub_id AND q.received_at >= w.valid_from"
     " AND q.received_at < w.valid_to ORDER BY q.received_at, q.id"),
    ("alerts", "SELECT * FROM alert WHERE patient_id = %(p)s ORDER BY opened_at, id"),
    ("alert_events",
     "SELECT v.id, v.alert_id, v.at, v.event, v.actor, c.display_name AS by, v.detail"
     " FROM alert_event v JOIN alert a ON a.id = v.alert_id"
     " LEFT JOIN clinician c ON c.id = v.clinician_id WHERE a.patient_id = %(p)s"
     " ORDER BY v.alert_id, v.id"),
    ("notifications",
     "SELECT x.id, x.alert_id, x.channel, x.target, x.team_id, x.level, x.reason,"
     " x.payload, x.state, x.attempts, x.created_at, x.delivered_at, x.last_error"
     " FROM notification x JOIN alert a ON a.id = x.alert_id WHERE a.patient_id = %(p)s"
     " ORDER BY x.id"),
    ("notification_attempts",
     "SELECT t.id, t.notification_id, t.at, t.ok, t.duration_ms, t.error, t.response"
     " FROM notification_attempt t JOIN notification x ON x.id = t.notification_id"
     " JOIN alert a ON a.id = x.alert_id WHERE a.patient_id = %(p)s ORDER BY t.id"),
    ("notes",
     "SELECT n.id, n.at, n.team_id, c.display_name AS author, n.text FROM patient_note n"
     " LEFT JOIN clinician c ON c.id = n.clinician_id WHERE n.patient_id = %(p)s"
     " ORDER BY n.at, n.id"),
    ("rule_settings",
     "SELECT s.id, s.rule_id, s.enabled, s.params, c.display_name AS set_by, s.set_at,"
     " s.valid_from, s.valid_to, s.note FROM patient_rule_setting s"
     " LEFT JOIN clinician c ON c.id = s.set_by WHERE s.patient_id = %(p)s"
     " ORDER BY s.rule_id, s.valid_from, s.id"),
    # working together (issue 9): the care team's history, hand-overs, tasks, messages
    ("care_team_history",
     "SELECT v.id, v.at, v.team_id, v.event, v.role, v.by_team, c.display_name AS by, v.note"
     " FROM care_team_event v LEFT JOIN clinician c ON c.id = v.clinician_id"
     " WHERE v.patient_id = %(p)s ORDER BY v.at, v.id"),
    ("care_team_invitations",
     "SELECT id, team_id, role, state, note, invited_team, invited_at, decided_at,"
     " decline_reason FROM care_team_invitation WHERE patient_id = %(p)s ORDER BY id"),
    ("handovers",
     "SELECT id, kind, alert_id, from_team, to_team, note, state, offered_at, respond_by,"
     " escalated_at, decided_at, decline_reason FROM handover WHERE patient_id = %(p)s"
     " ORDER BY offered_at, id"),
    ("tasks",
     "SELECT id, team_id, title, detail, priority, due_at, state, requested_team,"
     " requested_at, claimed_at, closed_at, close_note FROM task WHERE patient_id = %(p)s"
     " ORDER BY requested_at, id"),
    ("messages",
     "SELECT m.id, m.direction, m.team_id, c.display_name AS by, m.alert_id, m.reply_to,"
     " m.body, m.needs_confirmation, m.sent_at, m.read_at, m.confirmed_at"
     " FROM patient_message m LEFT JOIN clinician c ON c.id = m.clinician_id"
     " WHERE m.patient_id = %(p)s ORDER BY m.sent_at, m.id"),
    ("access_audit",
     "SELECT a.id, a.at, c.username, c.display_name, a.role, a.action, a.resource,"
     " a.request_id, a.outcome FROM access_audit a"
     " LEFT JOIN clinician c ON c.id = a.clinician_id WHERE a.patient_id = %(p)s"
     " ORDER BY a.at, a.id"),
)
_PATIENT = ("SELECT id, nhs_number, display_name, date_of_birth, status, email, created_at"
            " FROM patient WHERE id = %(p)s")


class PatientNotFound(LookupError):
    pass


def _rows(conn: Conn, query: str, patient_id: int) -> Iterator[dict[str, Any]]:
    with conn.cursor(name=f"sar_{id(query)}", row_factory=dict_row) as cur:
        cur.itersize = 2000
        cur.execute(query, {"p": patient_id})
        yield from cur


def write_bundle(conn: Conn, patient_id: int, out: IO[bytes], *,
                 requested_by: int | None = None,
                 now: datetime | None = None) -> dict[str, int]:
    """Write the patient's bundle to ``out``; returns the rows of each section.

    With ``requested_by`` (a clinician id) the export is audited as
    ``patient.subject_access_export``.  Raises :class:`PatientNotFound`.
    """
    counts: dict[str, int] = {}
    with conn.transaction():
        if conn.autocommit:  # a transaction of our own: one snapshot for every section
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with conn.cursor(row_factory=dict_row) as cur:
            patient = cur.execute(_PATIENT, {"p": patient_id}).fetchone()
        if patient is None:
            raise PatientNotFound(patient_id)
        header = {"format": FORMAT, "generated_at": now or datetime.now(UTC),
                  "patient_id": patient_id}
        out.write(orjson.dumps(header)[:-1] + b',"sections":{"patient":')
        out.write(orjson.dumps(patient))
        counts["patient"] = 1
        for name, query in SECTIONS:
            out.write(b',"' + name.encode() + b'":[')
            n = 0
            for row in _rows(conn, query, patient_id):
                if n:
                    out.write(b",")
                out.write(orjson.dumps(row))
                n += 1
            out.write(b"]")
            counts[name] = n
        out.write(b"}}")
    if requested_by is not None:
        role = conn.execute("SELECT role FROM clinician WHERE id = %s",
                            (requested_by,)).fetchone()
        with conn.transaction():
            audit.record(conn, audit.AuditEntry(
                clinician_id=requested_by, role=role[0] if role else "system",
                action="patient.subject_access_export", resource=f"patient:{patient_id}",
                patient_id=patient_id, request_id=None, client_addr=None, outcome="ok"))
    return counts


def export_bundle(conn: Conn, patient_id: int, **kwargs: Any) -> dict[str, Any]:
    """The bundle as a dict (for tests and small records; large ones: :func:`write_bundle`)."""
    import io

    buffer = io.BytesIO()
    write_bundle(conn, patient_id, buffer, **kwargs)
    result: dict[str, Any] = orjson.loads(buffer.getvalue())
    return result
