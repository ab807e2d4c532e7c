"""Delivery channels: e-mail over SMTP (smtplib), a webhook (a JSON POST, e.g. an SMS gateway)
and the FHIR push (a transaction Bundle POSTed to a FHIR server).

The dashboard channel needs no sender: it is the ``alert_event`` NOTIFY issued
in the same commit (the server relays it over server-sent events).  Each
sender raises ``DeliveryError`` with a reason the outbox records.
"""

from __future__ import annotations

import base64
import hashlib
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import httpx
import orjson

from homeward.settings import EnvSettings


class DeliveryError(Exception):
    pass


class FhirPushSettings(EnvSettings):
    """``HOMEWARD_FHIR_PUSH_*`` alone: what the API reads when a nurse acknowledges or
    resolves an alert, so that a malformed e-mail setting in its environment can never
    make an acknowledgement fail (alerts/fhir_push.py)."""

    #: The FHIR server's base URL that alerts are pushed to (a transaction Bundle POSTed
    #: there); unset or empty: no FHIR push.  Read where alerts change: the alert engine
    #: and the API (acknowledge, resolve), so set it for both (alerts/fhir_push.py).
    fhir_push_url: str | None = None
    #: Sent as ``Authorization: Bearer <token>`` when set (read by the alert engine only).
    fhir_push_token: str | None = None
    fhir_push_timeout: float = 10.0


class ChannelSettings(FhirPushSettings):
    """``HOMEWARD_SMTP_*``, ``HOMEWARD_WEBHOOK_*`` and ``HOMEWARD_FHIR_PUSH_*`` from the
    environment (or, as every setting, from a ``HOMEWARD_*_FILE``)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "homeward-alerts@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0
    webhook_timeout: float = 10.0
    dashboard_url: str = "http://127.0.0.1:8000"


class Sender(Protocol):
    def send(self, target: str, payload: Mapping[str, Any], key: str) -> str: ...


def subject(payload: Mapping[str, Any]) -> str:
    sev = str(payload.get("severity", "")).upper()
    reason = payload.get("reason", "")
    prefix = {"escalated": "ESCALATED ", "reminder": "REMINDER ", "reopened": "RE-OPENED "}.get(
        str(reason), "")
    who = payload.get("patient_name") or (f"patient {payload['patient_id']}"
                                          if payload.get("patient_id") else "system")
    return f"[{sev}] {prefix}{who}: {payload.get('summary', '')}"[:200]


def message_id(key: str) -> str:
    """A valid RFC 5322 Message-ID derived from the idempotency key (which may hold '@')."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@homeward>"


@dataclass
class EmailSender:
    settings: ChannelSettings

    def send(self, target: str, payload: Mapping[str, Any], key: str) -> str:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = target
        msg["Subject"] = subject(payload)
        msg["Message-ID"] = message_id(key)
        msg["X-Homeward-Idempotency-Key"] = key
        if payload.get("kind") == "message":  # no alert's: its own subject and text
            msg.replace_header("Subject", str(payload.get("subject", ""))[:200])
            msg.set_content(str(payload.get("body", "")))
            for item in payload.get("attachments") or ():
                maintype, _, subtype = str(item["content_type"]).partition("/")
                msg.add_attachment(base64.b64decode(item["data"]), maintype=maintype,
                                   subtype=subtype, filename=str(item["filename"]))
        else:
            link = f"{self.settings.dashboard_url.rstrip('/')}/alerts/{payload.get('alert_id')}"
            msg.set_content(
                f"{payload.get('summary', '')}\n\n"
                f"Severity: {payload.get('severity')}\nRule: {payload.get('rule_id')}\n"
                f"Why: {payload.get('source') or ''}\nTeam: {payload.get('team_id')}\n"
                f"Escalation level: {payload.get('level')} ({payload.get('reason')})\n"
                f"Opened: {payload.get('opened_at')}\n\nOpen the alert: {link}\n")
        try:
            with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port,
                              timeout=self.settings.smtp_timeout) as smtp:
                if self.settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.settings.smtp_username:
                    smtp.login(self.settings.smtp_username, self.settings.smtp_password or "")
                refused = smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as err:
            raise DeliveryError(f"smtp {self.settings.smtp_host}:{self.settings.smtp_port}: "
                                f"{type(err).__name__}: {err}") from err
        if refused:
            raise DeliveryError(f"recipient refused: {refused}")
        return "250 accepted"


@dataclass
class WebhookSender:
    settings: ChannelSettings

    def send(self, target: str, payload: Mapping[str, Any], key: str) -> str:
        try:
            resp = httpx.post(target, content=orjson.dumps(dict(payload), default=str),
                              headers={"Content-Type": "application/json",
                                       "Idempotency-Key": key},
                              timeout=self.settings.webhook_timeout)
        except httpx.HTTPError as err:
            raise DeliveryError(f"POST {target}: {type(err).__name__}: {err}") from err
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"POST {target}: HTTP {resp.status_code} {resp.text[:200]}")
        return f"HTTP {resp.status_code}"


@dataclass
class FhirSender:
    """POST a prepared FHIR Bundle (``payload["body"]``, the exact text written with the
    notification, alerts/fhir_push.py) to ``target``, the FHIR server's base URL.

    As the webhook: ``Idempotency-Key`` header, 2xx is success, anything else (a 503, a
    timeout, a 4xx) is a failed attempt the outbox retries with back-off and, after its
    last attempt, turns into a system alert.  A 4xx is retried too: the usual ones
    (401, 403, 404) are configuration that an adopter fixes, and the next retry then
    delivers what would otherwise be lost."""

    settings: ChannelSettings

    def send(self, target: str, payload: Mapping[str, Any], key: str) -> str:
        headers = {"Content-Type": "application/fhir+json; charset=utf-8",
                   "Accept": "application/fhir+json", "Idempotency-Key": key}
        if self.settings.fhir_push_token:
            headers["Authorization"] = f"Bearer {self.settings.fhir_push_token}"
        body = payload.get("body")
        if not isinstance(body, str):
            raise DeliveryError("the notification holds no FHIR Bundle to send")
        try:
            resp = httpx.post(target, content=body.encode(), headers=headers,
                              timeout=self.settings.fhir_push_timeout)
        except httpx.HTTPError as err:
            raise DeliveryError(f"POST {target}: {type(err).__name__}: {err}") from err
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"POST {target}: HTTP {resp.status_code} {resp.text[:200]}")
        return f"HTTP {resp.status_code}"


def default_senders(settings: ChannelSettings | None = None) -> dict[str, Sender]:
    s = settings or ChannelSettings()
    return {"email": EmailSender(s), "webhook": WebhookSender(s), "fhir": FhirSender(s)}
