"""Working together, read: hand-overs and tasks with their names (one query each, for the
API, the dashboard's pages and FHIR's Task), the team directory, an alert's open
hand-over, a patient's care team and tasks, and a team's queue of hand-overs, tasks and
invitations.  The changes go through the API (server/api/routes/collaboration.py).
Every list takes its scope from server.access."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from alerts import handovers, tasks
from server import care_team
from server.access import Scope, task_condition, visible_teams

Conn = psycopg.Connection[Any]


def _rows(conn: Conn, query: sql.Composed | str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def team_directory(conn: Conn) -> list[dict[str, Any]]:
    """Every team, by organisation: whom a hand-over, an invitation or a task can go to
    (names only: no patient data)."""
    return _rows(conn, "SELECT t.id, t.name, t.kind, o.name AS organisation FROM team t"
                       " JOIN organisation o ON o.id = t.organisation_id"
                       " ORDER BY o.name, t.name")


_HANDOVERS = sql.SQL(
    "SELECT {cols}, p.display_name AS patient_name, ft.name AS from_team_name,"
    " tt.name AS to_team_name, fo.name AS from_organisation, tor.name AS to_organisation,"
    " a.summary AS alert_summary, a.severity AS alert_severity"
    " FROM handover h JOIN patient p ON p.id = h.patient_id"
    " JOIN team ft ON ft.id = h.from_team JOIN organisation fo ON fo.id = ft.organisation_id"
    " JOIN team tt ON tt.id = h.to_team JOIN organisation tor ON tor.id = tt.organisation_id"
    " LEFT JOIN alert a ON a.id = h.alert_id WHERE {where}"
    " ORDER BY h.offered_at {order}, h.id {order} LIMIT 500")


def handover_rows(conn: Conn, where: Sequence[sql.Composable], *,
                  newest_first: bool = False) -> list[dict[str, Any]]:
    """Hand-overs with their patient's, teams' and organisations' names (the API, the
    pages and FHIR's Task all read them here); ``where`` carries the scope."""
    return _rows(conn, _HANDOVERS.format(cols=sql.SQL(handovers.COLUMNS),
                                         where=sql.SQL(" AND ").join(where),
                                         order=sql.SQL("DESC" if newest_first else "ASC")))


_TASKS = sql.SQL(
    "SELECT {cols}, p.display_name AS patient_name, tm.name AS team_name,"
    " o.name AS organisation, rt.name AS requested_team_name,"
    " rc.display_name AS requested_by_name, cc.display_name AS claimed_by_name,"
    " (t.state IN ('requested', 'claimed') AND t.due_at <= {now}) AS overdue"
    " FROM task t JOIN patient p ON p.id = t.patient_id JOIN team tm ON tm.id = t.team_id"
    " JOIN organisation o ON o.id = tm.organisation_id"
    " LEFT JOIN team rt ON rt.id = t.requested_team"
    " LEFT JOIN clinician rc ON rc.id = t.requested_by"
    " LEFT JOIN clinician cc ON cc.id = t.claimed_by WHERE {where}"
    " ORDER BY (t.state IN ('requested', 'claimed')) DESC, t.due_at, t.id LIMIT 500")


def task_rows(conn: Conn, where: Sequence[sql.Composable], *, at: datetime
              ) -> list[dict[str, Any]]:
    """Tasks with names, open ones first by due time, and whether each is overdue at
    ``at``; ``where`` carries the scope."""
    return _rows(conn, _TASKS.format(cols=sql.SQL(tasks.COLUMNS),
                                     where=sql.SQL(" AND ").join(where), now=sql.Literal(at)))


def alert_handover(conn: Conn, alert_id: int) -> dict[str, Any] | None:
    """The alert's hand-over still waiting for an answer, if any."""
    found = handover_rows(conn, [sql.SQL("h.alert_id = {} AND h.state = 'offered'").format(
        sql.Literal(alert_id))])
    return found[0] if found else None


_OPEN_TASK = sql.SQL("t.state IN ('requested', 'claimed')")


def patient_work(conn: Conn, patient_id: int, *, at: datetime) -> dict[str, Any]:
    """For the patient's page (the caller sees the patient): the care team, invitations
    not yet answered, open tasks and the lead's open hand-over."""
    lead = handover_rows(conn, [sql.SQL("h.patient_id = {} AND h.kind = 'lead' AND"
                                        " h.state = 'offered'").format(
                                            sql.Literal(patient_id))])
    return {
        "members": care_team.members(conn, patient_id),
        "invitations": _rows(conn, "SELECT i.id, i.team_id, t.name AS team_name, i.role,"
                                   " i.invited_at FROM care_team_invitation i"
                                   " JOIN team t ON t.id = i.team_id WHERE i.patient_id = %s"
                                   " AND i.state = 'offered' ORDER BY i.invited_at",
                             (patient_id,)),
        "tasks": task_rows(conn, [_OPEN_TASK, sql.SQL("t.patient_id = {}").format(
            sql.Literal(patient_id))], at=at),
        "lead_handover": lead[0] if lead else None,
    }


def queue_work(conn: Conn, scope: Scope, team: str | None, *, at: datetime
               ) -> dict[str, Any]:
    """For the triage queue: hand-overs offered to and by the caller's teams, their open
    tasks, and the invitations they have to answer (``team``: one of them only)."""
    teams = (sql.SQL("SELECT {}::text").format(sql.Literal(team)) if team is not None
             else visible_teams(scope))
    return {
        "handovers_in": handover_rows(conn, [sql.SQL(
            "h.state = 'offered' AND h.to_team IN ({})").format(teams)]),
        "handovers_out": handover_rows(conn, [sql.SQL(
            "h.state = 'offered' AND h.from_team IN ({})").format(teams)]),
        "tasks": task_rows(conn, [_OPEN_TASK, sql.SQL("t.team_id IN ({})").format(teams),
                                  task_condition(scope)], at=at),
        "invitations": care_team.invitations(conn, scope, team=team, state="offered"),
    }
