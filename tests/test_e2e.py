"""End to end: a virtual blood-pressure cuff's reading becomes an alert a nurse sees.

Every part is real but the Bluetooth radio: the edge agent's bleak code talks
to device_sim's virtual cuff; the hub logs in to a private Mosquitto with its
own password under the production ACL; `homeward ingest`, `homeward alerts`
and `homeward serve` run as separate processes against a private PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from device_sim.radio import VirtualRadio
from edge.agent import EdgeAgent
from edge.publisher import BrokerParams
from homeward.kinds import Kind
from homeward.services import MosquittoServer, free_port
from homeward.services.mosquitto import default_acl
from homeward.supervisor import Child, Supervisor
from homeward.wire import PairedDevice
from server import admin

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HUB = "hub-e2e"
CUFF = "C4:7C:8D:6A:3E:21"
SERVER_USER = "homeward-server"


@pytest.fixture
def platform(db_url: str, mosquitto_factory: Callable[..., MosquittoServer], tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Seeded database, broker with per-hub passwords and ACL, and the three server processes."""
    with psycopg.connect(db_url) as conn:
        org = admin.create_organisation(conn, name="E2E Trust")
        admin.create_team(conn, team_id="district-nursing", organisation_id=org,
                          name="District Nursing", kind="district_nursing")
        nurse = admin.create_clinician(conn, username="nurse", display_name="Nurse",
                                       teams=["district-nursing"])
        patient = admin.create_patient(conn, display_name="Patient E2E",
                                       teams=["district-nursing"])
        admin.create_hub(conn, hub_id=HUB)
        admin.enrol(conn, hub_id=HUB, patient_id=patient,
                    valid_from=datetime.now(UTC) - timedelta(days=1))
        admin.pair_device(conn, hub_id=HUB, address=CUFF, kind=Kind.BLOOD_PRESSURE)
    broker = mosquitto_factory(users={SERVER_USER: "server-pw", HUB: "hub-pw"},
                               acl=default_acl((SERVER_USER,)))
    api_port = free_port()
    env = {
        "HOMEWARD_DATABASE_URL": db_url,
        "HOMEWARD_MQTT_PORT": str(broker.port),
        "HOMEWARD_MQTT_USERNAME": SERVER_USER,
        "HOMEWARD_MQTT_PASSWORD": "server-pw",
        "HOMEWARD_API_PORT": str(api_port),
        "HOMEWARD_INGEST_CLIENT_ID": f"ingest-{api_port}",
    }
    children = Supervisor()
    for name, args in (("ingest", ["ingest"]), ("alerts", ["alerts"]), ("api", ["serve"])):
        child = children.add(Child(name, ["homeward", *args], env, tmp_path / f"{name}.log"))
        request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                      (name, lambda f=child.log_file: f.read_text()[-4000:])]
    api = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "API did not become healthy"
        time.sleep(0.2)
    try:
        yield {"api": api, "token": nurse.api_token, "patient": patient, "broker": broker,
               "state": tmp_path / "hub"}
    finally:
        children.stop_all()


async def _poll(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"nothing after {seconds} s")


def test_virtual_cuff_reading_raises_an_alert_listed_by_the_api(platform: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {platform['token']}"}

    def open_alerts() -> list[dict[str, Any]]:
        response = httpx.get(f"{platform['api']}/api/alerts", headers=auth, timeout=5)
        response.raise_for_status()
        return [a for a in response.json() if a["patient_id"] == platform["patient"]]

    async def scenario() -> list[dict[str, Any]]:
        with VirtualRadio(HUB, advertising_interval_s=0.05) as radio:
            cuff = radio.add_device(Kind.BLOOD_PRESSURE, address=CUFF)
            agent = EdgeAgent(
                hub_id=HUB, state_dir=platform["state"], ble_backend="sim",
                broker=BrokerParams(port=platform["broker"].port, username=HUB,
                                    password="hub-pw"),
                devices=[PairedDevice(address=CUFF, kind=Kind.BLOOD_PRESSURE)])
            async with agent:
                cuff.measure({"systolic": 128.0, "diastolic": 82.0, "mean_arterial": 97.0,
                              "pulse_rate": 70.0}, at=cuff.device_time() - timedelta(minutes=5))
                cuff.measure({"systolic": 186.0, "diastolic": 104.0, "mean_arterial": 131.0,
                              "pulse_rate": 88.0})
                return await _poll(open_alerts, seconds=60)  # type: ignore[no-any-return]

    assert open_alerts() == []
    (alert,) = asyncio.run(scenario())
    assert alert["severity"] == "red" and alert["state"] == "open"
    assert alert["rule_id"] == "bp_severe"
    assert alert["team_id"] == "district-nursing"
    assert any(r["values"]["systolic"] == 186.0 for r in alert["readings"])

    now = datetime.now(UTC)
    readings = httpx.get(
        f"{platform['api']}/api/patients/{platform['patient']}/readings",
        params={"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()},
        headers=auth, timeout=5).json()["readings"]
    systolics = sorted(r["values"]["systolic"] for r in readings)
    assert systolics == [128.0, 186.0]  # each stored once, in canonical mmHg
    assert all(r["device"] == CUFF for r in readings)
