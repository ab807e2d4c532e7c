"""Whether the patient's care team has seen a reading: "Seen by Heart Failure 09:12 today".

A reading counts as seen, at the first of these after it arrived (``received_at``):

- a nurse or team lead of a team on the patient's care team opened a view that shows
  every recent reading: the patient's page on the dashboard (``GET /patients/{id}``)
  or the readings API (``GET /api/patients/{id}/readings``).  The access audit already
  records each such request with its time, clinician and outcome, so this asks it,
  and writes nothing of its own.  The team named is that clinician's team on the care
  team (the lead team first), as her teams are now;
- a clinician acknowledged (or resolved) an alert that the reading fired: the alert's
  evidence names it, and the team named is the alert's (out of hours included).

An admin browsing the record, a system client's FHIR read, the patient's own views and
a queue row that only quotes the reading do not count: the patient is told that a
person caring for them has looked, not that a page was served.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

#: The audited actions (method and route) that show a clinician every recent reading.
READING_VIEWS = ("GET /patients/{patient_id}", "GET /api/patients/{patient_id}/readings")
CLINICAL_ROLES = ("nurse", "team_lead")


@dataclass(frozen=True, slots=True)
class Seen:
    at: datetime
    team: str


def seen_by(conn: psycopg.Connection[Any], patient_id: int,
            readings: list[dict[str, Any]]) -> dict[str, Seen]:
    """Per reading id (of ``readings``, each with ``id`` and ``received_at``), when and by
    which team it was first seen; unseen readings are left out."""
    if not readings:
        return {}
    ids = [str(r["id"]) for r in readings]
    arrived = [r["received_at"] for r in readings]
    found: dict[str, Seen] = {}
    views = conn.execute(
        "SELECT r.id, v.at, v.name FROM unnest(%(ids)s::text[], %(arrived)s::timestamptz[])"
        " AS r(id, received_at) CROSS JOIN LATERAL ("
        "  SELECT a.at, t.name FROM access_audit a"
        "  JOIN team_member m ON m.clinician_id = a.clinician_id"
        "  JOIN patient_team pt ON pt.team_id = m.team_id AND pt.patient_id = a.patient_id"
        "  JOIN team t ON t.id = m.team_id"
        "  WHERE a.patient_id = %(p)s AND a.at >= r.received_at AND a.outcome = 'ok'"
        "    AND a.role = ANY(%(roles)s) AND a.action = ANY(%(views)s)"
        "  ORDER BY a.at, pt.lead DESC, t.name LIMIT 1) v",
        {"ids": ids, "arrived": arrived, "p": patient_id, "roles": list(CLINICAL_ROLES),
         "views": list(READING_VIEWS)}).fetchall()
    for reading_id, at, team in views:
        found[reading_id] = Seen(at, team)
    acted = conn.execute(
        "SELECT r.id, v.at, v.name FROM unnest(%(ids)s::text[], %(arrived)s::timestamptz[])"
        " AS r(id, received_at) CROSS JOIN LATERAL ("
        "  SELECT e.at, t.name FROM alert a JOIN team t ON t.id = a.team_id"
        "  JOIN alert_event e ON e.alert_id = a.id"
        "  WHERE a.patient_id = %(p)s"
        "    AND a.readings @> jsonb_build_array(jsonb_build_object('id', r.id))"
        "    AND e.event IN ('acknowledged', 'renewed', 'resolved')"
        "    AND e.clinician_id IS NOT NULL AND e.at >= r.received_at"
        "  ORDER BY e.at LIMIT 1) v",
        {"ids": ids, "arrived": arrived, "p": patient_id}).fetchall()
    for reading_id, at, team in acted:
        if reading_id not in found or at < found[reading_id].at:
            found[reading_id] = Seen(at, team)
    return found
