"""`homeward demo` as a tester meets it: one command, then demo.json to talk to it.

Runs the real command in a subprocess, publishes a reading with
`mosquitto_pub` and the spare hub's credentials from demo.json, and checks
both that reading's alert and the deteriorating patient's alert through the
API; then Ctrl-C must stop everything cleanly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack.services import free_port
from stack.services.common import wait_for_port
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def test_demo_end_to_end_with_mosquitto_pub(tmp_path: Path) -> None:
    state = tmp_path / "state"
    api_port = free_port()
    log = (tmp_path / "demo.out").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "stack", "demo", "--state-dir", str(state), "--api-port",
         str(api_port), "--interval", "1", "--no-live"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        info = wait_for(lambda: (state / "demo.json").exists()
                     and json.loads((state / "demo.json").read_text()), 90, "demo.json")
        auth = {"Authorization": f"Bearer {info['clinician']['api_token']}"}

        def alerts_for(patient: int) -> list[dict[str, Any]]:
            response = httpx.get(f"{info['api_url']}/alerts", headers=auth, timeout=5)
            response.raise_for_status()
            return [a for a in response.json()
                    if a["patient_id"] == patient and a["rule_id"] == "bp_severe"]

        # The deteriorating patient of the first home raises an alert on its own.
        first = info["hubs"][0]["patient_id"]
        wait_for(lambda: alerts_for(first), 60, "the deteriorating patient's alert")

        # A tester's reading, in the DESIGN.md format, from any MQTT client.
        spare = info["spare_hub"]
        reading = {"v": 1, "id": str(uuid.uuid4()), "kind": "blood_pressure",
                   "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "device": "spare-cuff", "values": {"systolic": 186, "diastolic": 104}}
        subprocess.run(
            ["mosquitto_pub", "-h", info["mqtt"]["host"], "-p", str(info["mqtt"]["port"]),
             "-u", spare["username"], "-P", spare["password"], "-q", "1",
             "-t", spare["readings_topic"], "-m", json.dumps(reading)],
            check=True, timeout=10)
        (alert,) = wait_for(lambda: alerts_for(spare["patient_id"]), 30, "the spare hub's alert")
        assert alert["severity"] == "red"
        assert [r["id"] for r in alert["readings"]] == [reading["id"]]

        # The clinician login in demo.json opens the dashboard.
        page = httpx.post(f"{info['dashboard_url']}login", follow_redirects=True, timeout=5,
                          data={"username": info["clinician"]["username"],
                                "password": info["clinician"]["password"]})
        assert page.status_code == 200 and "Severe hypertension" in page.text
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
        log.close()
    output = (tmp_path / "demo.out").read_text()
    assert code == 0, output
    assert "stopped." in output
    assert not (state / "postgres" / "postmaster.pid").exists()
    assert not wait_for_port(info["mqtt"]["port"], 0.5)
    assert not wait_for_port(api_port, 0.5)
