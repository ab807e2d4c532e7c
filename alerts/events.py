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
    # One round trip: the row and its NOTIFY (delivered at commit) together.
    row = conn.execute(
        "INSERT INTO alert_event (alert_id, at, event, actor, clinician_id, detail)"
        " VALUES (%(alert_id)s, %(at)s, %(event)s, %(actor)s, %(clinician_id)s,"
        " %(detail)s::jsonb) RETURNING id, pg_notify(%(channel)s, json_build_object("
        "'alert_id', %(alert_id)s::bigint, 'event', %(event)s::text, 'event_id', id,"
        " 'at', %(at_text)s::text, 'actor', %(actor)s::text, 'state', %(state)s::text,"
        " 'severity', %(severity)s::text, 'team_id', %(team_id)s::text,"
        " 'patient_id', %(patient_id)s::bigint)::text)",
        {"alert_id": alert_id, "at": at, "event": event, "actor": actor,
         "clinician_id": clinician_id, "detail": body, "channel": CHANNEL,
         "at_text": at.isoformat(), "state": state, "severity": severity,
         "team_id": team_id, "patient_id": patient_id}).fetchone()
    assert row is not None
    return int(row[0])
