"""A new installation from nothing, as an adopter would run it (issue 11, "done when"):

``homeward admin bootstrap`` → an organisation, a team and a nurse → ``homeward admin
hub provision`` → ``homeward edge --bundle`` connects over TLS with those credentials →
a device paired through the admin API reaches the hub as its config → its reading flows
through the broker and the ingest → the nurse sees it through the API; ``homeward admin
hub revoke`` → the hub is disconnected and refused at once.

Everything is a real process: the CLI commands, `homeward ingest`, `homeward serve`,
`homeward edge`, and `homeward sim devices` (the one stand-in: a virtual Bluetooth
radio in its own process).  The broker is production-shaped: the dynamic-security
plugin with a user per server role, a TLS listener with certificates made by the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack.services import MosquittoServer, free_port
from stack.services.mosquitto import BrokerTls
from stack.supervisor import Child, Supervisor
from tests.broker_support import CONFIG, INGEST, PASSWORDS, PROVISIONER, Probe, dynsec_broker
from tests.test_sim_remote import REPO, sim_devices
from tests.tls_support import issue, make_authority
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HUB = "hub-0001"


def homeward(env: dict[str, str], *args: str) -> str:
    """``homeward ARGS`` as its own process; its stdout (fails the test on a non-zero exit)."""
    run = subprocess.run([sys.executable, "-m", "stack", *args], cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=60, check=False)
    assert run.returncode == 0, (args, run.stdout, run.stderr)
    return run.stdout


def _logs(request: pytest.FixtureRequest, name: str, path: Path) -> None:
    request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                  (name, lambda: path.read_text()[-4000:] if path.exists()
                                   else "(no log)")]


@pytest.fixture
def services(request: pytest.FixtureRequest, tmp_path: Path
             ) -> Iterator[Callable[[str, list[str], dict[str, str]], Child]]:
    children = Supervisor()

    def start(name: str, args: list[str], env: dict[str, str]) -> Child:
        child = children.add(Child(name, ["stack", *args], env, tmp_path / f"{name}.log"))
        _logs(request, name, child.log_file)
        return child

    try:
        yield start
    finally:
        children.stop_all()


def test_a_new_installation_from_bootstrap_to_a_reading_the_nurse_sees(
        db_url: str, mosquitto_factory: Callable[..., MosquittoServer], tmp_path: Path,
        services: Callable[[str, list[str], dict[str, str]], Child]) -> None:
    with ExitStack() as closing:
        _new_installation(db_url, mosquitto_factory, tmp_path, services, closing)


def _new_installation(db_url: str, mosquitto_factory: Callable[..., MosquittoServer],
                      tmp_path: Path, services: Callable[[str, list[str], dict[str, str]], Child],
                      closing: ExitStack) -> None:
    db = {"HOMEWARD_DATABASE_URL": db_url}
    # -- the people ------------------------------------------------------------------
    boot = json.loads(homeward(db, "admin", "bootstrap", "--organisation", "North Trust",
                               "--username", "ann", "--name", "Ann Admin", "--json"))
    homeward(db, "admin", "team", "create", "copd", "--name", "COPD", "--kind", "copd")
    nurse = json.loads(homeward(db, "admin", "clinician", "create", "nina", "--name",
                                "Nina Nurse", "--team", "copd", "--password",
                                "a sensible passphrase", "--json"))
    patient = json.loads(homeward(db, "admin", "patient", "create", "--name", "Alice",
                                  "--team", "copd", "--nhs", "943 476 5919", "--json"))["id"]

    # -- the broker (dynamic security, TLS for hubs) and the server --------------------
    ca = make_authority(tmp_path)
    cert, key = issue(ca, tmp_path, "broker", server=True)
    broker = dynsec_broker(mosquitto_factory, tls=BrokerTls(ca.cert_file, cert, key))
    mqtt = {"HOMEWARD_MQTT_HOST": "127.0.0.1", "HOMEWARD_MQTT_PORT": str(broker.port)}
    operator = {**db, **mqtt, "HOMEWARD_MQTT_PROVISIONER_USERNAME": PROVISIONER,
                "HOMEWARD_MQTT_PROVISIONER_PASSWORD": PASSWORDS[PROVISIONER],
                "HOMEWARD_MQTT_CA_FILE": str(ca.cert_file),
                "HOMEWARD_HUB_BROKER_URL": f"mqtts://127.0.0.1:{broker.tls_port}"}
    bundle = tmp_path / "hub-0001.json"
    homeward(operator, "admin", "hub", "provision", HUB, "--out", str(bundle))
    provisioned = json.loads(bundle.read_text())
    assert provisioned["broker_url"] == f"mqtts://127.0.0.1:{broker.tls_port}"
    assert provisioned["ca_pem"] == ca.cert_file.read_text()
    assert bundle.stat().st_mode & 0o777 == 0o600
    api_port = free_port()
    services("ingest", ["ingest"], {**db, **mqtt, "HOMEWARD_MQTT_USERNAME": INGEST,
                                    "HOMEWARD_MQTT_PASSWORD": PASSWORDS[INGEST],
                                    "HOMEWARD_INGEST_CLIENT_ID": INGEST})
    services("api", ["serve"], {**db, **mqtt, "HOMEWARD_MQTT_USERNAME": CONFIG,
                                "HOMEWARD_MQTT_PASSWORD": PASSWORDS[CONFIG],
                                "HOMEWARD_API_PORT": str(api_port)})
    base = f"http://127.0.0.1:{api_port}"
    wait_for(lambda: _status(base + "/health") == 200, 60, "the API")
    as_admin = closing.enter_context(httpx.Client(
        base_url=base, timeout=10, headers={"Authorization": f"Bearer {boot['api_token']}"}))
    as_nurse = closing.enter_context(httpx.Client(
        base_url=base, timeout=10, headers={"Authorization": f"Bearer {nurse['api_token']}"}))

    # -- the home: a cuff and a thermometer; the hub knows only the thermometer -------
    with sim_devices(tmp_path, "--radio", HUB, "--blood-pressure", "1", "--temperature", "1",
                     "--every", "0.5") as (_radio, announced):
        by_kind = {d["kind"]: d["address"] for d in announced["devices"]}
        cuff, thermometer = by_kind["blood_pressure"], by_kind["temperature"]
        state = tmp_path / "hub-state"
        state.mkdir()
        (state / "paired.json").write_text(json.dumps(
            [{"address": thermometer, "kind": "temperature"}]))
        edge = services("edge", ["edge", "--bundle", str(bundle), "--ble", "sim",
                                 "--sim-radio", announced["url"], "--state-dir", str(state)],
                        {"HOMEWARD_EDGE_RECONNECT_MIN_S": "0.05",
                         "HOMEWARD_EDGE_STATUS_INTERVAL_S": "1"})
        wait_for(lambda: _hub(as_admin)["state"] == "online", 30, "the hub online")
        start = datetime.now(UTC) - timedelta(minutes=1)
        assert as_admin.post(f"/api/admin/patients/{patient}/enrolments", json={
            "hub_id": HUB, "valid_from": start.isoformat()}).status_code == 201
        wait_for(lambda: _kinds(as_nurse, patient) == {"temperature"}, 30,
                 "the thermometer's readings and no cuff's")
        paired = as_admin.post(f"/api/admin/hubs/{HUB}/devices",
                               json={"address": cuff, "kind": "blood_pressure"})
        assert paired.status_code == 200, paired.text
        # the cuff's readings flow only once the hub has its new config
        wait_for(lambda: "blood_pressure" in _kinds(as_nurse, patient), 30,
                 "the cuff's reading, seen by the nurse")
        readings = _readings(as_nurse, patient)
        assert {r["device"] for r in readings if r["kind"] == "blood_pressure"} == {cuff}
        assert all(r["hub_id"] == HUB for r in readings)
        assert f"connected to 127.0.0.1:{broker.tls_port}" in edge.log_file.read_text()

        # -- revoked: the running hub is disconnected, its password refused ---------------
        homeward(operator, "admin", "hub", "revoke", HUB)
        wait_for(lambda: "broker refused the connection" in edge.log_file.read_text(), 10,
                 "the edge disconnected and refused")
        probe = Probe(broker.tls_port, HUB, provisioned["password"], tls=True,
                      ca_file=ca.cert_file)
        try:
            assert probe.connack != "Success" and not probe.connected, probe.connack
        finally:
            probe.close()
        assert _hub(as_admin)["revoked_at"] is not None


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _hub(api: httpx.Client) -> dict[str, Any]:
    (hub,) = [h for h in api.get("/api/admin/hubs").json() if h["id"] == HUB]
    return dict(hub)


def _readings(api: httpx.Client, patient: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    response = api.get(f"/api/patients/{patient}/readings", params={
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(minutes=1)).isoformat()})
    assert response.status_code == 200, response.text
    return list(response.json()["readings"])


def _kinds(api: httpx.Client, patient: int) -> set[str]:
    return {r["kind"] for r in _readings(api, patient)}
