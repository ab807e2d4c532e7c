"""Issue 3, "done when": one virtual device of each type, through the real pipeline.

A hub with a cuff, a pulse oximeter, a thermometer, a scale and a glucose
meter — several of them in non-canonical units (kPa, °F, lb, mg/dL) — and a
real edge agent on the simulator's bleak backend; readings travel through
the real broker and `homeward ingest` into PostgreSQL, where each must be in
canonical units.  Byte vectors come from ../shared/reference/ble-gatt.md §3.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from device_sim.radio import VirtualRadio
from edge.agent import EdgeAgent
from edge.publisher import BrokerParams
from homeward.kinds import Kind
from homeward.wire import PairedDevice

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ADDRESSES = {
    Kind.BLOOD_PRESSURE: "C0:00:00:00:00:01",
    Kind.SPO2: "C0:00:00:00:00:02",
    Kind.TEMPERATURE: "C0:00:00:00:00:03",
    Kind.WEIGHT: "C0:00:00:00:00:04",
    Kind.GLUCOSE: "C0:00:00:00:00:05",
}
# (kind, bytes the device indicates, the canonical values expected in PostgreSQL)
PUSHED = [
    # V3: 16.0/10.7/12.4 kPa -> mmHg (1 mmHg = 0.133322 kPa)
    (Kind.BLOOD_PRESSURE, "01 A0 F0 6B F0 7C F0",
     {"systolic": 120.0, "diastolic": 80.3, "mean_arterial": 93.0}),
    # V8: SpO2 97 %, pulse 72 /min
    (Kind.SPO2, "00 61 00 48 00", {"spo2": 97.0, "pulse_rate": 72.0}),
    # FLOAT 98.6 °F (mantissa 986, exponent -1), flags b0 = Fahrenheit -> 37.0 °C
    (Kind.TEMPERATURE, "01 DA 03 00 FF", {"body_temperature": 37.0}),
    # 16000 x 0.01 lb = 160 lb -> 72.57 kg (0.45359237 kg/lb)
    (Kind.WEIGHT, "01 80 3E", {"body_weight": 72.57}),
]


def _stored(db_url: str) -> dict[str, list[dict[str, float]]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute('SELECT kind, "values" FROM reading ORDER BY taken_at').fetchall()
    found: dict[str, list[dict[str, float]]] = {}
    for kind, values in rows:
        found.setdefault(kind, []).append(values)
    return found


def test_one_device_of_each_type_delivers_canonical_readings(platform: dict[str, Any]) -> None:
    hub = platform["hub"]

    async def scenario() -> dict[str, list[dict[str, float]]]:
        with VirtualRadio(hub, advertising_interval_s=0.05) as radio:
            devices = {kind: radio.add_device(kind, address=address,
                                              mg_per_dl=kind is Kind.GLUCOSE)
                       for kind, address in ADDRESSES.items()}
            for kind, hex_bytes, _ in PUSHED:
                devices[kind].push(bytes.fromhex(hex_bytes))
            devices[Kind.GLUCOSE].measure({"blood_glucose": 5.5})  # a stored record (RACP)
            agent = EdgeAgent(
                hub_id=hub, state_dir=platform["state"], ble_backend="sim",
                broker=BrokerParams(port=platform["broker"].port, username=hub,
                                    password=platform["hub_password"]),
                devices=[PairedDevice(address=a, kind=k) for k, a in ADDRESSES.items()])
            async with agent:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    found = await asyncio.to_thread(_stored, platform["db_url"])
                    if len(found) == len(ADDRESSES):
                        return found
                    await asyncio.sleep(0.25)
        raise AssertionError(f"not every kind arrived: {found}")

    found = asyncio.run(scenario())
    for kind, _, expected in PUSHED:
        (values,) = found[kind.value]
        assert values == pytest.approx(expected, abs=0.01), kind
    (glucose,) = found[Kind.GLUCOSE.value]
    assert glucose["blood_glucose"] == pytest.approx(5.5, abs=0.1)  # sent in mg/dL
