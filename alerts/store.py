"""Alert records as the API and dashboard see them, and the clinician's actions on them.

Functions take a psycopg connection (autocommit or not: each action runs in
``conn.transaction()``, a savepoint when the caller already has one open) and
return JSON-ready dicts.  Contract (shared with the server helper)::

    list_alerts(conn, *, states=("open", "acknowledged"), team_id=None, patient_id=None,
                limit=200) -> list[dict]
    get_alert(conn, alert_id) -> dict | None          # with "events": the history
    acknowledge(conn, alert_id, *, clinician_id, note=None) -> dict
    resolve(conn, alert_id, *, clinician_id, outcome, note=None) -> dict
    snooze(conn, alert_id, *, clinician_id, until, note=None) -> dict
    AlertNotFound(LookupError), InvalidTransition(ValueError), UnknownOutcome(ValueError)

``outcome`` is one of ``alerts.model.OUTCOMES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from alerts import fhir_push
from alerts.events import record_event
from alerts.model import ACTIVE_STATES, OUTCOMES

#: How long an acknowledgement holds before the alert re-opens (a lease), unless
#: the alert's escalation policy says otherwise.
DEFAULT_ACK_LEASE = timedelta(hours=4)
#: The same action by the same clinician on the same alert within this long is taken
#: for a retry (a double click, a request resent after a dropped connection) and is
#: answered without a second event.
RETRY_WINDOW = timedelta(seconds=60)


class AlertNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    pass


class UnknownOutcome(ValueError):
    pass


_COLUMNS = """
    a.id, a.category, a.patient_id, p.display_name AS patient_name, a.rule_id, a.rule,
    a.severity, a.state, a.summary, a.labels, a.team_id, a.opened_at, a.updated_at,
    a.trigger_count, a.last_triggered_at, a.latest_reading, a.readings, a.detail,
    a.acknowledged_at, a.acknowledged_by, a.ack_expires_at, a.snoozed_until,
    a.resolved_at, a.resolved_by, a.outcome, a.route, a.escalation_policy,
    a.escalation_level, a.next_escalation_at, a.inhibited_by
"""
_FROM = " FROM alert a LEFT JOIN patient p ON p.id = a.patient_id "


def _json_ready(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    out["count"] = out["trigger_count"]
    return out


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def list_alerts(conn: psycopg.Connection[Any], *,
                states: Sequence[str] | None = ACTIVE_STATES, team_id: str | None = None,
                patient_id: int | None = None, limit: int = 200,
                visible: sql.Composable | None = None) -> list[dict[str, Any]]:
    """Alerts newest first (red before amber before info among active ones).

    ``visible`` is a condition on the alert row ``a`` that limits the list to what a
    reader may see (the server's access scope); this package does not know scopes."""
    where: list[str] = []
    args: list[Any] = []
    if visible is not None:
        where.append(visible.as_string(conn).replace("%", "%%"))  # literals, not params
    if states is not None:
        where.append("a.state = ANY(%s)")
        args.append(list(states))
    if team_id is not None:
        where.append("a.team_id = %s")
        args.append(team_id)
    if patient_id is not None:
        where.append("a.patient_id = %s")
        args.append(patient_id)
    query = (f"SELECT {_COLUMNS} {_FROM}" + (" WHERE " + " AND ".join(where) if where else "")
             + " ORDER BY CASE a.severity WHEN 'red' THEN 0 WHEN 'amber' THEN 1 ELSE 2 END,"
               " a.opened_at DESC, a.id DESC LIMIT %s")
    args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, args).fetchall()
    return [_json_ready(r) for r in rows]


def get_alert(conn: psycopg.Connection[Any], alert_id: int) -> dict[str, Any] | None:
    """One alert with its full history under ``events`` (oldest first)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_COLUMNS} {_FROM} WHERE a.id = %s", (alert_id,)).fetchone()
        if row is None:
            return None
        events = cur.execute(
            "SELECT id, at, event, actor, clinician_id, detail FROM alert_event"
            " WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()
        sent = cur.execute(
            "SELECT n.id, n.channel, n.target, n.team_id, n.level, n.reason, n.state,"
            " n.attempts, n.created_at, n.delivered_at, n.last_error, n.idempotency_key"
            " FROM notification n WHERE n.alert_id = %s ORDER BY n.id", (alert_id,)).fetchall()
    out = _json_ready(row)
    out["events"] = [_plain(e) for e in events]
    out["notifications"] = [_plain(n) for n in sent]
    return out


def _current(conn: psycopg.Connection[Any], alert_id: int) -> dict[str, Any]:
    result = get_alert(conn, alert_id)
    assert result is not None
    return result


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _lock(conn: psycopg.Connection[Any], alert_id: int) -> tuple[str, str, str | None, int | None]:
    row = conn.execute("SELECT state, severity, team_id, patient_id FROM alert"
                       " WHERE id = %s FOR UPDATE", (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return row[0], row[1], row[2], row[3]


def _is_retry(conn: psycopg.Connection[Any], alert_id: int, events: Sequence[str], *,
              clinician_id: int, at: datetime, same: dict[str, Any],
              near: dict[str, datetime] | None = None) -> bool:
    """Whether the alert's latest event is this clinician doing this very thing within
    RETRY_WINDOW (``same``: the fields of its detail that must match; ``near``: times
    in it that must match within RETRY_WINDOW, e.g. a snooze "for 30 minutes" sent twice)."""
    row = conn.execute("SELECT event, clinician_id, at, detail FROM alert_event"
                       " WHERE alert_id = %s ORDER BY id DESC LIMIT 1", (alert_id,)).fetchone()
    if row is None:
        return False
    event, by, when, detail = row
    detail = detail or {}
    if not (event in events and by == clinician_id and at - when <= RETRY_WINDOW
            and all(detail.get(k) == v for k, v in same.items())):
        return False
    for key, value in (near or {}).items():
        try:
            before = datetime.fromisoformat(str(detail.get(key)))
        except ValueError:
            return False
        if abs(before - value) > RETRY_WINDOW:
            return False
    return True


def acknowledge(conn: psycopg.Connection[Any], alert_id: int, *, clinician_id: int,
                note: str | None = None, lease: timedelta | None = None,
                now: datetime | None = None) -> dict[str, Any]:
    """Take the alert: stops escalation until the lease expires (then it re-opens).

    Acknowledging an already acknowledged alert renews the lease (and records
    who did it); a resolved alert cannot be acknowledged.
    """
    at = _now(now)
    with conn.transaction():
        state, severity, team_id, patient_id = _lock(conn, alert_id)
        if state not in ACTIVE_STATES:
            raise InvalidTransition(f"alert {alert_id} is {state}; only open or acknowledged "
                                    "alerts can be acknowledged")
        if state == "acknowledged" and _is_retry(
                conn, alert_id, ("acknowledged", "renewed"), clinician_id=clinician_id, at=at,
                same={"note": note}):
            return _current(conn, alert_id)
        if lease is None:
            row = conn.execute("SELECT (route->>'ack_lease_seconds')::float FROM alert"
                               " WHERE id = %s", (alert_id,)).fetchone()
            lease = (timedelta(seconds=row[0]) if row and row[0] is not None
                     else DEFAULT_ACK_LEASE)
        conn.execute(
            "UPDATE alert SET state = 'acknowledged', acknowledged_at = %s, acknowledged_by = %s,"
            " ack_expires_at = %s, updated_at = %s WHERE id = %s",
            (at, clinician_id, at + lease, at, alert_id))
        event = "renewed" if state == "acknowledged" else "acknowledged"
        event_id = record_event(
            conn, alert_id, event, at=at, clinician_id=clinician_id,
            detail={"note": note, "lease_expires_at": (at + lease).isoformat()},
            state="acknowledged", severity=severity, team_id=team_id, patient_id=patient_id)
        fhir_push.enqueue(conn, alert_id, event, event_id, at=at, url=fhir_push.push_url())
    return _current(conn, alert_id)


def resolve(conn: psycopg.Connection[Any], alert_id: int, *, clinician_id: int, outcome: str,
            note: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Close the alert with a coded outcome (one of ``alerts.model.OUTCOMES``)."""
    if outcome not in OUTCOMES:
        raise UnknownOutcome(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    at = _now(now)
    with conn.transaction():
        state, severity, team_id, patient_id = _lock(conn, alert_id)
        if state not in ACTIVE_STATES:
            raise InvalidTransition(f"alert {alert_id} is already {state}")
        conn.execute(
            "UPDATE alert SET state = 'resolved', resolved_at = %s, resolved_by = %s,"
            " outcome = %s, updated_at = %s, next_escalation_at = NULL WHERE id = %s",
            (at, clinician_id, outcome, at, alert_id))
        event_id = record_event(conn, alert_id, "resolved", at=at, clinician_id=clinician_id,
                                detail={"outcome": outcome, "note": note}, state="resolved",
                                severity=severity, team_id=team_id, patient_id=patient_id)
        fhir_push.enqueue(conn, alert_id, "resolved", event_id, at=at,
                          url=fhir_push.push_url())
    return _current(conn, alert_id)


def snooze(conn: psycopg.Connection[Any], alert_id: int, *, clinician_id: int,
           until: datetime, note: str | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """Silence notifications for the alert until ``until``; repeat triggers still count."""
    at = _now(now)
    if until <= at:
        raise InvalidTransition("a snooze must end in the future")
    with conn.transaction():
        state, severity, team_id, patient_id = _lock(conn, alert_id)
        if state not in ACTIVE_STATES:
            raise InvalidTransition(f"alert {alert_id} is {state}; it cannot be snoozed")
        if _is_retry(conn, alert_id, ("snoozed",), clinician_id=clinician_id, at=at,
                     same={"note": note}, near={"until": until}):
            return _current(conn, alert_id)
        conn.execute("UPDATE alert SET snoozed_until = %s, updated_at = %s WHERE id = %s",
                     (until, at, alert_id))
        record_event(conn, alert_id, "snoozed", at=at, clinician_id=clinician_id,
                     detail={"until": until.isoformat(), "note": note}, state=state,
                     severity=severity, team_id=team_id, patient_id=patient_id)
    return _current(conn, alert_id)


def add_note(conn: psycopg.Connection[Any], alert_id: int, *, clinician_id: int, text: str,
             now: datetime | None = None) -> dict[str, Any]:
    """Append a note to the alert's history (any state: a closed alert may still need
    a word on what happened after)."""
    at = _now(now)
    with conn.transaction():
        state, severity, team_id, patient_id = _lock(conn, alert_id)
        if _is_retry(conn, alert_id, ("note",), clinician_id=clinician_id, at=at,
                     same={"text": text}):
            return _current(conn, alert_id)
        record_event(conn, alert_id, "note", at=at, clinician_id=clinician_id,
                     detail={"text": text}, state=state, severity=severity, team_id=team_id,
                     patient_id=patient_id)
    return _current(conn, alert_id)


def close_system_alert(conn: psycopg.Connection[Any], alert_id: int, *, at: datetime,
                       why: str) -> bool:
    """Resolve a system alert whose cause has gone (the hand-over was answered, the
    overdue task done): its escalation stops.  False if it was not active."""
    row = conn.execute(
        "UPDATE alert SET state = 'auto_resolved', resolved_at = %s, outcome = 'auto_resolved',"
        " updated_at = %s, next_escalation_at = NULL WHERE id = %s AND category = 'system'"
        " AND state IN ('open', 'acknowledged') RETURNING severity, team_id, patient_id",
        (at, at, alert_id)).fetchone()
    if row is None:
        return False
    record_event(conn, alert_id, "auto_resolved", at=at, detail={"summary": why},
                 state="auto_resolved", severity=row[0], team_id=row[1], patient_id=row[2])
    return True
