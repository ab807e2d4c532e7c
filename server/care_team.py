"""A patient's care team across organisations: invitations, joining, leaving (issue 9).

A care team lists teams from any organisation, each ``lead`` or ``contributor``
(``patient_team.lead``), exactly one lead at a time.  Access follows it
(server.access): an organisation sees the patient only while one of its teams is on
the care team.  So:

- a team of an organisation that already has a team on the care team joins at once
  (nobody new gains access);
- a team of another organisation is *invited*: its team lead, or an admin of its
  organisation, accepts or declines; until then it sees nothing of the patient;
- removing a team ends its access from that moment (the audit keeps what it saw);
  the lead team cannot be removed (hand the lead over first), nor a team with open
  tasks for the patient.

Who may do what is checked here, against the caller's :class:`~server.access.Scope`:
inviting and removing take a member of a team on the care team (or an admin who sees
the patient); answering an invitation takes the invited team's lead or an admin of
its organisation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from alerts.store import InvalidTransition
from server.access import NotInScope, Scope, require_team, visible_teams

Role = Literal["lead", "contributor"]
Conn = psycopg.Connection[Any]

INVITATION_COLUMNS = (
    "i.id, i.patient_id, i.team_id, i.role, i.state, i.note, i.invited_by, i.invited_team,"
    " i.invited_at, i.decided_by, i.decided_at, i.decline_reason")


class CareTeamRefused(ValueError):
    """A change the care team's rules refuse (422), with a message for a person."""


class NotAllowed(PermissionError):
    """The caller's role or teams may not do this (403)."""


def members(conn: Conn, patient_id: int) -> list[dict[str, Any]]:
    """The care team, lead first: team, name, kind, organisation, role, since."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT t.id AS team_id, t.name, t.kind, o.id AS organisation_id,"
            " o.name AS organisation, CASE WHEN pt.lead THEN 'lead' ELSE 'contributor' END"
            " AS role, pt.added_at FROM patient_team pt JOIN team t ON t.id = pt.team_id"
            " JOIN organisation o ON o.id = t.organisation_id WHERE pt.patient_id = %s"
            " ORDER BY pt.lead DESC, t.name", (patient_id,)).fetchall()


def _on_care_team(scope: Scope, care: list[dict[str, Any]]) -> str | None:
    """The caller's team on the care team (her first), else None."""
    mine = set(scope.team_ids)
    return next((m["team_id"] for m in care if m["team_id"] in mine), None)


def _may_change(scope: Scope, care: list[dict[str, Any]]) -> str | None:
    """The team the caller acts for; NotAllowed unless she is on the care team or an admin
    of one of its organisations."""
    team = _on_care_team(scope, care)
    if team is None and not (scope.is_admin and any(
            m["organisation_id"] in scope.organisation_ids for m in care)):
        raise NotAllowed("only a member of a team on the care team, or its organisation's "
                         "admin, may change it")
    return team


def _event(conn: Conn, patient_id: int, team_id: str, event: str, at: datetime,
           scope: Scope, by_team: str | None, *, role: str | None = None,
           note: str | None = None) -> None:
    conn.execute("INSERT INTO care_team_event (patient_id, team_id, event, role, at,"
                 " clinician_id, by_team, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (patient_id, team_id, event, role, at, scope.clinician_id, by_team, note))


def invite(conn: Conn, scope: Scope, *, patient_id: int, team_id: str, role: Role,
           note: str | None, at: datetime) -> dict[str, Any]:
    """Add ``team_id``: at once within an organisation already on the care team, else
    an invitation its team lead or admin answers.  Returns the invitation."""
    if role not in ("lead", "contributor"):
        raise CareTeamRefused("role is lead or contributor")
    with conn.transaction():
        conn.execute("SELECT 1 FROM patient WHERE id = %s FOR UPDATE", (patient_id,))
        care = members(conn, patient_id)
        by_team = _may_change(scope, care)
        team = conn.execute("SELECT organisation_id FROM team WHERE id = %s",
                            (team_id,)).fetchone()
        if team is None:
            raise CareTeamRefused(f"team {team_id!r} not found")
        if any(m["team_id"] == team_id for m in care):
            raise InvalidTransition(f"team {team_id} is already on the care team")
        if role == "lead" and any(m["role"] == "lead" for m in care):
            raise CareTeamRefused("the care team has a lead: hand the lead over instead "
                                  "(POST /api/patients/{id}/handover)")
        direct = any(m["organisation_id"] == team[0] for m in care)
        try:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO care_team_invitation (patient_id, team_id, role, state, note,"
                    " invited_by, invited_team, invited_at, decided_by, decided_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (patient_id, team_id, role, "accepted" if direct else "offered", note,
                     scope.clinician_id, by_team, at, scope.clinician_id if direct else None,
                     at if direct else None)).fetchone()
        except psycopg.errors.UniqueViolation as err:
            raise InvalidTransition(f"team {team_id} is already invited") from err
        assert row is not None
        if direct:
            _join(conn, scope, patient_id, team_id, role, at, by_team)
        else:
            _event(conn, patient_id, team_id, "invited", at, scope, by_team, role=role,
                   note=note)
    found = invitation(conn, int(row[0]))
    assert found is not None
    return found


def _join(conn: Conn, scope: Scope, patient_id: int, team_id: str, role: str, at: datetime,
          by_team: str | None) -> None:
    conn.execute("INSERT INTO patient_team (patient_id, team_id, lead, added_at)"
                 " VALUES (%s, %s, %s, %s)", (patient_id, team_id, role == "lead", at))
    _event(conn, patient_id, team_id, "joined", at, scope, by_team, role=role)


def invitation(conn: Conn, invitation_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {INVITATION_COLUMNS}, p.display_name AS patient_name, t.name AS team_name,"
            " it.name AS invited_team_name FROM care_team_invitation i"
            " JOIN patient p ON p.id = i.patient_id JOIN team t ON t.id = i.team_id"
            " LEFT JOIN team it ON it.id = i.invited_team WHERE i.id = %s"
            + (" FOR UPDATE OF i" if lock else ""), (invitation_id,)).fetchone()


def invitations(conn: Conn, scope: Scope, *, team: str | None, state: str | None
                ) -> list[dict[str, Any]]:
    """Invitations to the caller's teams (an admin: her organisations'), newest first."""
    where = [sql.SQL("i.team_id IN ({})").format(visible_teams(scope))]
    if team is not None:
        where.append(sql.SQL("i.team_id = {}").format(sql.Literal(team)))
    if state is not None:
        where.append(sql.SQL("i.state = {}").format(sql.Literal(state)))
    query = sql.SQL(
        "SELECT {cols}, p.display_name AS patient_name, t.name AS team_name,"
        " it.name AS invited_team_name FROM care_team_invitation i"
        " JOIN patient p ON p.id = i.patient_id JOIN team t ON t.id = i.team_id"
        " LEFT JOIN team it ON it.id = i.invited_team WHERE {where}"
        " ORDER BY i.invited_at DESC, i.id DESC LIMIT 500").format(
            cols=sql.SQL(INVITATION_COLUMNS), where=sql.SQL(" AND ").join(where))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def _may_answer(conn: Conn, scope: Scope, found: dict[str, Any]) -> None:
    if scope.role in ("team_lead", "admin"):
        try:  # the lead is a member of the team; the admin answers for her organisation's
            require_team(conn, scope, found["team_id"])
            return
        except NotInScope:
            pass
    raise NotAllowed("an invitation is answered by the invited team's lead or an admin of "
                     "its organisation")


def answer(conn: Conn, scope: Scope, invitation_id: int, *, accept: bool,
           reason: str | None, at: datetime) -> dict[str, Any]:
    if not accept and not (reason or "").strip():
        raise CareTeamRefused("a declined invitation needs a reason")
    with conn.transaction():
        found = invitation(conn, invitation_id, lock=True)
        if found is None:
            raise CareTeamRefused(f"invitation {invitation_id} not found")
        _may_answer(conn, scope, found)
        if found["state"] != "offered":
            raise InvalidTransition(f"invitation {invitation_id} is {found['state']}")
        conn.execute("UPDATE care_team_invitation SET state = %s, decided_by = %s,"
                     " decided_at = %s, decline_reason = %s WHERE id = %s",
                     ("accepted" if accept else "declined", scope.clinician_id, at,
                      None if accept else (reason or "").strip(), invitation_id))
        if accept:
            role = found["role"]
            if role == "lead" and conn.execute(
                    "SELECT 1 FROM patient_team WHERE patient_id = %s AND lead",
                    (found["patient_id"],)).fetchone():
                role = "contributor"  # a lead was set meanwhile: exactly one lead
            _join(conn, scope, found["patient_id"], found["team_id"], role, at,
                  found["team_id"])
        else:
            _event(conn, found["patient_id"], found["team_id"], "declined", at, scope,
                   found["team_id"], note=(reason or "").strip())
    result = invitation(conn, invitation_id)
    assert result is not None
    return result


def remove(conn: Conn, scope: Scope, *, patient_id: int, team_id: str, at: datetime) -> None:
    """Take ``team_id`` off the care team: its access ends now."""
    with conn.transaction():
        conn.execute("SELECT 1 FROM patient WHERE id = %s FOR UPDATE", (patient_id,))
        care = members(conn, patient_id)
        by_team = _may_change(scope, care)
        member = next((m for m in care if m["team_id"] == team_id), None)
        if member is None:
            raise CareTeamRefused(f"team {team_id} is not on the care team")
        if member["role"] == "lead":
            raise InvalidTransition(f"team {team_id} is the lead: hand the lead over to "
                                    "another team first")
        open_tasks = conn.execute(
            "SELECT count(*) FROM task WHERE patient_id = %s AND team_id = %s"
            " AND state IN ('requested', 'claimed')", (patient_id, team_id)).fetchone()
        if open_tasks and open_tasks[0]:
            raise InvalidTransition(f"team {team_id} has {open_tasks[0]} open task(s) for "
                                    "this patient: complete, decline or cancel them first")
        conn.execute("DELETE FROM patient_team WHERE patient_id = %s AND team_id = %s",
                     (patient_id, team_id))
        conn.execute("UPDATE care_team_invitation SET state = 'cancelled', decided_at = %s,"
                     " decided_by = %s WHERE patient_id = %s AND team_id = %s"
                     " AND state = 'offered'", (at, scope.clinician_id, patient_id, team_id))
        _event(conn, patient_id, team_id, "left", at, scope, by_team)
