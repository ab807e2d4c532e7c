"""The nurse dashboard in a real browser (headless Chromium driven by Playwright).

A nurse signs in with a username and password, sees no alerts, and a severe
blood-pressure reading published by the patient's hub appears on the page by
itself (server-sent events), without a reload.
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
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import expect, sync_playwright

from homeward.wire import readings_topic

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
