"""Who may see what: the one access model (DESIGN.md, "People, access and working together").

A clinician sees a patient while one of her teams is on the patient's care
team (``patient_team``); an admin sees every patient whose care team includes
a team of her organisation.  Alerts, readings, notes, timelines, series and
exports follow the patient; a system alert (no patient) follows its team.
An alert routed to a team outside the care team (out of hours, a fallback) is
seen by that team, and its patient while the alert is active; a team offered a
hand-over sees its patient until it answers.  A system client
(role ``system``: a GP system's FHIR client) sees what an admin of its organisation
sees, through ``/fhir`` only, read-only.
Hubs and the quarantine (raw payloads may hold patient data) are admin-only.

Everything here is pure SQL composition over a :class:`Scope`; the API turns
it into a dependency (``server.api.scope``) and every query that returns
patient data takes its condition from :func:`patient_condition` or
:func:`alert_condition`, never from a filter of its own.  Anything outside a
caller's scope is answered as if it did not exist (:class:`NotInScope`, 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

Role = Literal["nurse", "team_lead", "admin", "system"]
ROLES: tuple[Role, ...] = ("nurse", "team_lead", "admin", "system")


class NotInScope(LookupError):
    """The thing asked for is outside the caller's scope (or does not exist): 404."""


class RoleRequired(PermissionError):
    """The caller's role may not do this at all (e.g. a nurse listing hubs): 403."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What one signed-in clinician may see, resolved once per request."""

    clinician_id: int
    username: str
    display_name: str
    role: Role
    #: The organisations an admin answers for (hers, or her teams').
    organisation_ids: tuple[int, ...]
    #: Her teams, in name order (team id, name).
    teams: tuple[tuple[str, str], ...]

    @property
    def team_ids(self) -> list[str]:
        return [team_id for team_id, _ in self.teams]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def organisation_wide(self) -> bool:
        """Sees every patient of its organisations: an admin, or a system client (a
        FHIR client of a GP system or shared care record, read-only, ``/fhir`` only)."""
        return self.role in ("admin", "system")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise RoleRequired("this needs the admin role")


def load_scope(conn: psycopg.Connection[Any], clinician_id: int) -> Scope | None:
    """The scope of an active clinician, or None (unknown or deactivated)."""
    row = conn.execute(
        "SELECT c.username, c.display_name, c.role,"
        " array_remove(array_agg(DISTINCT t.organisation_id)"
        "   || array_agg(DISTINCT c.organisation_id), NULL),"
        " COALESCE(jsonb_agg(jsonb_build_array(t.id, t.name) ORDER BY t.name)"
        "   FILTER (WHERE t.id IS NOT NULL), '[]')"
        " FROM clinician c"
        " LEFT JOIN team_member m ON m.clinician_id = c.id"
        " LEFT JOIN team t ON t.id = m.team_id"
        " WHERE c.id = %s AND c.active GROUP BY c.id", (clinician_id,)).fetchone()
    if row is None:
        return None
    username, display_name, role, organisations, teams = row
    return Scope(clinician_id=clinician_id, username=username, display_name=display_name,
                 role=role, organisation_ids=tuple(sorted(set(organisations))),
                 teams=tuple((t[0], t[1]) for t in teams))


#: The alert states in which the team an alert is routed to sees its patient.
ACTIVE_STATES = ("open", "acknowledged")


def visible_patients(scope: Scope) -> sql.Composed:
    """``SELECT patient_id ...`` of every patient the scope may see: the one place
    that says which patients those are.

    Her teams' care-team patients, and the patients of the active alerts routed to
    her teams: routing sends alerts to teams that are not on the care team (the
    out-of-hours service at night, a fallback team), whose nurses must be able to
    open the record to act on them.  That access ends when the alert is resolved.  And
    the patients of hand-overs offered to her teams, while the offer stands (a team
    decides on what it can read), and of alerts her teams handed over, while the alert
    is active (the sender follows what it handed over; issue 9)."""
    if scope.organisation_wide:
        return sql.SQL(
            "SELECT pt.patient_id FROM patient_team pt JOIN team t ON t.id = pt.team_id"
            " WHERE t.organisation_id = ANY({orgs})"
            " UNION ALL SELECT a.patient_id FROM alert a JOIN team t ON t.id = a.team_id"
            " WHERE t.organisation_id = ANY({orgs}) AND a.patient_id IS NOT NULL"
            " AND a.state = ANY({states})"
            " UNION ALL SELECT h.patient_id FROM handover h JOIN team t ON t.id = h.to_team"
            " WHERE t.organisation_id = ANY({orgs}) AND h.state = 'offered'"
            " UNION ALL SELECT h.patient_id FROM handover h JOIN team t ON t.id = h.from_team"
            " JOIN alert a ON a.id = h.alert_id WHERE t.organisation_id = ANY({orgs})"
            " AND a.state = ANY({states})").format(
                orgs=sql.Literal(list(scope.organisation_ids)),
                states=sql.Literal(list(ACTIVE_STATES)))
    return sql.SQL(
        "SELECT pt.patient_id FROM patient_team pt WHERE pt.team_id = ANY({teams})"
        " UNION ALL SELECT a.patient_id FROM alert a WHERE a.team_id = ANY({teams})"
        " AND a.patient_id IS NOT NULL AND a.state = ANY({states})"
        " UNION ALL SELECT h.patient_id FROM handover h WHERE h.to_team = ANY({teams})"
        " AND h.state = 'offered'"
        " UNION ALL SELECT h.patient_id FROM handover h JOIN alert a ON a.id = h.alert_id"
        " WHERE h.from_team = ANY({teams}) AND a.state = ANY({states})").format(
            teams=sql.Literal(scope.team_ids), states=sql.Literal(list(ACTIVE_STATES)))


def visible_teams(scope: Scope) -> sql.Composed:
    """``SELECT id FROM team ...`` of the teams whose system alerts the scope sees."""
    if scope.organisation_wide:
        return sql.SQL("SELECT id FROM team WHERE organisation_id = ANY({})").format(
            sql.Literal(list(scope.organisation_ids)))
    return sql.SQL("SELECT unnest({}::text[])").format(sql.Literal(scope.team_ids))


def patient_condition(scope: Scope, column: str = "patient_id") -> sql.Composed:
    """A WHERE condition: ``column`` names a patient in scope."""
    return sql.SQL("{} IN ({})").format(sql.SQL(column), visible_patients(scope))


def alert_condition(scope: Scope, alias: str = "a") -> sql.Composed:
    """A WHERE condition on an alert row: its patient is in scope, or it is routed to a
    team in scope (a system alert, or a patient's alert sent to a team outside the care
    team, which keeps seeing the alert it handled once it is resolved; or handed over by
    one of her teams, which keeps seeing it too)."""
    return sql.SQL("({patient} IN ({patients}) OR {team} IN ({teams}) OR {id} IN ("
                   "SELECT h.alert_id FROM handover h WHERE h.from_team IN ({teams})))"
                   ).format(patient=sql.Identifier(alias, "patient_id"),
                            team=sql.Identifier(alias, "team_id"),
                            id=sql.Identifier(alias, "id"),
                            patients=visible_patients(scope), teams=visible_teams(scope))


def require_patient(conn: psycopg.Connection[Any], scope: Scope, patient_id: int) -> None:
    """NotInScope unless the patient exists and is in scope."""
    query = sql.SQL("SELECT 1 FROM patient WHERE id = {} AND {}").format(
        sql.Literal(patient_id), patient_condition(scope, "id"))
    if conn.execute(query).fetchone() is None:
        raise NotInScope(f"patient {patient_id} not found")


def require_alert(conn: psycopg.Connection[Any], scope: Scope, alert_id: int) -> int | None:
    """The alert's patient id (None for a system alert); NotInScope unless in scope."""
    query = sql.SQL("SELECT a.patient_id FROM alert a WHERE a.id = {} AND {}").format(
        sql.Literal(alert_id), alert_condition(scope))
    row = conn.execute(query).fetchone()
    if row is None:
        raise NotInScope(f"alert {alert_id} not found")
    return None if row[0] is None else int(row[0])


def require_team(conn: psycopg.Connection[Any], scope: Scope, team_id: str) -> None:
    """NotInScope unless the team is one of the caller's (an admin: of her organisations).
    What a team's own reports need (its shift report): its members, and its admins."""
    query = sql.SQL("SELECT 1 WHERE {} IN ({})").format(sql.Literal(team_id),
                                                        visible_teams(scope))
    if conn.execute(query).fetchone() is None:
        raise NotInScope(f"team {team_id} not found")


def patient_ids_in_scope(conn: psycopg.Connection[Any], scope: Scope) -> set[int]:
    """Every patient id in scope (for filtering a live stream without a query per event)."""
    return {int(r[0]) for r in conn.execute(visible_patients(scope)).fetchall()}


def _patient_of(conn: psycopg.Connection[Any], query: sql.Composed, what: str) -> int:
    """The patient id ``query`` finds; NotInScope (``what`` not found) when it finds none."""
    row = conn.execute(query).fetchone()
    if row is None:
        raise NotInScope(f"{what} not found")
    return int(row[0])


def require_invitation(conn: psycopg.Connection[Any], scope: Scope, invitation_id: int) -> int:
    """The patient of a care-team invitation to one of the caller's teams (an admin: her
    organisations'), or one about a patient in scope; NotInScope otherwise."""
    query = sql.SQL("SELECT i.patient_id FROM care_team_invitation i WHERE i.id = {}"
                    " AND (i.team_id IN ({}) OR {})").format(
        sql.Literal(invitation_id), visible_teams(scope),
        patient_condition(scope, "i.patient_id"))
    return _patient_of(conn, query, f"invitation {invitation_id}")


def handover_condition(scope: Scope, alias: str = "h") -> sql.Composed:
    """A hand-over the caller sees: from or to one of her teams, or about a patient in
    scope (the care team sees what is handed over about its patient)."""
    return sql.SQL("({f} IN ({teams}) OR {t} IN ({teams}) OR {patient})").format(
        f=sql.Identifier(alias, "from_team"), t=sql.Identifier(alias, "to_team"),
        teams=visible_teams(scope), patient=patient_condition(scope, f"{alias}.patient_id"))


def task_condition(scope: Scope, alias: str = "t") -> sql.Composed:
    """A task the caller sees: its patient is in scope (a task is asked of a team on the
    care team), or it was asked by one of her teams."""
    return sql.SQL("({patient} OR {req} IN ({teams}))").format(
        patient=patient_condition(scope, f"{alias}.patient_id"),
        req=sql.Identifier(alias, "requested_team"), teams=visible_teams(scope))


def require_handover(conn: psycopg.Connection[Any], scope: Scope, handover_id: int) -> int:
    query = sql.SQL("SELECT h.patient_id FROM handover h WHERE h.id = {} AND {}").format(
        sql.Literal(handover_id), handover_condition(scope))
    return _patient_of(conn, query, f"hand-over {handover_id}")


def require_task(conn: psycopg.Connection[Any], scope: Scope, task_id: int) -> int:
    query = sql.SQL("SELECT t.patient_id FROM task t WHERE t.id = {} AND {}").format(
        sql.Literal(task_id), task_condition(scope))
    return _patient_of(conn, query, f"task {task_id}")
