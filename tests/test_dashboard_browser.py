"""The nurse dashboard in a real browser (headless Chromium driven by Playwright), over
the whole platform: `homeward ingest`, `homeward alerts` and `homeward serve` as
processes, readings published by the patient's hub through the broker.

A nurse signs in with a username and password, sees no alerts, and a severe
blood-pressure reading appears on the page by itself (server-sent events), without a
reload.  A personal threshold set on the patient page with a reason takes effect on
the next reading (the engine raises at the patient's own limit), and the audit lists
each access the nurse made on the way.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, expect, sync_playwright

from homeward.wire import readings_topic
from server import admin

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Flags for a sandboxed CI machine with no network: no sandbox (we run as root),
#: and no background calls to Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _publish_as_hub(platform: dict[str, Any], values: dict[str, float]) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"browser-test-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(platform["hub"], platform["hub_password"])
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", platform["broker"].port)
    client.loop_start()
    try:
        assert connected.wait(10)
        reading = {"v": 1, "id": str(uuid.uuid4()), "kind": "blood_pressure",
                   "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "device": platform["device"], "values": values}
        info = client.publish(readings_topic(platform["hub"]), orjson.dumps(reading), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_nurse_signs_in_and_sees_a_new_alert_arrive_live(platform: dict[str, Any],
                                                         tmp_path: Path) -> None:
    # The test command installs Chromium (./scripts/setup --dev); a missing browser
    # is a broken setup, not a reason to pass quietly.
    assert Path(CHROMIUM).exists(), "Chromium is missing: run ./scripts/setup --dev"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(platform["api"] + "/")
            expect(page).to_have_url(platform["api"] + "/login")
            page.fill("input[name=username]", "nurse")
            page.fill("input[name=password]", "wrong")
            page.click("button[type=submit]")
            expect(page.get_by_text("Wrong username, password or token.")).to_be_visible()

            page.fill("input[name=username]", "nurse")
            page.fill("input[name=password]", platform["nurse_password"])
            page.click("button[type=submit]")
            expect(page.get_by_text("No open alerts.")).to_be_visible()
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)

            _publish_as_hub(platform, {"systolic": 192, "diastolic": 110, "mean_arterial": 137})
            row = page.locator("#alerts tbody tr.red", has_text="Patient E2E")
            expect(row).to_have_count(1, timeout=20_000)
            expect(row).to_contain_text("Severe hypertension")
            expect(row).to_contain_text("open")
            page.screenshot(path=str(tmp_path / "dashboard.png"))
        finally:
            browser.close()


def _sign_in(browser: Browser, base: str, username: str, password: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).not_to_have_url(base + "/login")
    return page


def test_a_personal_threshold_takes_effect_on_the_next_reading_and_the_audit_lists_it(
        platform: dict[str, Any], tmp_path: Path) -> None:
    base, patient = platform["api"], platform["patient"]
    with psycopg.connect(platform["db_url"]) as conn:
        (org,) = conn.execute("SELECT id FROM organisation").fetchone() or (None,)
        admin.create_clinician(conn, username="caldicott", display_name="Ada Admin",
                               role="admin", organisation_id=org, password="admin-pw-1234")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = _sign_in(browser, base, "nurse", platform["nurse_password"])
            page.goto(base + f"/patients/{patient}")
            # no blood pressure measured yet: its rules wait under their own disclosure
            page.get_by_text("Rules for kinds this patient has not measured").click()
            form = page.locator("form#rule-bp_severe")
            form.get_by_label("Raise: systolic ≥").fill("170")
            form.get_by_label("Reason (required)").fill("Renal team asked for 170")
            form.get_by_role("button", name="Save severe hypertension").click()
            expect(page.locator("section[aria-labelledby=h-thresholds] ol.history")
                   ).to_contain_text("Renal team asked for 170")

            page.goto(base + "/")
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            # 175 is under the shipped 180: only the patient's own limit makes it severe
            _publish_as_hub(platform, {"systolic": 175, "diastolic": 96, "mean_arterial": 122})
            row = page.locator("#alerts tbody tr.red", has_text="Patient E2E")
            expect(row).to_have_count(1, timeout=20_000)
            expect(row).to_contain_text("Severe hypertension")
            expect(row).to_contain_text("175")
            row.get_by_role("button", name="Acknowledge").click()
            expect(row).to_contain_text("acknowledged", timeout=10_000)
            page.screenshot(path=str(tmp_path / "personal-threshold.png"))

            audit = _sign_in(browser, base, "caldicott", "admin-pw-1234")
            audit.goto(base + f"/patients/{patient}")
            opened = audit.locator("section[aria-labelledby=h-opened] ol.history")
            for line in ("Nurse", "PUT /api/patients/{patient_id}/rules/{rule_id}",
                         "POST /api/alerts/{alert_id}/acknowledge"):
                expect(opened).to_contain_text(line)
            audit.screenshot(path=str(tmp_path / "who-opened.png"), full_page=True)
        finally:
            browser.close()
    with psycopg.connect(platform["db_url"]) as conn:
        seen = {(u, action, outcome) for u, action, outcome in conn.execute(
            "SELECT c.username, a.action, a.outcome FROM access_audit a"
            " JOIN clinician c ON c.id = a.clinician_id WHERE a.patient_id = %s",
            (patient,))}
    # the page view, the threshold change, the alert's acknowledgement, the admin's view
    assert {("nurse", "GET /patients/{patient_id}", "ok"),
            ("nurse", "PUT /api/patients/{patient_id}/rules/{rule_id}", "ok"),
            ("nurse", "POST /api/alerts/{alert_id}/acknowledge", "ok"),
            ("caldicott", "GET /patients/{patient_id}", "ok")} <= seen, seen
