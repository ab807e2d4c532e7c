"""The append-only alert history, and the ``alert_event`` notification that goes with it.

Every change to an alert records one ``alert_event`` row and issues
``NOTIFY alert_event, '<json>'`` in the same transaction, so the dashboard
(relayed over server-sent events by the server) hears of it only once it is
committed, and never hears of a change that rolled back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
import psycopg

CHANNEL = "alert_event"


def record_event(conn: psycopg.Connection[Any], alert_id: int, event: str, *, at: datetime,
                 clinician_id: int | None = None, detail: Mapping[str, Any] | None = None,
                 state: str | None = None, severity: str | None = None,
                 team_id: str | None = None, patient_id: int | None = None) -> int:
    """Append an event and NOTIFY it; returns the event id.  Call inside a transaction."""
    actor = f"clinician:{clinician_id}" if clinician_id is not None else "system"
    body = orjson.dumps(dict(detail or {}), default=str).decode()
    row = conn.execute(
        "INSERT INTO alert_event (alert_id, at, event, actor, clinician_id, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
        (alert_id, at, event, actor, clinician_id, body)).fetchone()
    assert row is not None
    event_id = int(row[0])
    payload = {"alert_id": alert_id, "event": event, "event_id": event_id,
               "at": at.isoformat(), "actor": actor, "state": state, "severity": severity,
               "team_id": team_id, "patient_id": patient_id}
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, orjson.dumps(payload).decode()))
    return event_id
