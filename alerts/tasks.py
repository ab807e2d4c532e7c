"""Tasks: a clinician asks a team (another, or her own) for an action on a patient
(issue 9, docs/collaboration.md).

States: ``requested`` -> ``claimed`` (by a member of the team) -> ``completed`` (with a
note); ``requested``/``claimed`` -> ``declined`` (with a reason) or ``cancelled`` (by
the requester's side).  A task still open at its due time is overdue: :func:`tick`
raises a system alert about the patient, held by the owning team, so the team's
escalation policy and channels (the notification outbox) carry it to a person; it
closes when the task does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg.rows import dict_row

from alerts.store import InvalidTransition, close_system_alert

if TYPE_CHECKING:
    from alerts.notify import Notifier

PRIORITIES = ("routine", "urgent", "asap", "stat")  # FHIR Task.priority (request-priority)
OPEN_STATES = ("requested", "claimed")
Action = Literal["claim", "complete", "decline", "cancel"]
#: action -> (states it may leave, state it enters)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "claim": (("requested",), "claimed"),
    "complete": (OPEN_STATES, "completed"),
    "decline": (OPEN_STATES, "declined"),
    "cancel": (OPEN_STATES, "cancelled"),
}
COLUMNS = ("t.id, t.patient_id, t.team_id, t.title, t.detail, t.priority, t.due_at, t.state,"
           " t.requested_by, t.requested_team, t.requested_at, t.alert_id, t.claimed_by,"
           " t.claimed_at, t.closed_by, t.closed_at, t.close_note, t.overdue_alert_id")


class TaskRefused(ValueError):
    """A task that cannot be made or changed as asked (422), with a message for a person."""


@dataclass(frozen=True, slots=True)
class NewTask:
    patient_id: int
    team_id: str
    title: str
    due_at: datetime
    detail: str | None = None
    priority: str = "routine"
    alert_id: int | None = None


def get(conn: psycopg.Connection[Any], task_id: int, *, lock: bool = False
        ) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {COLUMNS} FROM task t WHERE t.id = %s"
                           + (" FOR UPDATE" if lock else ""), (task_id,)).fetchone()


def create(conn: psycopg.Connection[Any], new: NewTask, *, clinician_id: int,
           requested_team: str | None, at: datetime) -> dict[str, Any]:
    title = new.title.strip()
    if not title:
        raise TaskRefused("a task needs a title")
    if new.priority not in PRIORITIES:
        raise TaskRefused(f"priority is one of {', '.join(PRIORITIES)}")
    if new.due_at.tzinfo is None:
        raise TaskRefused("the due time needs a time zone (RFC 3339)")
    if conn.execute("SELECT 1 FROM team WHERE id = %s", (new.team_id,)).fetchone() is None:
        raise TaskRefused(f"team {new.team_id!r} not found")
    if new.alert_id is not None and conn.execute(
            "SELECT 1 FROM alert WHERE id = %s AND patient_id = %s",
            (new.alert_id, new.patient_id)).fetchone() is None:
        raise TaskRefused(f"alert {new.alert_id} is not this patient's")
    row = conn.execute(
        "INSERT INTO task (patient_id, team_id, title, detail, priority, due_at, requested_by,"
        " requested_team, requested_at, alert_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s) RETURNING id",
        (new.patient_id, new.team_id, title[:200], (new.detail or "").strip() or None,
         new.priority, new.due_at, clinician_id, requested_team, at, new.alert_id)).fetchone()
    assert row is not None
    found = get(conn, int(row[0]))
    assert found is not None
    return found


def change(conn: psycopg.Connection[Any], task_id: int, action: Action, *, clinician_id: int,
           at: datetime, note: str | None = None) -> dict[str, Any]:
    """Claim, complete (with a note), decline (with a reason) or cancel a task."""
    leaves, enters = TRANSITIONS[action]
    if action in ("complete", "decline") and not (note or "").strip():
        raise TaskRefused("completing a task needs a note" if action == "complete"
                          else "declining a task needs a reason")
    with conn.transaction():
        found = get(conn, task_id, lock=True)
        if found is None:
            raise TaskRefused(f"task {task_id} not found")
        if found["state"] not in leaves:
            raise InvalidTransition(f"task {task_id} is {found['state']}: it cannot be "
                                    f"{enters}")
        if action == "claim":
            conn.execute("UPDATE task SET state = 'claimed', claimed_by = %s, claimed_at = %s"
                         " WHERE id = %s", (clinician_id, at, task_id))
        else:
            conn.execute("UPDATE task SET state = %s, closed_by = %s, closed_at = %s,"
                         " close_note = %s WHERE id = %s",
                         (enters, clinician_id, at, (note or "").strip() or None, task_id))
            if found["overdue_alert_id"] is not None:
                close_system_alert(conn, found["overdue_alert_id"], at=at,
                                   why=f"task {task_id} {enters}")
    result = get(conn, task_id)
    assert result is not None
    return result


def tick(conn: psycopg.Connection[Any], notifier: Notifier, now: datetime, *,
         limit: int = 100) -> int:
    """Raise an alert at the owning team for every open task past its due time."""
    done = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for task in cur.execute(
                f"SELECT {COLUMNS}, p.display_name AS patient_name FROM task t"
                " JOIN patient p ON p.id = t.patient_id"
                " WHERE t.state IN ('requested', 'claimed') AND t.overdue_alert_id IS NULL"
                " AND t.due_at <= %s ORDER BY t.due_at FOR UPDATE OF t SKIP LOCKED LIMIT %s",
                (now, limit)).fetchall():
            late = int((now - task["due_at"]).total_seconds() // 60)
            alert_id = notifier.raise_system_alert(
                conn, f"system.task_overdue.{task['id']}",
                f"Task overdue{f' by {late} min' if late else ''} for "
                f"{task['patient_name']}: {task['title']}"
                + (" (claimed, not completed)" if task["state"] == "claimed" else ""),
                team_id=task["team_id"], at=now,
                severity="amber" if task["priority"] == "routine" else "red",
                patient_id=task["patient_id"],
                detail={"task_id": task["id"], "due_at": task["due_at"].isoformat(),
                        "priority": task["priority"]})
            conn.execute("UPDATE task SET overdue_alert_id = %s WHERE id = %s",
                         (alert_id, task["id"]))
            done += 1
    return done
