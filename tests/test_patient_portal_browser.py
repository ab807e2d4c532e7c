"""The patient in the loop, in a real browser (headless Chromium, Playwright), issue 9.

One seeded ward and one API server for the module, with the notification outbox
delivering to a real SMTP server (aiosmtpd) as the alert worker does.  A patient on a
tablet signs in with the one-time code read from the e-mail the server sent, sees
their readings with a chart and which of them the COPD team has seen, cannot reach
another patient's reading (404); a nurse sends a message from the alert page asking
for a confirmation, the patient confirms it and replies, and the nurse sees both on
the patient's page.  axe-core finds no serious or critical violation on any portal
page at 768 and 1280 px.  Screenshots go to /tmp/portal-*.png.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from alerts.channels import ChannelSettings, default_senders
from alerts.lifecycle import apply_finding
from alerts.model import Finding, Severity, WindowReading
from alerts.outbox import Outbox
from alerts.ruleset import load_ruleset
from homeward.settings import Settings
from server import admin, patient_auth
from tests.api_support import running_api
from tests.browser_support import chromium
from tests.test_alerts_support import SmtpServer
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.xdist_group("patient-portal")]

PASSWORD = "a long enough test password"
SHOTS = Path("/tmp")
DESKTOP = ViewportSize(width=1280, height=800)
TABLET = ViewportSize(width=768, height=1024)
ADA_EMAIL = "ada.lovelace@example.org"
CODE = re.compile(r"sign-in code is (\d{4} \d{4})")


@dataclass
class Ward:
    url: str
    base: str
    smtp: SmtpServer
    ada: int
    bob: int
    alert: int
    bob_reading: str


def _reading(conn: psycopg.Connection[Any], patient: int, hub: str, kind: str,
             at: datetime, values: dict[str, float]) -> WindowReading:
    row = conn.execute(
        'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
        " received_at) VALUES (gen_random_uuid(), %s, %s, %s, %s, 'C4:7C:8D:00:00:09', %s,"
        " %s) RETURNING id::text", (at, kind, hub, patient, orjson.dumps(values).decode(),
                                    at + timedelta(seconds=20))).fetchone()
    assert row is not None
    return WindowReading(row[0], kind, at, values)


def seed(url: str) -> tuple[int, int, int, str]:
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Riverside Community Trust")
        admin.create_team(conn, team_id="copd", organisation_id=org, name="COPD Team",
                          kind="copd")
        admin.create_clinician(conn, username="cora", display_name="Cora COPD Nurse",
                               teams=["copd"], password=PASSWORD)
        ada = admin.create_patient(conn, display_name="Ada Lovelace", nhs_number="9434765919",
                                   teams=["copd"], lead="copd")
        bob = admin.create_patient(conn, display_name="Bob Babbage", teams=["copd"])
        patient_auth.set_email(conn, ada, ADA_EMAIL)
        patient_auth.set_email(conn, bob, "bob@example.org")
        for hub, patient in (("hub-ada", ada), ("hub-bob", bob)):
            admin.create_hub(conn, hub_id=hub)
            admin.enrol(conn, hub_id=hub, patient_id=patient, valid_from=now - timedelta(days=30))
        spo2 = [_reading(conn, ada, "hub-ada", "spo2", now - timedelta(hours=8 * i + 2),
                         {"spo2": 92 + (i % 4), "pulse_rate": 72 + i % 7})
                for i in range(15, 0, -1)]
        for i in range(5, 0, -1):
            _reading(conn, ada, "hub-ada", "blood_pressure", now - timedelta(days=i, hours=3),
                     {"systolic": 128 + 3 * i, "diastolic": 80 + i, "mean_arterial": 96,
                      "pulse_rate": 70})
        low = _reading(conn, ada, "hub-ada", "spo2", now - timedelta(minutes=40),
                       {"spo2": 89, "pulse_rate": 98})
        rule = load_ruleset().by_id()["spo2_low"]
        with conn.transaction():
            change = apply_finding(conn, patient_id=ada, rule=rule, at=low.taken_at,
                                   team_id="copd", finding=Finding(
                                       True, Severity.AMBER, "SpO2 89 % (amber)", (low,)))
        assert change is not None and spo2
        bob_reading = _reading(conn, bob, "hub-bob", "spo2", now - timedelta(hours=1),
                               {"spo2": 90, "pulse_rate": 101})
    return ada, bob, change.alert_id, bob_reading.id


def _deliver(url: str, smtp: SmtpServer, stop: threading.Event) -> None:
    """The alert worker's outbox loop, as `homeward alerts` runs it, against real SMTP."""
    outbox = Outbox(default_senders(ChannelSettings(smtp_host="127.0.0.1", smtp_port=smtp.port,
                                                    smtp_timeout=5)))
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            outbox.deliver_due(conn, datetime.now(UTC))
            stop.wait(0.1)


@pytest.fixture(scope="module")
def ward(postgres_server: Any) -> Iterator[Ward]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"portal{id(postgres_server)}", template=_TEMPLATE)
    ada, bob, alert, bob_reading = seed(url)
    smtp = SmtpServer()
    smtp.controller.start()
    stop = threading.Event()
    worker = threading.Thread(target=_deliver, args=(url, smtp, stop), daemon=True)
    worker.start()
    try:
        with running_api(Settings(database_url=url)) as base:
            yield Ward(url, base, smtp, ada, bob, alert, bob_reading)
    finally:
        stop.set()
        worker.join(10)
        smtp.controller.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


#: What the browser's console said against the pages' Content-Security-Policy.
CSP_REFUSALS: list[str] = []


def _context(browser: Browser, viewport: ViewportSize) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=viewport, timezone_id="Europe/London",
                                  locale="en-GB")
    page = context.new_page()
    page.on("console", lambda m: CSP_REFUSALS.append(m.text)
            if "Content Security Policy" in m.text else None)
    return context, page


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"portal-{name}.png"), full_page=True)


def _no_serious_violations(page: Page, name: str) -> None:
    results = Axe().run(page)
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{name}: {bad}"


def _codes(ward: Ward) -> list[str]:
    found = [CODE.search(str(m.get_payload())) for m in ward.smtp.to(ADA_EMAIL)
             if m["Subject"] == patient_auth.CODE_SUBJECT]
    return [m.group(1) for m in found if m]


def _patient_signs_in(ward: Ward, page: Page, *, check: str | None = None) -> None:
    """From the portal's address to the home page with the code from the e-mail; ``check``
    names the screenshots and runs axe-core on the sign-in and code pages."""
    before = len(_codes(ward))
    page.goto(ward.base + "/my")
    expect(page).to_have_url(ward.base + "/my/sign-in")
    if check:
        _no_serious_violations(page, f"sign-in {check}")
        _shot(page, f"sign-in-{check}")
    page.get_by_label("Your e-mail address").fill(ADA_EMAIL)
    page.get_by_role("button", name="Send me a code").click()
    expect(page).to_have_url(ward.base + "/my/sign-in/code")
    code = wait_for(lambda: _codes(ward)[before:], 15, "the sign-in code's e-mail")[-1]
    if check:
        _no_serious_violations(page, f"code {check}")
        _shot(page, f"code-{check}")
    page.get_by_label("Sign-in code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ward.base + "/my")


def _nurse(browser: Browser, ward: Ward) -> tuple[BrowserContext, Page]:
    context, page = _context(browser, DESKTOP)
    page.goto(ward.base + "/login")
    page.fill("input[name=username]", "cora")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(queue)?$"))
    return context, page


def test_a_patient_signs_in_with_a_code_sees_their_readings_and_confirms_the_nurses_message(
        browser: Browser, ward: Ward) -> None:
    nurse_ctx, nurse = _nurse(browser, ward)
    patient_ctx, patient = _context(browser, TABLET)
    try:
        # The COPD nurse looks at Ada's record; a blood pressure arrives after she did.
        nurse.goto(ward.base + f"/patients/{ward.ada}")
        expect(nurse.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
        with psycopg.connect(ward.url, autocommit=True) as conn:
            wait_for(lambda: conn.execute(
                "SELECT 1 FROM access_audit WHERE patient_id = %s AND role = 'nurse'",
                (ward.ada,)).fetchone(), 5, "the nurse's audited look")
            _reading(conn, ward.ada, "hub-ada", "blood_pressure", datetime.now(UTC),
                     {"systolic": 151, "diastolic": 92, "mean_arterial": 112, "pulse_rate": 77})

        _patient_signs_in(ward, patient, check="768")
        expect(patient.get_by_role("heading", name="My readings")).to_be_visible()
        expect(patient.locator(".bar")).to_contain_text("Signed in as Ada Lovelace")
        oxygen = patient.locator("#latest .card[data-kind=spo2]")
        expect(oxygen).to_contain_text("Oxygen level")
        expect(oxygen).to_contain_text("89 %")
        expect(oxygen).to_contain_text("Seen by COPD Team")
        seen_time = oxygen.locator(".seen time")
        expect(seen_time).to_have_attribute("title", re.compile(r"\d\d:\d\d:\d\d (GMT|BST)"))
        expect(seen_time).to_have_text(re.compile(r"^\d\d:\d\d today$"))
        pressure = patient.locator("#latest .card[data-kind=blood_pressure]")
        expect(pressure).to_contain_text("151/92 mmHg")
        expect(pressure).to_contain_text("Not seen by your care team yet")
        chart = patient.locator("figure#chart-spo2")
        expect(chart.locator("canvas")).to_have_count(1)
        assert int(chart.get_attribute("data-points") or 0) >= 16
        expect(patient.locator("figure#chart-blood_pressure canvas")).to_have_count(1)
        expect(patient.locator("#readings tbody tr")).to_have_count(22)
        expect(patient.locator("body")).not_to_contain_text("Bob")
        _no_serious_violations(patient, "home 768")
        _shot(patient, "home-768")

        # One reading, and another patient's: 404, as an id that does not exist.
        oxygen.get_by_role("link", name="Oxygen level").click()
        expect(patient.get_by_role("heading", name="Oxygen level")).to_be_visible()
        expect(patient.locator("dl.facts")).to_contain_text("Seen by COPD Team")
        _no_serious_violations(patient, "reading 768")
        _shot(patient, "reading-768")
        response = patient.goto(ward.base + f"/my/readings/{ward.bob_reading}")
        assert response is not None and response.status == 404
        expect(patient.get_by_role("heading", name="Page not found")).to_be_visible()
        expect(patient.locator("body")).not_to_contain_text("101")
        _no_serious_violations(patient, "not found 768")
        _shot(patient, "not-found-768")

        # The nurse writes from the alert page and asks for a confirmation.
        nurse.goto(ward.base + f"/alerts/{ward.alert}")
        panel = nurse.locator("#patient-messages")
        panel.get_by_label("Message to the patient about this alert").fill(
            "Please repeat your oxygen reading in 15 minutes, sitting down.")
        panel.get_by_label("Ask the patient to confirm").check()
        panel.get_by_role("button", name="Send to patient").click()
        expect(nurse.locator("#messages")).to_contain_text("Please repeat your oxygen reading")
        expect(nurse.locator("#messages")).to_contain_text("waiting for the patient to confirm")
        _shot(nurse, "nurse-alert-sent-1280")
        wait_for(lambda: any(m["Subject"] == "A new message from COPD Team"
                             for m in ward.smtp.to(ADA_EMAIL)), 15, "the message's notice")

        # The patient sees it, confirms it and replies.
        patient.goto(ward.base + "/my")
        notice = patient.locator("#message-notice")
        expect(notice).to_contain_text("asked you to confirm a message")
        expect(patient.get_by_role("navigation", name="Your pages")).to_contain_text("1 new")
        notice.get_by_role("link", name="Read your messages").click()
        message = patient.locator("article.message").first
        expect(message).to_contain_text("From Cora COPD Nurse, COPD Team")
        expect(message).to_contain_text("Please repeat your oxygen reading in 15 minutes")
        _no_serious_violations(patient, "messages 768")
        _shot(patient, "messages-768")
        message.get_by_role("button", name="Confirm").click()
        expect(patient.get_by_role("status")).to_contain_text("Your care team can see that")
        message = patient.locator("article.message").first
        expect(message).to_contain_text("You confirmed this")
        message.get_by_label("Reply to COPD Team").fill("Done. It was 94 % this time.")
        message.get_by_role("button", name="Send reply").click()
        expect(patient.get_by_role("status")).to_contain_text("Your reply has been sent")
        expect(patient.locator("article.message").first.locator(".reply")).to_contain_text(
            "Done. It was 94 % this time.")
        _no_serious_violations(patient, "messages after 768")
        _shot(patient, "messages-confirmed-768")

        # The nurse sees the confirmation and the reply on the patient's page.
        nurse.goto(ward.base + f"/patients/{ward.ada}")
        sent = nurse.locator("#messages li").first
        expect(sent).to_contain_text(re.compile(r"read \d\d:\d\d today"))
        expect(sent).to_contain_text(re.compile(r"confirmed \d\d:\d\d today"))
        expect(sent).to_contain_text("Patient replied")
        expect(sent).to_contain_text("Done. It was 94 % this time.")
        expect(sent.get_by_role("link", name=f"alert {ward.alert}")).to_be_visible()
        expect(nurse.locator("#h-opened + ol")).to_contain_text("the patient (portal)")
        nurse.locator("#patient-messages").scroll_into_view_if_needed()
        _shot(nurse, "nurse-patient-confirmed-1280")
    finally:
        patient_ctx.close()
        nurse_ctx.close()
    with psycopg.connect(ward.url) as conn:
        rows = conn.execute("SELECT DISTINCT clinician_id, patient_id, outcome FROM access_audit"
                            " WHERE role = 'patient'").fetchall()
    assert {(c, p) for c, p, _ in rows} == {(None, ward.ada)}
    assert {o for _, _, o in rows} == {"ok", "not_found"}
    assert CSP_REFUSALS == []


def test_no_serious_or_critical_accessibility_violations_at_1280(browser: Browser,
                                                                  ward: Ward) -> None:
    context, page = _context(browser, DESKTOP)
    try:
        _patient_signs_in(ward, page, check="1280")
        with psycopg.connect(ward.url) as conn:
            row = conn.execute("SELECT id::text FROM reading WHERE patient_id = %s LIMIT 1",
                               (ward.ada,)).fetchone()
        assert row is not None
        for name, path, status in (("home", "/my?range=30d", 200),
                                   ("reading", f"/my/readings/{row[0]}", 200),
                                   ("messages", "/my/messages", 200),
                                   ("not-found", "/my/readings/nothing", 404)):
            response = page.goto(ward.base + path)
            assert response is not None and response.status == status, path
            page.wait_for_load_state("networkidle")
            _no_serious_violations(page, f"{name} 1280")
            _shot(page, f"{name}-1280")
        page.get_by_role("link", name="Back to my readings").click()
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(ward.base + "/my/sign-in?signed_out=1")
        expect(page.get_by_role("status")).to_contain_text("You have signed out")
        response = page.goto(ward.base + "/my/messages")
        expect(page).to_have_url(ward.base + "/my/sign-in")
    finally:
        context.close()
