"""Shared pieces for the alert tests (no tests here): a real SMTP server (aiosmtpd),
a real local HTTP server for webhooks, an injectable clock, and a care world.

Import the fixtures into a test module with ``from tests.test_alerts_support import ...``.
"""

from __future__ import annotations

import email
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from aiosmtpd.controller import Controller

from alerts.channels import ChannelSettings, default_senders
from alerts.notify import add_shift, set_fallback
from alerts.outbox import Outbox
from alerts.routing import load_routing
from alerts.ruleset import load_ruleset
from alerts.sample_data import add_clinician, add_patient, add_team, insert_reading
from alerts.service import AlertService
from stack.services.common import free_port

# Monday 23 November 2026: GMT, so London time == UTC.
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> datetime:
        self.now = now
        return now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


class _Collect:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.handler = _Collect()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[email.message.Message]:
        with self.handler.lock:
            return list(self.handler.messages)

    def to(self, address: str) -> list[email.message.Message]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


class WebhookServer:
    """A real HTTP server that records JSON POSTs; ``fail_next`` makes it answer 503."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.fail_next = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_next > 0:
                    outer.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.requests.append((dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def webhook_server():
    server = WebhookServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def build_world(conn, *, webhook_url=None, rota=True):
    """Three teams, five clinicians, a weekday rota, one COPD patient.

    copd-north: Amy (level 0, weekdays 08:00-18:30), Ben (level 1, same hours)
    out-of-hours: Olu (level 0, around the clock), the fallback of copd-north
    dn-north: nobody on the rota (a team with a permanent gap)
    """
    add_team(conn, "copd-north", kind="copd", email="copd-north@example.nhs.uk",
             webhook_url=webhook_url)
    add_team(conn, "out-of-hours", kind="out_of_hours", email="ooh@example.nhs.uk")
    add_team(conn, "dn-north", kind="district_nursing", email="dn@example.nhs.uk")
    amy = add_clinician(conn, "amy", teams=["copd-north"], email="amy@example.nhs.uk")
    ben = add_clinician(conn, "ben", teams=["copd-north"], email="ben@example.nhs.uk")
    olu = add_clinician(conn, "olu", teams=["out-of-hours"], email="olu@example.nhs.uk")
    set_fallback(conn, "copd-north", "out-of-hours")
    if rota:
        for day in range(5):
            start = MONDAY + timedelta(days=day, hours=8)
            add_shift(conn, team_id="copd-north", clinician_id=amy, starts_at=start,
                      ends_at=start + timedelta(hours=10, minutes=30))
            add_shift(conn, team_id="copd-north", clinician_id=ben, starts_at=start,
                      ends_at=start + timedelta(hours=10, minutes=30), level=1)
        add_shift(conn, team_id="out-of-hours", clinician_id=olu, starts_at=MONDAY,
                  ends_at=MONDAY + timedelta(days=14))
    pid = add_patient(conn, "Colin Oakes", teams=["copd-north", "dn-north"], hub_id="hub-colin",
                      since=MONDAY - timedelta(days=7))
    hub_heard_from(conn, "hub-colin")
    return {"patient": pid, "amy": amy, "ben": ben, "olu": olu}


def hub_heard_from(conn, hub_id):
    """The hub is online and heard from throughout the scenario (its status messages are not
    part of these stories: readings are inserted without the ingest); a hub never heard from
    raises its own alert (test_rules_evaluators)."""
    later = MONDAY + timedelta(days=60)
    conn.execute("UPDATE hub SET state = 'online', last_status_at = %s, last_seen_at = %s"
                 " WHERE id = %s", (later, later, hub_id))


def make_service(clock, smtp_port=None, *, rules=None, routes=None):
    settings = ChannelSettings(smtp_host="127.0.0.1", smtp_port=smtp_port or 1,
                               smtp_timeout=5, webhook_timeout=5)
    outbox = Outbox(default_senders(settings), base=timedelta(seconds=30))
    return AlertService(load_ruleset(rules), load_routing(routes), clock=clock, outbox=outbox)


def vitals(conn, pid, at, *, spo2=None, pulse=None, temp=None, rr=None, sys_=None):
    if spo2 is not None:
        insert_reading(conn, patient_id=pid, kind="spo2", taken_at=at,
                       values={"spo2": spo2, "pulse_rate": pulse or 80})
    if temp is not None:
        insert_reading(conn, patient_id=pid, kind="temperature", taken_at=at,
                       values={"body_temperature": temp})
    if rr is not None:
        insert_reading(conn, patient_id=pid, kind="respiratory_rate", taken_at=at,
                       values={"respiratory_rate": rr})
    if sys_ is not None:
        insert_reading(conn, patient_id=pid, kind="blood_pressure", taken_at=at,
                       values={"systolic": sys_, "diastolic": 80, "pulse_rate": pulse or 80})


def events(conn, alert_id):
    return [r[0] for r in conn.execute("SELECT event FROM alert_event WHERE alert_id = %s"
                                       " ORDER BY id", (alert_id,))]


def notifications(conn, alert_id=None):
    sql = ("SELECT alert_id, channel, target, level, reason, state FROM notification"
           + (" WHERE alert_id = %s" if alert_id is not None else "") + " ORDER BY id")
    return conn.execute(sql, (alert_id,) if alert_id is not None else ()).fetchall()
