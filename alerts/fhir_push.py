"""The FHIR push channel: each change to a clinical alert, as a FHIR transaction Bundle
(the Flag, its evidence Observations, the patient), joins the notification outbox.

Configured by one setting, ``HOMEWARD_FHIR_PUSH_URL`` (the receiving FHIR server's
base URL; unset or empty: no push) and, for the sender, ``HOMEWARD_FHIR_PUSH_TOKEN``
(alerts/channels.py).  Alerts change in two processes, so both read the URL: the
alert engine (opened, severity raised, lease expired, auto-resolved; alerts/notify.py)
and the API (acknowledged, renewed, resolved; alerts/store.py).

:func:`enqueue` runs inside the transaction that records the alert event and writes
one ``notification`` row (channel ``fhir``, target the URL, idempotency key
``alert-<id>-event-<event id>-fhir-<url>`` as for every channel); the outbox
(alerts/outbox.py) delivers it with the same retries, back-off, attempt records and
final system alert as e-mail and webhooks.

**The Bundle is built here, when the alert changes, and stored; the sender sends the
stored text.**  Not at send time, for two reasons:

- *What was true when the alert changed.*  The alert row, its evidence readings and
  the patient row are read in the transaction that made the change, after it and under
  the lock the change holds on the alert row, so the Bundle is the alert as this event
  left it.  A Bundle built at send time (after minutes or hours of back-off) would
  describe whatever the alert had become by then (acknowledged, resolved, evidence
  erased by retention) under the key of an earlier event, and a state the receiver
  should have recorded (say, red before it was resolved) could be skipped altogether.
- *The same bytes on every resend.*  The serialised Bundle is kept in the payload as
  one JSON string (a jsonb string keeps its text exactly; a jsonb object would not keep
  its key order), and every retry, and the one resend after a crash, posts that text
  with the same ``Idempotency-Key``.  A receiver that implements idempotency keys
  compares the body of a repeated key and refuses a different one; a Bundle rebuilt at
  send time would differ as soon as the mapping code changed between two attempts.

The price is a few queries inside the change's transaction, only when a push URL is
set, and the Bundle's text stored once per pushed event.

A Bundle that cannot be made (a patient without an NHS number, a reading the mapping
refuses) does not roll the change back, which would stop alerting for that patient:
the notification is written ``failed`` with the reason, visible with the alert's
other notifications, and logged.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts.channels import FhirPushSettings
from server.fhir.push import transaction_bundle

log = logging.getLogger(__name__)

#: The alert events that change what the Flag says and are pushed.  Not ``retriggered``
#: (a repeat of the same finding, up to once a reading: the next pushed event carries
#: its evidence), ``snoozed``/``snooze_expired``, ``notified``/``escalated``/``reminder``
#: (who was told, not the alert), nor ``note``.
PUSH_EVENTS = frozenset({"opened", "severity_raised", "acknowledged", "renewed",
                         "lease_expired", "resolved", "auto_resolved"})
#: Pushed even for a muted alert (``inhibited_by``), so a receiver never keeps an active
#: Flag that Homeward has closed.
CLOSING_EVENTS = frozenset({"resolved", "auto_resolved"})
CONTENT_TYPE = "application/fhir+json"

_ALERT = ("SELECT id, category, patient_id, rule_id, rule, severity, state, summary,"
          " team_id, opened_at, resolved_at, acknowledged_by, acknowledged_at, readings,"
          " escalation_level, inhibited_by FROM alert WHERE id = %s")
_PATIENT = "SELECT id, nhs_number, display_name, date_of_birth, status FROM patient WHERE id = %s"
_READINGS = ('SELECT id, taken_at, kind, hub_id, device, "values", flags, received_at,'
             " patient_id FROM reading WHERE id = ANY(%s)")


def push_url(settings: FhirPushSettings | None = None) -> str | None:
    """``HOMEWARD_FHIR_PUSH_URL``, or None when it is unset or empty."""
    url = (settings or FhirPushSettings()).fhir_push_url
    return (url.strip() or None) if url else None


def _evidence(cur: psycopg.Cursor[dict[str, Any]],
              alert: dict[str, Any]) -> list[dict[str, Any]]:
    """The reading rows of the readings that fired ``alert`` (``alert.readings``, oldest
    first); a reading no longer stored (erased, past retention) is left out."""
    ids: list[uuid.UUID] = []
    times: list[datetime] = []
    for item in alert["readings"] or ():
        try:
            ids.append(uuid.UUID(str(item["id"])))
            times.append(datetime.fromisoformat(str(item["taken_at"])))
        except (KeyError, TypeError, ValueError):
            continue
    if not ids:
        return []
    sql = _READINGS
    args: list[Any] = [ids]
    if len(times) == len(ids):  # bounds on taken_at let TimescaleDB skip other chunks
        sql += " AND taken_at BETWEEN %s AND %s"
        args += [min(times), max(times)]
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for row in cur.execute(sql, args).fetchall():
        rows.setdefault(row["id"], row)
    return [rows[i] for i in dict.fromkeys(ids) if i in rows]


def enqueue(conn: psycopg.Connection[Any], alert_id: int, event: str, event_id: int, *,
            at: datetime, url: str | None) -> int | None:
    """Queue the push of ``alert_id`` as event ``event_id`` (``event``) left it, to ``url``.

    Call inside the transaction that recorded the event.  Returns the notification id,
    or None when nothing is pushed (no URL, an event or alert that is not pushed, or the
    row existed already)."""
    if url is None or event not in PUSH_EVENTS:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        alert = cur.execute(_ALERT, (alert_id,)).fetchone()
        if alert is None or alert["category"] != "clinical" or alert["patient_id"] is None:
            return None  # a system alert is no Flag
        if alert["inhibited_by"] and event not in CLOSING_EVENTS:
            return None  # muted: nobody is told, nothing is pushed
        patient = cur.execute(_PATIENT, (alert["patient_id"],)).fetchone()
        readings = _evidence(cur, alert)
    key = f"alert-{alert_id}-event-{event_id}-fhir-{url}"
    payload: dict[str, Any] = {"alert_id": alert_id, "event": event,
                               "patient_id": alert["patient_id"], "idempotency_key": key,
                               "content_type": CONTENT_TYPE}
    error = None
    try:
        if patient is None:
            raise ValueError(f"patient {alert['patient_id']} not found")
        bundle = transaction_bundle(alert, readings, patient, base_url=url)
        payload["body"] = orjson.dumps(bundle).decode()
    except Exception as err:  # a mapping failure must not roll the alert change back
        error = f"no FHIR Bundle: {type(err).__name__}: {err}"
        log.error("alert %s event %s (%s): %s", alert_id, event_id, event, error,
                  extra={"alert_id": alert_id, "channel": "fhir"})
    row = conn.execute(
        "INSERT INTO notification (alert_id, alert_event_id, channel, target, team_id,"
        " level, reason, idempotency_key, payload, state, attempts, created_at,"
        " next_attempt_at, last_error)"
        " VALUES (%s, %s, 'fhir', %s, %s, %s, %s, %s, %s::jsonb, %s, 0, %s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (alert_id, event_id, url, alert["team_id"], alert["escalation_level"] or 0, event,
         key, orjson.dumps(payload).decode(), "failed" if error else "pending", at, at,
         error)).fetchone()
    return int(row[0]) if row is not None else None
