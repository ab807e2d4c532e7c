# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""Channels through the durable outbox: a real SMTP server (aiosmtpd) and a real local HTTP
server receive the messages; failures are retried with back-off, every attempt is recorded,
and a notification that cannot be delivered raises a system alert instead of vanishing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts import store
from alerts.channels import message_id
from tests.test_alerts_support import (  # noqa: F401 -- fixtures
    MONDAY,
    Clock,
    build_world,
    conn,
    make_service,
    smtp_server,
    vitals,
    webhook_server,
)

pytestmark = pytest.mark.integration


def attempts(conn, channel):
    return conn.execute(
        "SELECT a.ok, a.error FROM notification_attempt a JOIN notification n"
        " ON n.id = a.notification_id WHERE n.channel = %s ORDER BY a.id", (channel,)).fetchall()


def test_email_and_webhook_are_delivered_with_idempotency_keys(conn, smtp_server,
                                                               webhook_server):
    world = build_world(conn, webhook_url=webhook_server.url)
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_server.port)
    vitals(conn, world["patient"], clock.now, sys_=186, pulse=80)
    svc.step(conn)
    (alert,) = store.list_alerts(conn)
    (mail,) = smtp_server.to("amy@example.nhs.uk")
    assert mail["Subject"] == "[RED] Colin Oakes: Severe hypertension: systolic 186, diastolic 80"
    assert "NICE NG136" in mail.get_payload()
    (headers, body) = webhook_server.requests[0]
    assert body["alert_id"] == alert["id"] and body["severity"] == "red"
    assert body["team_id"] == "copd-north" and body["level"] == 0
    assert headers["Idempotency-Key"] == body["idempotency_key"]
    assert mail["Message-ID"] == message_id(mail["X-Homeward-Idempotency-Key"])
    assert mail["X-Homeward-Idempotency-Key"] != body["idempotency_key"]  # one key per message
    got = store.get_alert(conn, alert["id"])
    assert {(n["channel"], n["state"]) for n in got["notifications"]} == {
        ("dashboard", "delivered"), ("email", "delivered"), ("webhook", "delivered")}


def test_webhook_failures_are_retried_with_backoff_and_every_attempt_recorded(
        conn, smtp_server, webhook_server):
    world = build_world(conn, webhook_url=webhook_server.url)
    webhook_server.fail_next = 2
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_server.port)
    vitals(conn, world["patient"], clock.now, sys_=190)
    svc.step(conn)                                   # attempt 1: 503
    assert webhook_server.requests == []
    svc.tick(conn, clock.advance(seconds=29))        # back-off 30 s: not yet
    assert len(attempts(conn, "webhook")) == 1
    svc.tick(conn, clock.advance(seconds=1))         # attempt 2: 503, next in 60 s
    svc.tick(conn, clock.advance(seconds=59))
    assert len(attempts(conn, "webhook")) == 2
    svc.tick(conn, clock.advance(seconds=1))         # attempt 3: delivered
    assert [ok for ok, _ in attempts(conn, "webhook")] == [False, False, True]
    assert "HTTP 503" in attempts(conn, "webhook")[0][1]
    assert len(webhook_server.requests) == 1
    first_key = webhook_server.requests[0][1]["idempotency_key"]
    svc.tick(conn, clock.advance(hours=1))           # (the alert escalates meanwhile)
    keys = [body["idempotency_key"] for _, body in webhook_server.requests]
    assert keys.count(first_key) == 1                # delivered once, never again
    assert len(keys) == len(set(keys)) >= 2


@pytest.mark.hazard("H-009")
def test_undeliverable_email_raises_a_system_alert_and_the_alert_stays(conn):
    world = build_world(conn)
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_port=1)           # nothing listens on port 1
    svc.outbox.max_attempts = 3
    vitals(conn, world["patient"], clock.now, sys_=190)
    svc.step(conn)
    for _ in range(3):
        svc.tick(conn, clock.advance(minutes=5))
    row = conn.execute("SELECT state, attempts, last_error FROM notification"
                       " WHERE channel = 'email' AND target = 'amy@example.nhs.uk'").fetchone()
    assert row[0] == "failed" and row[1] == 3 and "smtp" in row[2]
    system = [a for a in store.list_alerts(conn) if a["category"] == "system"]
    assert "system.delivery_failed.email.amy@example.nhs.uk" in [a["rule_id"] for a in system]
    clinical = [a for a in store.list_alerts(conn) if a["category"] == "clinical"]
    assert clinical and clinical[0]["state"] == "open"   # still on the dashboard


def test_a_message_that_is_no_alerts_is_mailed_once_with_its_attachment(conn, smtp_server):
    """A sign-in code or a shift report goes through the same outbox: its own subject and
    text, an attachment, one row however often it is queued, every attempt recorded."""
    from alerts.channels import ChannelSettings, default_senders
    from alerts.outbox import Attachment, Outbox, enqueue_message

    at = MONDAY + timedelta(hours=8)
    for _ in range(2):  # the same key twice: one message
        enqueue_message(conn, channel="email", target="lead@example.nhs.uk",
                        subject="Night report: COPD team", body="3 alerts, 1 hand-over.",
                        key="shift-report-copd-2026-03-02", at=at, reason="shift_report",
                        attachments=(Attachment("report.csv", "text/csv", b"a,b\n1,2\n"),))
    outbox = Outbox(default_senders(ChannelSettings(smtp_host="127.0.0.1",
                                                    smtp_port=smtp_server.port,
                                                    smtp_timeout=5)))
    assert outbox.deliver_due(conn, at) == 1
    (mail,) = smtp_server.to("lead@example.nhs.uk")
    assert mail["Subject"] == "Night report: COPD team"
    body, attachment = mail.get_payload()
    assert body.get_payload().strip() == "3 alerts, 1 hand-over."
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_payload(decode=True) == b"a,b\n1,2\n"
    assert attempts(conn, "email") == [(True, None)]
