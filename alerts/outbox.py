"""The durable notification outbox: deliver pending notifications with retries and back-off.

Rows are written by alerts/notify.py in the same transaction as the alert
event that caused them.  Delivery takes one due row at a time
(``FOR UPDATE SKIP LOCKED``, so several workers never send the same row
concurrently), sends it, records the attempt (``notification_attempt``) and
marks the row delivered or schedules the next try, all in one transaction.

At-least-once rule: a message is sent again only when the process dies after
the receiver accepted it and before that transaction committed; the resend
carries the same idempotency key (``Idempotency-Key`` header; e-mail
``Message-ID``), so a receiver can drop it.  At most one duplicate per crash
per in-flight notification.

Back-off: ``base * 2**(attempts-1)`` capped at ``cap``; after ``max_attempts``
the notification is marked failed and a system alert is raised (the alert
itself is still on the dashboard: nothing is dropped).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg

from alerts.channels import DeliveryError, Sender, default_senders

log = logging.getLogger(__name__)

RaiseSystemAlert = Callable[..., int]
#: (channel, ok, seconds, gave_up) after each delivery attempt (alerts.metrics).
OnAttempt = Callable[[str, bool, float, bool], None]


@dataclass
class Outbox:
    senders: Mapping[str, Sender] = field(default_factory=default_senders)
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 10
    on_failure: RaiseSystemAlert | None = None
    on_attempt: OnAttempt | None = None

    def backoff(self, attempts: int) -> timedelta:
        return min(self.base * (1 << min(max(attempts - 1, 0), 30)), self.cap)

    def deliver_due(self, conn: psycopg.Connection[Any], now: datetime, *,
                    limit: int = 100) -> int:
        """Try every due notification once (up to ``limit``); returns how many were tried."""
        tried = 0
        while tried < limit:
            with conn.transaction():
                row = conn.execute(
                    "SELECT id, channel, target, payload, idempotency_key, attempts, alert_id,"
                    " team_id FROM notification WHERE state = 'pending' AND next_attempt_at <= %s"
                    " ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT 1",
                    (now,)).fetchone()
                if row is None:
                    return tried
                nid, channel, target, payload, key, attempts, alert_id, team_id = row
                tried += 1
                self._attempt(conn, nid, channel, target, payload, key, attempts + 1,
                              alert_id, team_id, now)
        return tried

    def _attempt(self, conn: psycopg.Connection[Any], nid: int, channel: str, target: str,
                 payload: dict[str, Any], key: str, attempt: int, alert_id: int | None,
                 team_id: str | None, now: datetime) -> None:
        sender = self.senders.get(channel)
        started = time.perf_counter()
        error: str | None = None
        response: str | None = None
        if sender is None:
            error = f"no sender for channel {channel!r}"
        else:
            try:
                response = sender.send(target, payload, key)
            except DeliveryError as err:
                error = str(err)
        ms = (time.perf_counter() - started) * 1000
        if self.on_attempt is not None:
            self.on_attempt(channel, error is None, ms / 1000,
                            error is not None and attempt >= self.max_attempts)
        conn.execute("INSERT INTO notification_attempt (notification_id, at, ok, duration_ms,"
                     " error, response) VALUES (%s, %s, %s, %s, %s, %s)",
                     (nid, now, error is None, ms, error, response))
        if error is None:
            conn.execute("UPDATE notification SET state = 'delivered', attempts = %s,"
                         " delivered_at = %s, last_error = NULL WHERE id = %s",
                         (attempt, now, nid))
            return
        log.warning("notification %s (%s %s) attempt %d failed: %s", nid, channel, target,
                    attempt, error, extra={"notification_id": nid, "alert_id": alert_id,
                                           "channel": channel, "attempt": attempt})
        if attempt >= self.max_attempts:
            conn.execute("UPDATE notification SET state = 'failed', attempts = %s,"
                         " last_error = %s WHERE id = %s", (attempt, error, nid))
            if self.on_failure is not None:
                self.on_failure(conn, f"system.delivery_failed.{channel}.{target}",
                                f"Cannot deliver {channel} to {target} after {attempt} "
                                f"attempts ({f'alert {alert_id}' if alert_id else 'a message'}"
                                f"): {error}",
                                team_id=team_id, at=now, severity="amber",
                                detail={"notification_id": nid, "alert_id": alert_id})
            return
        conn.execute("UPDATE notification SET attempts = %s, last_error = %s,"
                     " next_attempt_at = %s WHERE id = %s",
                     (attempt, error, now + self.backoff(attempt), nid))


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def enqueue_message(conn: psycopg.Connection[Any], *, channel: str, target: str,
                    subject: str, body: str, key: str, at: datetime, reason: str,
                    team_id: str | None = None, clinician_id: int | None = None,
                    attachments: tuple[Attachment, ...] = (),
                    detail: Mapping[str, Any] | None = None) -> int | None:
    """Queue a message that is no alert's (a sign-in code, a shift report) on ``channel``
    (``email`` or ``webhook``), delivered by the same outbox with the same retries, key
    and attempt records.  ``key`` makes it idempotent: the same key again queues nothing
    (None).  Call inside the transaction that decided to send it."""
    payload = {"kind": "message", "subject": subject, "body": body, "reason": reason,
               "idempotency_key": key, **(detail or {}),
               "attachments": [{"filename": a.filename, "content_type": a.content_type,
                                "data": base64.b64encode(a.data).decode()}
                               for a in attachments]}
    row = conn.execute(
        "INSERT INTO notification (kind, channel, target, team_id, clinician_id, reason,"
        " idempotency_key, payload, created_at, next_attempt_at)"
        " VALUES ('message', %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (channel, target, team_id, clinician_id, reason, key, orjson.dumps(payload).decode(),
         at, at)).fetchone()
    return int(row[0]) if row is not None else None
