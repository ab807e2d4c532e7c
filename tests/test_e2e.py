"""End to end: a virtual blood-pressure cuff's reading becomes an alert a nurse sees.

Every part is real but the Bluetooth radio: the edge agent's bleak code talks
to device_sim's virtual cuff; the hub logs in to a private Mosquitto with its
own password under the production ACL; `homeward ingest`, `homeward alerts`
and `homeward serve` run as separate processes against a private PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from device_sim.radio import VirtualRadio
from edge.agent import EdgeAgent
from edge.publisher import BrokerParams
from homeward.kinds import Kind
from homeward.wire import PairedDevice
from tests.conftest import CUFF, HUB

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


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
