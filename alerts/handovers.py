"""Hand-overs: an alert, or the lead responsibility for a patient, offered to another team
with an SBAR note, and what happens until somebody there answers (issue 9, docs/collaboration.md).

States: ``offered`` -> ``accepted`` | ``declined`` (with a reason) | ``expired`` (what
was handed over ended first: the alert resolved, the patient discharged).

The rules that keep it from being dropped:

- Until it is accepted the sending team keeps it: the alert stays on its queue, under
  its escalation, which keeps running.
- Unanswered by ``respond_by`` (the receiving team's ``handover_accept_minutes``), it
  escalates at the receiving team: a system alert about the patient, held by that team,
  under that team's escalation policy and channels (:func:`tick`), and the sender is
  told by e-mail.  It can still be accepted or declined; either closes that alert.
- On acceptance of an alert the alert moves to the receiving team at once (its queue,
  its scope), and the alert worker then enters the receiving team's escalation at its
  first level (:func:`apply_accepted`: the routing tree is the worker's).  On
  acceptance of the lead, the receiving team becomes the lead of the care team
  (joining it if it was not on it) and the sending team stays as a contributor.

Functions that change state take the connection of the caller's transaction; the
API checks who may call them (a member of the sending team offers; of the receiving
team answers) and these check what may happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts.events import record_event
from alerts.outbox import enqueue_message
from alerts.store import InvalidTransition, close_system_alert

if TYPE_CHECKING:
    from alerts.notify import Notifier

SBAR = ("situation", "background", "assessment", "recommendation")
NOTE_MAX = 2000
Kind = Literal["alert", "lead"]

COLUMNS = ("h.id, h.kind, h.alert_id, h.patient_id, h.from_team, h.to_team, h.note, h.state,"
           " h.offered_by, h.offered_at, h.respond_by, h.escalated_at, h.escalation_alert_id,"
           " h.decided_by, h.decided_at, h.decline_reason, h.applied_at")


class HandoverRefused(ValueError):
    """A hand-over that cannot be made as asked (422), with a message for a person."""


@dataclass(frozen=True, slots=True)
class Offer:
    kind: Kind
    patient_id: int
    from_team: str
    to_team: str
    note: dict[str, str]
    alert_id: int | None = None


def check_note(note: dict[str, Any]) -> dict[str, str]:
    """The four SBAR parts, each a non-empty text (a hand-over nobody can act on helps
    nobody)."""
    missing = [k for k in SBAR if not isinstance(note.get(k), str) or not note[k].strip()]
    if missing:
        raise HandoverRefused(f"the SBAR note needs {', '.join(missing)}")
    extra = sorted(set(note) - set(SBAR))
    if extra:
        raise HandoverRefused(f"the SBAR note has no part {', '.join(extra)}")
    too_long = [k for k in SBAR if len(note[k]) > NOTE_MAX]
    if too_long:
        raise HandoverRefused(f"{', '.join(too_long)}: at most {NOTE_MAX} characters")
    return {k: note[k].strip() for k in SBAR}


def get(conn: psycopg.Connection[Any], handover_id: int, *, lock: bool = False
        ) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {COLUMNS} FROM handover h WHERE h.id = %s"
                           + (" FOR UPDATE" if lock else ""), (handover_id,)).fetchone()


def offer_for_alert(conn: psycopg.Connection[Any], alert_id: int) -> tuple[int, str]:
    """(patient, team holding it) of an alert that can be handed over; else refused."""
    row = conn.execute("SELECT patient_id, team_id, state, category FROM alert WHERE id = %s"
                       " FOR UPDATE", (alert_id,)).fetchone()
    if row is None:
        raise HandoverRefused(f"alert {alert_id} not found")
    patient_id, team_id, state, category = row
    if patient_id is None or category != "clinical":
        raise HandoverRefused("only a patient's clinical alert can be handed over")
    if state not in ("open", "acknowledged"):
        raise InvalidTransition(f"alert {alert_id} is {state}: there is nothing to hand over")
    if team_id is None:
        raise HandoverRefused(f"alert {alert_id} is held by no team")
    return int(patient_id), str(team_id)


def lead_team(conn: psycopg.Connection[Any], patient_id: int) -> str | None:
    row = conn.execute("SELECT team_id FROM patient_team WHERE patient_id = %s AND lead",
                       (patient_id,)).fetchone()
    return None if row is None else str(row[0])


def offer(conn: psycopg.Connection[Any], what: Offer, *, clinician_id: int,
          at: datetime) -> dict[str, Any]:
    """Record the offer; the receiving team has its ``handover_accept_minutes`` to answer."""
    if what.from_team == what.to_team:
        raise HandoverRefused("a team cannot hand over to itself")
    row = conn.execute("SELECT handover_accept_minutes FROM team WHERE id = %s",
                       (what.to_team,)).fetchone()
    if row is None:
        raise HandoverRefused(f"team {what.to_team!r} not found")
    respond_by = at + timedelta(minutes=int(row[0]))
    note = check_note(what.note)
    try:
        with conn.transaction():
            inserted = conn.execute(
                "INSERT INTO handover (kind, alert_id, patient_id, from_team, to_team, note,"
                " offered_by, offered_at, respond_by) VALUES (%s, %s, %s, %s, %s, %s::jsonb,"
                " %s, %s, %s) RETURNING id",
                (what.kind, what.alert_id, what.patient_id, what.from_team, what.to_team,
                 orjson.dumps(note).decode(), clinician_id, at, respond_by)).fetchone()
    except psycopg.errors.UniqueViolation as err:
        raise InvalidTransition("a hand-over of this is already offered: it must be "
                                "answered first") from err
    assert inserted is not None
    found = get(conn, int(inserted[0]))
    assert found is not None
    return found


def _decide(conn: psycopg.Connection[Any], handover_id: int) -> dict[str, Any]:
    found = get(conn, handover_id, lock=True)
    if found is None:
        raise HandoverRefused(f"hand-over {handover_id} not found")
    if found["state"] != "offered":
        raise InvalidTransition(f"hand-over {handover_id} is {found['state']}")
    return found


def accept(conn: psycopg.Connection[Any], handover_id: int, *, clinician_id: int,
           at: datetime) -> dict[str, Any]:
    with conn.transaction():
        found = _decide(conn, handover_id)
        if found["kind"] == "alert" and not _alert_active(conn, found["alert_id"]):
            _finish(conn, found, "expired", None, at, "the alert was resolved before anyone "
                                                      "accepted it")
            raise InvalidTransition(f"hand-over {handover_id} expired: its alert was "
                                    "resolved meanwhile")
        _finish(conn, found, "accepted", clinician_id, at, None)
        if found["kind"] == "alert":
            _move_alert(conn, found, clinician_id, at)
        else:
            _move_lead(conn, found, clinician_id, at)
        _tell_sender(conn, found, at, "accepted",
                     f"{_team_name(conn, found['to_team'])} accepted the hand-over.")
    result = get(conn, handover_id)
    assert result is not None
    return result


def decline(conn: psycopg.Connection[Any], handover_id: int, *, clinician_id: int,
            reason: str, at: datetime) -> dict[str, Any]:
    if not reason.strip():
        raise HandoverRefused("a declined hand-over needs a reason")
    with conn.transaction():
        found = _decide(conn, handover_id)
        _finish(conn, found, "declined", clinician_id, at, reason.strip())
        _tell_sender(conn, found, at, "declined",
                     f"{_team_name(conn, found['to_team'])} declined the hand-over: "
                     f"{reason.strip()}\nIt stays with your team.")
    result = get(conn, handover_id)
    assert result is not None
    return result


def _finish(conn: psycopg.Connection[Any], found: dict[str, Any], state: str,
            clinician_id: int | None, at: datetime, reason: str | None) -> None:
    conn.execute("UPDATE handover SET state = %s, decided_by = %s, decided_at = %s,"
                 " decline_reason = %s WHERE id = %s",
                 (state, clinician_id, at, reason, found["id"]))
    if found["escalation_alert_id"] is not None:
        close_system_alert(conn, found["escalation_alert_id"], at=at,
                           why=f"hand-over {found['id']} {state}")


def _alert_active(conn: psycopg.Connection[Any], alert_id: int) -> bool:
    row = conn.execute("SELECT state FROM alert WHERE id = %s FOR UPDATE", (alert_id,)
                       ).fetchone()
    return row is not None and row[0] in ("open", "acknowledged")


def _move_alert(conn: psycopg.Connection[Any], found: dict[str, Any], clinician_id: int,
                at: datetime) -> None:
    """The alert is the receiving team's from now: its queue and scope at once, its
    escalation when the worker applies it (:func:`apply_accepted`)."""
    # the sender's escalation stops here; the receiving team's starts when applied
    row = conn.execute("UPDATE alert SET team_id = %s, updated_at = %s,"
                       " next_escalation_at = NULL WHERE id = %s"
                       " RETURNING state, severity, patient_id",
                       (found["to_team"], at, found["alert_id"])).fetchone()
    assert row is not None
    record_event(conn, found["alert_id"], "handed_over", at=at, clinician_id=clinician_id,
                 detail={"handover_id": found["id"], "from": found["from_team"],
                         "to": found["to_team"]},
                 state=row[0], severity=row[1], team_id=found["to_team"], patient_id=row[2])


def _move_lead(conn: psycopg.Connection[Any], found: dict[str, Any], clinician_id: int,
               at: datetime) -> None:
    patient_id, to_team = found["patient_id"], found["to_team"]
    conn.execute("UPDATE patient_team SET lead = false WHERE patient_id = %s AND lead",
                 (patient_id,))
    conn.execute("INSERT INTO patient_team (patient_id, team_id, lead, added_at)"
                 " VALUES (%s, %s, true, %s) ON CONFLICT (patient_id, team_id)"
                 " DO UPDATE SET lead = true", (patient_id, to_team, at))
    for team, event in ((to_team, "lead"), (found["from_team"], "contributor")):
        conn.execute("INSERT INTO care_team_event (patient_id, team_id, event, role, at,"
                     " clinician_id, by_team, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                     (patient_id, team, event, event, at, clinician_id, to_team,
                      f"lead handed over (hand-over {found['id']})"))


def _team_name(conn: psycopg.Connection[Any], team_id: str) -> str:
    row = conn.execute("SELECT name FROM team WHERE id = %s", (team_id,)).fetchone()
    return str(row[0]) if row else team_id


def _what(conn: psycopg.Connection[Any], found: dict[str, Any]) -> str:
    row = conn.execute("SELECT display_name FROM patient WHERE id = %s",
                       (found["patient_id"],)).fetchone()
    name = row[0] if row else f"patient {found['patient_id']}"
    if found["kind"] == "lead":
        return f"lead responsibility for {name}"
    summary = conn.execute("SELECT summary FROM alert WHERE id = %s",
                           (found["alert_id"],)).fetchone()
    return f"alert {found['alert_id']} ({summary[0] if summary else ''}) for {name}"


def _tell_sender(conn: psycopg.Connection[Any], found: dict[str, Any], at: datetime,
                 outcome: str, text: str) -> None:
    """E-mail the nurse who offered it (or her team's address) through the outbox."""
    row = conn.execute(
        "SELECT COALESCE((SELECT email FROM clinician WHERE id = %s),"
        " (SELECT email FROM team WHERE id = %s))",
        (found["offered_by"], found["from_team"])).fetchone()
    if row is None or not row[0]:
        return  # the hand-over page and the timeline still show it
    enqueue_message(
        conn, channel="email", target=str(row[0]),
        subject=f"Hand-over {outcome}: {_what(conn, found)}"[:200],
        body=f"{text}\n\nSituation: {found['note']['situation']}\n",
        key=f"handover-{found['id']}-{outcome}", at=at, reason=f"handover_{outcome}",
        team_id=found["from_team"], clinician_id=found["offered_by"],
        detail={"handover_id": found["id"], "patient_id": found["patient_id"]})


# -- the worker's part ---------------------------------------------------------------------

def tick(conn: psycopg.Connection[Any], notifier: Notifier, now: datetime, *,
         limit: int = 100) -> int:
    """Escalate unanswered hand-overs at their receiving team, expire those whose alert
    ended, and apply accepted ones to the receiving team's escalation."""
    done = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        for found in cur.execute(
                f"SELECT {COLUMNS} FROM handover h JOIN alert a ON a.id = h.alert_id"
                " WHERE h.state = 'offered' AND a.state NOT IN ('open', 'acknowledged')"
                " FOR UPDATE OF h SKIP LOCKED LIMIT %s", (limit,)).fetchall():
            _finish(conn, found, "expired", None, now, None)
            done += 1
        for found in cur.execute(
                f"SELECT {COLUMNS} FROM handover h WHERE h.state = 'offered'"
                " AND h.escalated_at IS NULL AND h.respond_by <= %s ORDER BY h.respond_by"
                " FOR UPDATE SKIP LOCKED LIMIT %s", (now, limit)).fetchall():
            _escalate(conn, notifier, found, now)
            done += 1
        for found in cur.execute(
                f"SELECT {COLUMNS} FROM handover h WHERE h.state = 'accepted'"
                " AND h.kind = 'alert' AND h.applied_at IS NULL ORDER BY h.decided_at"
                " FOR UPDATE SKIP LOCKED LIMIT %s", (limit,)).fetchall():
            apply_accepted(conn, notifier, found, now)
            done += 1
    return done


def _escalate(conn: psycopg.Connection[Any], notifier: Notifier, found: dict[str, Any],
              now: datetime) -> None:
    severity = "amber"
    if found["alert_id"] is not None:
        row = conn.execute("SELECT severity FROM alert WHERE id = %s",
                           (found["alert_id"],)).fetchone()
        severity = "red" if row and row[0] == "red" else "amber"
    what = _what(conn, found)
    waited = int((now - found["offered_at"]).total_seconds() // 60)
    alert_id = notifier.raise_system_alert(
        conn, f"system.handover_unanswered.{found['id']}",
        f"Hand-over waiting for {_team_name(conn, found['to_team'])} for {waited} min: "
        f"{what}, from {_team_name(conn, found['from_team'])}. Accept or decline it.",
        team_id=found["to_team"], at=now, severity=severity, patient_id=found["patient_id"],
        detail={"handover_id": found["id"], "from_team": found["from_team"],
                "alert_id": found["alert_id"]})
    conn.execute("UPDATE handover SET escalated_at = %s, escalation_alert_id = %s"
                 " WHERE id = %s", (now, alert_id, found["id"]))
    _tell_sender(conn, found, now, "not yet accepted",
                 f"Nobody at {_team_name(conn, found['to_team'])} has accepted the hand-over "
                 f"after {waited} min; it has been escalated there.  It stays with your team "
                 "until it is accepted.")


def apply_accepted(conn: psycopg.Connection[Any], notifier: Notifier, found: dict[str, Any],
                   now: datetime) -> None:
    """The receiving team's escalation, from its first level, for an alert still open."""
    alert = notifier.load(conn, found["alert_id"])
    if alert is not None and alert["state"] in ("open", "acknowledged"):
        current = alert["escalation_policy"] or (alert["route"] or {}).get("escalation")
        alert["escalation_policy"] = notifier.own_policy(conn, found["to_team"],
                                                         str(current or ""))
        conn.execute("UPDATE alert SET escalation_policy = %s WHERE id = %s",
                     (alert["escalation_policy"], alert["id"]))
        if alert["state"] == "open" and not alert["inhibited_by"]:
            notifier.enter_level(conn, alert, 0, reason="handed_over", now=now)
    conn.execute("UPDATE handover SET applied_at = %s WHERE id = %s", (now, found["id"]))
