"""The whole hub on virtual devices: device_sim → bleak → edge.ble → agent → outbox → Mosquitto.

Only the radio is simulated; the collector, the GATT decoders, the outbox,
paho and the broker are the real ones.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from device_sim.radio import VirtualRadio
from edge.agent import EdgeAgent
from edge.ble import BleTiming
from edge.publisher import BrokerParams
from edge.settings import EdgeSettings
from homeward.kinds import Kind
from homeward.wire import PairedDevice
from stack.services import MosquittoServer
from tests.edge_mqtt_support import Subscriber
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# No server in these tests confirms storage: the hub deletes on the broker's PUBACK.
FAST = EdgeSettings(stored_acks=False, reconnect_min_s=0.05, reconnect_max_s=0.3,
                    status_interval_s=1, messages_per_second=200)
TIMING = BleTiming(scan_window_s=1.0, reconnect_initial_s=0.05, reconnect_max_s=0.5)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def until(predicate: Callable[[], object], limit_s: float = 15.0, what: str = "") -> None:
    await asyncio.to_thread(wait_for, predicate, limit_s, what)


async def test_virtual_devices_reach_the_broker_and_stored_records_are_fetched_once(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = Subscriber(mosquitto, ["homeward/v1/hubs/+/readings"])
    with VirtualRadio("home-sim-1") as radio:
        meter = radio.add_device(Kind.GLUCOSE)
        meter.store_records(30, every=timedelta(hours=4))
        cuff = radio.add_device(Kind.BLOOD_PRESSURE)
        paired = [PairedDevice(address=p.address, kind=p.kind) for p in radio]

        def agent() -> EdgeAgent:
            return EdgeAgent(hub_id="home-sim-1", state_dir=tmp_path / "hub",
                             broker=BrokerParams(port=mosquitto.port), ble_backend="sim",
                             devices=paired, settings=FAST, ble_timing=TIMING)

        try:
            async with agent() as first:
                await until(lambda: Counter(r.device for r in server.readings())[meter.address]
                            == 30, what="the meter's 30 stored records")
                cuff.measure()
                await until(lambda: cuff.address in {r.device for r in server.readings()},
                            what="the cuff's reading")
                await until(lambda: any(d.connected for d in first.status().devices))
            assert first.outbox is None
            # a new agent on the same state folder: the RACP cursor survived, only new records
            meter.measure()
            async with agent():
                await until(lambda: Counter(r.device for r in server.readings())[meter.address]
                            == 31, what="only the new record")
                await asyncio.sleep(0.5)
            readings = server.readings()
        finally:
            server.close()
    from_meter = [r for r in readings if r.device == meter.address]
    assert len(from_meter) == len({r.raw for r in from_meter}) == 31  # none fetched twice
    assert all(r.kind is Kind.GLUCOSE for r in from_meter)
    assert [r.taken_at for r in from_meter] == sorted(r.taken_at for r in from_meter)
    (bp,) = [r for r in readings if r.device == cuff.address]
    assert bp.kind is Kind.BLOOD_PRESSURE and {"systolic", "diastolic"} <= set(bp.values)
