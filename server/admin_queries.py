"""What the admin screens list: organisations, teams, clinicians, patients, hubs.

Each takes ``organisations``: the ids the reader answers for (an admin's scope),
or None for everything (``homeward admin``, which holds the database URL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]


def _rows(conn: Conn, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}
            for r in rows]


def organisations(conn: Conn, organisations: list[int] | None = None) -> list[dict[str, Any]]:
    return _rows(conn, "SELECT o.id, o.name, o.created_at,"
                       " (SELECT count(*) FROM team t WHERE t.organisation_id = o.id) AS teams"
                       " FROM organisation o WHERE %(orgs)s::bigint[] IS NULL"
                       " OR o.id = ANY(%(orgs)s) ORDER BY o.id", {"orgs": organisations})


def teams(conn: Conn, organisations: list[int] | None = None,
          team_id: str | None = None) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT t.id, t.organisation_id, t.name, t.kind, t.email, t.webhook_url,"
        " e.escalation_policy, e.fallback_team_id AS fallback_team,"
        " COALESCE((SELECT jsonb_agg(jsonb_build_object('name', s.name,"
        "   'starts', to_char(s.starts, 'HH24:MI'), 'ends', to_char(s.ends, 'HH24:MI'),"
        "   'timezone', s.timezone) ORDER BY s.starts, s.name)"
        "   FROM team_shift s WHERE s.team_id = t.id), '[]') AS shifts,"
        " (SELECT count(*) FROM team_member m JOIN clinician c ON c.id = m.clinician_id"
        "   WHERE m.team_id = t.id AND c.active) AS members"
        " FROM team t LEFT JOIN team_escalation e ON e.team_id = t.id"
        " WHERE (%(orgs)s::bigint[] IS NULL OR t.organisation_id = ANY(%(orgs)s))"
        " AND (%(team)s::text IS NULL OR t.id = %(team)s) ORDER BY t.organisation_id, t.id",
        {"orgs": organisations, "team": team_id})


#: A clinician belongs to an organisation through hers, or her teams'.
CLINICIAN_IN_ORGS = ("(%(orgs)s::bigint[] IS NULL OR c.organisation_id = ANY(%(orgs)s) OR EXISTS"
                     " (SELECT 1 FROM team_member m JOIN team t ON t.id = m.team_id"
                     "  WHERE m.clinician_id = c.id AND t.organisation_id = ANY(%(orgs)s)))")


def clinicians(conn: Conn, organisations: list[int] | None = None,
               clinician_id: int | None = None) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT c.id, c.username, c.display_name, c.email, c.role, c.active,"
        " c.organisation_id, c.password_hash IS NOT NULL AS has_password,"
        " COALESCE((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_member m"
        "   WHERE m.clinician_id = c.id), '{}') AS teams"
        " FROM clinician c WHERE c.role <> 'system' AND " + CLINICIAN_IN_ORGS
        + " AND (%(id)s::bigint IS NULL OR c.id = %(id)s) ORDER BY c.id",
        {"orgs": organisations, "id": clinician_id})


def patients(conn: Conn, organisations: list[int] | None = None,
             patient_id: int | None = None) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT p.id, p.display_name, p.nhs_number, p.date_of_birth::text AS date_of_birth,"
        " p.status,"
        " COALESCE((SELECT array_agg(pt.team_id ORDER BY pt.team_id) FROM patient_team pt"
        "   WHERE pt.patient_id = p.id), '{}') AS care_teams,"
        " (SELECT pt.team_id FROM patient_team pt WHERE pt.patient_id = p.id AND pt.lead)"
        "   AS lead_team,"
        " (SELECT e.hub_id FROM enrolment e WHERE e.patient_id = p.id AND e.valid_to IS NULL"
        "   ORDER BY e.valid_from DESC LIMIT 1) AS hub_id"
        " FROM patient p WHERE (%(orgs)s::bigint[] IS NULL OR p.id IN (SELECT pt.patient_id"
        "   FROM patient_team pt JOIN team t ON t.id = pt.team_id"
        "   WHERE t.organisation_id = ANY(%(orgs)s)))"
        " AND (%(id)s::bigint IS NULL OR p.id = %(id)s) ORDER BY p.id",
        {"orgs": organisations, "id": patient_id})


def hubs(conn: Conn, organisations: list[int] | None = None,
         hub_id: str | None = None) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT h.id, h.organisation_id, h.state, h.created_at, h.revoked_at, h.last_seen_at,"
        " (SELECT e.patient_id FROM enrolment e WHERE e.hub_id = h.id AND e.valid_to IS NULL"
        "   ORDER BY e.valid_from DESC LIMIT 1) AS patient_id,"
        " COALESCE((SELECT jsonb_agg(jsonb_build_object('address', d.address, 'kind', d.kind,"
        "   'name', d.name) ORDER BY d.paired_at, d.address) FROM device d"
        "   WHERE d.hub_id = h.id AND d.removed_at IS NULL), '[]') AS devices"
        " FROM hub h WHERE (%(orgs)s::bigint[] IS NULL OR h.organisation_id = ANY(%(orgs)s))"
        " AND (%(id)s::text IS NULL OR h.id = %(id)s) ORDER BY h.id",
        {"orgs": organisations, "id": hub_id})
