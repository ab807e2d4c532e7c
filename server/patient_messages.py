"""Messages between a patient and their care team (``patient_message``, migration 0401).

A nurse writes to the patient from the patient's page or an alert ("please repeat
your blood pressure in 15 minutes"), optionally asking for a confirmation; the
patient reads it in the portal (``read_at``), confirms it (``confirmed_at``) or
replies (a ``from_patient`` message with ``reply_to``).  When the patient has an
e-mail address a short notice goes there, without the text: the message itself is
read only behind the portal's sign-in.

The callers check access: the nurse's routes take ``PatientAccess``
(``server.api.scope``), the patient's the signed-in patient
(``server.api.patient_scope``); every function here takes the patient id and never
touches another patient's rows.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts.store import RETRY_WINDOW
from homeward.settings import Settings
from server.access import Scope
from server.patient_auth import send_to_patient

BODY_MAX = 2000

_SELECT = (
    "SELECT m.id, m.patient_id, m.direction, m.body, m.needs_confirmation, m.sent_at,"
    " m.read_at, m.confirmed_at, m.clinician_id, c.display_name AS author, m.team_id,"
    " t.name AS team_name, m.alert_id, m.reply_to FROM patient_message m"
    " LEFT JOIN clinician c ON c.id = m.clinician_id LEFT JOIN team t ON t.id = m.team_id")


class NotTheirs(LookupError):
    """No such message of this patient (404)."""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(orjson.dumps(row))
    return out


def messages(conn: psycopg.Connection[Any], patient_id: int, *,
             limit: int = 200) -> list[dict[str, Any]]:
    """The patient's messages both ways, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SELECT + " WHERE m.patient_id = %s ORDER BY m.sent_at DESC,"
                           " m.id DESC LIMIT %s", (patient_id, limit)).fetchall()
    return [_jsonable(r) for r in rows]


def threads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The team's messages, newest first, each with the patient's replies to it (oldest
    first) under ``replies``; a reply whose message is not among ``rows`` stands alone."""
    by_id = {r["id"]: {**r, "replies": []} for r in rows}
    out: list[dict[str, Any]] = []
    for row in rows:
        parent = by_id.get(row["reply_to"]) if row["reply_to"] is not None else None
        if parent is not None and row["direction"] == "from_patient":
            parent["replies"].insert(0, by_id[row["id"]])
        else:
            out.append(by_id[row["id"]])
    return out


def _team_for(conn: psycopg.Connection[Any], scope: Scope, patient_id: int,
              alert_team: str | None) -> str | None:
    """The team a nurse writes for: hers on the patient's care team (the lead first), else
    the alert's when it is hers (out of hours), else her first."""
    row = conn.execute("SELECT team_id FROM patient_team WHERE patient_id = %s"
                       " AND team_id = ANY(%s) ORDER BY lead DESC, team_id LIMIT 1",
                       (patient_id, scope.team_ids)).fetchone()
    if row is not None:
        return str(row[0])
    if alert_team in scope.team_ids:
        return alert_team
    return next(iter(scope.team_ids), None)


def send(conn: psycopg.Connection[Any], settings: Settings, scope: Scope, patient_id: int, *,
         text: str, needs_confirmation: bool, alert_id: int | None) -> dict[str, Any]:
    """A nurse's message to the patient (the same one sent again within a minute, a
    retry, is answered with the first).  ValueError: ``alert_id`` is not this patient's."""
    alert_team: str | None = None
    if alert_id is not None:
        alert = conn.execute("SELECT team_id FROM alert WHERE id = %s AND patient_id = %s",
                             (alert_id, patient_id)).fetchone()
        if alert is None:
            raise ValueError(f"alert {alert_id} is not this patient's")
        alert_team = alert[0]
    with conn.transaction():
        again = conn.execute(
            "SELECT id FROM patient_message WHERE patient_id = %s AND clinician_id = %s"
            " AND body = %s AND needs_confirmation = %s AND alert_id IS NOT DISTINCT FROM %s"
            " AND sent_at > now() - %s ORDER BY id DESC LIMIT 1",
            (patient_id, scope.clinician_id, text, needs_confirmation, alert_id,
             RETRY_WINDOW)).fetchone()
        if again is not None:
            return message(conn, patient_id, int(again[0]))
        team = _team_for(conn, scope, patient_id, alert_team)
        row = conn.execute(
            "INSERT INTO patient_message (patient_id, direction, clinician_id, team_id,"
            " alert_id, body, needs_confirmation, sent_at) VALUES (%s, 'to_patient', %s, %s,"
            " %s, %s, %s, now()) RETURNING id",
            (patient_id, scope.clinician_id, team, alert_id, text,
             needs_confirmation)).fetchone()
        assert row is not None
        _notify(conn, settings, patient_id, int(row[0]), team)
    return message(conn, patient_id, int(row[0]))


def _notify(conn: psycopg.Connection[Any], settings: Settings, patient_id: int,
            message_id: int, team_id: str | None) -> None:
    row = conn.execute("SELECT p.email, t.name FROM patient p LEFT JOIN team t ON t.id = %s"
                       " WHERE p.id = %s", (team_id, patient_id)).fetchone()
    if row is None or not row[0]:
        return
    who = row[1] or "your care team"
    portal = settings.dashboard_url.rstrip("/") + "/my/messages"
    send_to_patient(conn, settings, email=row[0], subject=f"A new message from {who}",
                    body=f"{who} has sent you a message in Homeward.\n\n"
                         f"Sign in to read it: {portal}\n\n"
                         "This is not for emergencies: if you feel very unwell, call 999.\n",
                    key=f"patient-message-{message_id}", reason="patient_message",
                    team_id=team_id)


def message(conn: psycopg.Connection[Any], patient_id: int, message_id: int) -> dict[str, Any]:
    """One of the patient's messages; NotTheirs for another patient's or none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE m.id = %s AND m.patient_id = %s",
                          (message_id, patient_id)).fetchone()
    if row is None:
        raise NotTheirs(f"message {message_id} not found")
    return _jsonable(row)


def mark_read(conn: psycopg.Connection[Any], patient_id: int) -> int:
    """The patient has the team's messages on screen: each unread one is read now."""
    return conn.execute("UPDATE patient_message SET read_at = now() WHERE patient_id = %s"
                        " AND direction = 'to_patient' AND read_at IS NULL",
                        (patient_id,)).rowcount


def unread(conn: psycopg.Connection[Any], patient_id: int) -> dict[str, int]:
    """How many of the team's messages are unread, and how many wait for a confirmation."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE read_at IS NULL),"
        " count(*) FILTER (WHERE needs_confirmation AND confirmed_at IS NULL)"
        " FROM patient_message WHERE patient_id = %s AND direction = 'to_patient'",
        (patient_id,)).fetchone()
    assert row is not None
    return {"unread": int(row[0]), "to_confirm": int(row[1])}


def confirm(conn: psycopg.Connection[Any], patient_id: int, message_id: int) -> dict[str, Any]:
    """The patient confirms the team's message (again: no change).  NotTheirs for
    another patient's message or one of their own; ValueError when it asks for no
    confirmation."""
    found = message(conn, patient_id, message_id)
    if found["direction"] != "to_patient":
        raise NotTheirs(f"message {message_id} not found")
    if not found["needs_confirmation"]:
        raise ValueError("this message does not ask for a confirmation")
    conn.execute("UPDATE patient_message SET confirmed_at = COALESCE(confirmed_at, now()),"
                 " read_at = COALESCE(read_at, now()) WHERE id = %s AND patient_id = %s",
                 (message_id, patient_id))
    return message(conn, patient_id, message_id)


def reply(conn: psycopg.Connection[Any], patient_id: int, message_id: int,
          text: str) -> dict[str, Any]:
    """The patient's reply to the team's message, for the same team (the same reply sent
    again within a minute is not a second one)."""
    found = message(conn, patient_id, message_id)
    if found["direction"] != "to_patient":
        raise NotTheirs(f"message {message_id} not found")
    with conn.transaction():
        again = conn.execute(
            "SELECT id FROM patient_message WHERE patient_id = %s AND reply_to = %s"
            " AND direction = 'from_patient' AND body = %s AND sent_at > now() - %s",
            (patient_id, message_id, text, RETRY_WINDOW)).fetchone()
        if again is not None:
            return message(conn, patient_id, int(again[0]))
        conn.execute("UPDATE patient_message SET read_at = COALESCE(read_at, now())"
                     " WHERE id = %s", (message_id,))
        row = conn.execute(
            "INSERT INTO patient_message (patient_id, direction, team_id, alert_id, reply_to,"
            " body, sent_at) VALUES (%s, 'from_patient', %s, %s, %s, %s, now()) RETURNING id",
            (patient_id, found["team_id"], found["alert_id"], message_id, text)).fetchone()
    assert row is not None
    return message(conn, patient_id, int(row[0]))


def panel(conn: psycopg.Connection[Any], patient_id: int) -> dict[str, Any]:
    """What the dashboard's message panel shows: the threads, and whether the patient
    can sign in to the portal at all (an e-mail address on the record)."""
    row = conn.execute("SELECT email IS NOT NULL FROM patient WHERE id = %s",
                       (patient_id,)).fetchone()
    return {"patient_id": patient_id, "threads": threads(messages(conn, patient_id, limit=50)),
            "can_sign_in": bool(row and row[0])}
