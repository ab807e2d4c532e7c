"""The hub agent: measurement → reading (time, flags), outbox, publishing, status, config."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from edge.agent import EdgeAgent, load_paired, merge_devices, save_paired
from edge.outbox import OutboxFull
from edge.publisher import BrokerParams
from edge.readings import DEVICE_TIME_INVALID, reading_from_measurement
from edge.settings import EdgeSettings
from homeward.kinds import Kind
from homeward.wire import HubConfig, HubStatus, PairedDevice, config_topic
from stack.services import MosquittoServer
from tests.edge_mqtt_support import Subscriber
from tests.waiting import wait_for

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

RECEIVED = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Measurement:
    """The shape of an ``edge.gatt`` Measurement (a value object, not a mock)."""

    kind: Kind
    values: dict[str, float]
    taken_at: datetime | None = None
    flags: tuple[str, ...] = ()
    sequence_number: int | None = field(default=None)


def spo2(taken_at: datetime | None = None, flags: tuple[str, ...] = ()) -> Measurement:
    return Measurement(Kind.SPO2, {"spo2": 96, "pulse_rate": 72}, taken_at, flags)


# -- time: device wall clock → UTC -------------------------------------------------------------

TIME_CASES = [
    # (what, device time, clock offset s, received, expected taken_at, extra flags)
    ("winter: London is UTC", datetime(2026, 1, 15, 8, 0), None,
     datetime(2026, 1, 15, 9, 0, tzinfo=UTC), datetime(2026, 1, 15, 8, 0, tzinfo=UTC), ()),
    ("summer: BST is UTC+1", datetime(2026, 7, 1, 8, 0), None, RECEIVED,
     datetime(2026, 7, 1, 7, 0, tzinfo=UTC), ()),
    ("autumn's repeated hour: the first one", datetime(2026, 10, 25, 1, 30), None,
     datetime(2026, 10, 25, 3, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC), ()),
    ("device an hour fast, offset known", datetime(2026, 7, 1, 9, 0), 3600.0, RECEIVED,
     datetime(2026, 7, 1, 7, 0, tzinfo=UTC), ()),
    ("device 5 min slow, offset known", datetime(2026, 7, 1, 7, 55), -300.0, RECEIVED,
     datetime(2026, 7, 1, 7, 0, tzinfo=UTC), ()),
    ("no device time: the hub's receive time", None, None, RECEIVED, RECEIVED, ()),
    ("a device time in the future is refused", datetime(2027, 7, 1, 8, 0), None, RECEIVED,
     RECEIVED, (DEVICE_TIME_INVALID,)),
    ("a week-old stored record keeps its time", datetime(2026, 6, 24, 8, 0), None, RECEIVED,
     datetime(2026, 6, 24, 7, 0, tzinfo=UTC), ()),
]


@pytest.mark.hazard("H-005", "H-019")
@pytest.mark.parametrize(("what", "device_time", "offset", "received", "expected", "flags"),
                         TIME_CASES, ids=[c[0] for c in TIME_CASES])
def test_device_time_becomes_utc(what: str, device_time: datetime | None, offset: float | None,
                                 received: datetime, expected: datetime,
                                 flags: tuple[str, ...]) -> None:
    reading = reading_from_measurement(
        "AA:01", spo2(device_time), b"\x00\x60\x00\x48\x00", received_at=received,
        zone=LONDON, clock_offset=None if offset is None else timedelta(seconds=offset))
    assert reading.taken_at == expected
    assert reading.flags == flags
    assert reading.raw == "0060004800"


def test_a_device_that_says_its_clock_is_not_set_gets_the_hub_time() -> None:
    unset = spo2(datetime(2000, 1, 1), ("device_clock_not_set",))
    reading = reading_from_measurement("AA:01", unset, b"", received_at=RECEIVED, zone=LONDON)
    assert reading.taken_at == RECEIVED
    assert reading.flags == ("device_clock_not_set", DEVICE_TIME_INVALID)
    assert reading.raw is None


def test_every_measurement_gets_a_new_id_and_raw_is_kept_only_when_it_fits() -> None:
    a = reading_from_measurement("AA:01", spo2(), bytes(64), received_at=RECEIVED, zone=LONDON)
    b = reading_from_measurement("AA:01", spo2(), bytes(65), received_at=RECEIVED, zone=LONDON)
    assert a.id != b.id and a.raw == "00" * 64 and b.raw is None


@pytest.mark.hazard("H-006")
def test_an_impossible_value_is_refused_not_clamped() -> None:
    with pytest.raises(ValidationError, match="spo2"):
        reading_from_measurement("AA:01", Measurement(Kind.SPO2, {"spo2": 140}), b"",
                                 received_at=RECEIVED, zone=LONDON)


# -- paired devices ----------------------------------------------------------------------------

CUFF = PairedDevice(address="C4:7C:8D:6A:3E:21", kind=Kind.BLOOD_PRESSURE, name="cuff")
OXI = PairedDevice(address="00:A0:50:11:22:33", kind=Kind.SPO2)
SCALE = PairedDevice(address="D0:00:00:00:00:01", kind=Kind.WEIGHT)


def test_local_pairing_file_round_trips_and_merges_with_the_server_config(tmp_path: Path) -> None:
    assert load_paired(tmp_path) == []
    save_paired(tmp_path, [SCALE, CUFF])
    assert load_paired(tmp_path) == [SCALE, CUFF]
    renamed = CUFF.model_copy(update={"name": "server's name"})
    assert merge_devices([renamed, OXI], load_paired(tmp_path)) == [SCALE, renamed, OXI]


# -- the running agent against a real broker ---------------------------------------------------

# No server in these tests confirms storage: the hub deletes on the broker's PUBACK.
FAST = EdgeSettings(stored_acks=False, reconnect_min_s=0.05, reconnect_max_s=0.3,
                    status_interval_s=1, messages_per_second=200)


def make_agent(tmp_path: Path, broker: MosquittoServer, **kwargs: Any) -> EdgeAgent:
    kwargs.setdefault("settings", FAST)
    return EdgeAgent(hub_id="hub-1", state_dir=tmp_path / "hub-1",
                     broker=BrokerParams(port=broker.port), ble_backend=None, **kwargs)


async def until(predicate: Callable[[], object], limit_s: float = 10.0, what: str = "") -> None:
    await asyncio.to_thread(wait_for, predicate, limit_s, what)


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_measurement_is_stored_then_published_with_the_hubs_status(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = Subscriber(mosquitto, ["homeward/v1/hubs/+/readings", "homeward/v1/hubs/+/status"])
    seen = datetime(2026, 11, 22, 8, 0, 5, tzinfo=UTC)
    try:
        async with make_agent(tmp_path, mosquitto, devices=[OXI], clock=lambda: seen) as agent:
            assert agent.publisher is not None and agent.outbox is not None
            await agent.on_measurement(OXI.address.lower(), spo2(datetime(2026, 11, 22, 8, 0)),
                                       b"\x00\x60\x00\x48\x00")
            assert agent.outbox.depth in (0, 1)  # committed (and perhaps already acknowledged)
            await until(lambda: server.readings(), what="the reading")
            (reading,) = server.readings()
            assert (reading.device, reading.kind, reading.values, reading.raw) == (
                OXI.address, Kind.SPO2, {"spo2": 96, "pulse_rate": 72}, "0060004800")
            assert reading.taken_at == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
            await until(lambda: agent.outbox is not None and agent.outbox.depth == 0)
            agent.publisher.request_status()
            await until(lambda: b'"last_seen"' in server.payloads()[-1], what="fresh status")
            status = HubStatus.model_validate_json(server.payloads()[-1])
            assert status.state == "online" and status.agent == agent.agent_version
            assert status.ts == seen and status.outbox_nearly_full is False
            assert [(d.address, d.kind, d.last_seen) for d in status.devices] == [
                (OXI.address, Kind.SPO2, seen)]
        await until(lambda: server.payloads()[-1] == b'{"state":"offline"}', what="offline")
    finally:
        server.close()


@pytest.mark.integration
@pytest.mark.anyio
async def test_the_server_config_and_local_pairing_change_devices_without_restart(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = Subscriber(mosquitto, [])
    try:
        server.client.publish(config_topic("hub-1"), HubConfig(devices=[CUFF]).model_dump_json(),
                              qos=1, retain=True).wait_for_publish(5)
        async with make_agent(tmp_path, mosquitto) as agent:
            await until(lambda: agent.devices == [CUFF], what="the retained config")
            server.client.publish(config_topic("hub-1"),
                                  HubConfig(version=2, devices=[OXI]).model_dump_json(),
                                  qos=1, retain=True)
            await until(lambda: agent.devices == [OXI], what="cuff removed, oximeter added")
            save_paired(agent.state_dir, [SCALE])  # `homeward edge pair` on this hub
            await until(lambda: agent.devices == [SCALE, OXI], what="local pairing", limit_s=5)
        # the server's config is remembered: the hub boots offline with its devices
        mosquitto.stop()
        async with make_agent(tmp_path, mosquitto) as agent:
            assert agent.devices == [SCALE, OXI]
    finally:
        server.close()


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_full_outbox_refuses_and_says_so_in_the_status(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    mosquitto.stop()  # nothing drains
    settings = FAST.model_copy(update={"outbox_max_readings": 10})
    async with make_agent(tmp_path, mosquitto, settings=settings) as agent:
        for _ in range(8):
            await agent.on_measurement("AA:01", spo2(), b"")
        assert not agent.status().outbox_nearly_full
        await agent.on_measurement("AA:01", spo2(), b"")
        assert agent.status().outbox_nearly_full and agent.status().outbox_depth == 9
        await agent.on_measurement("AA:01", spo2(), b"")
        with pytest.raises(OutboxFull):
            await agent.on_measurement("AA:01", spo2(), b"")
        assert (agent.readings_stored, agent.readings_refused) == (10, 1)
        mosquitto.start()
        await until(lambda: agent.outbox is not None and agent.outbox.depth == 0,
                    what="drained once the broker is back")
        await agent.on_measurement("AA:01", spo2(), b"")  # room again
        assert not agent.status().outbox_nearly_full


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_glucose_record_and_its_racp_sequence_are_committed_together(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    async with make_agent(tmp_path, mosquitto) as agent:
        assert agent.outbox is not None
        record = Measurement(Kind.GLUCOSE, {"blood_glucose": 6.1}, datetime(2026, 11, 20, 7, 30),
                             sequence_number=17)
        await agent.on_measurement("GL:01", record, b"")
        assert agent.outbox.get_last_sequence("GL:01") == 17


@pytest.mark.integration
@pytest.mark.anyio
async def test_n_agents_run_in_one_loop_against_one_broker(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = Subscriber(mosquitto, ["homeward/v1/hubs/+/readings"])
    agents = [EdgeAgent(hub_id=f"home-{n}", state_dir=tmp_path / f"home-{n}",
                        broker=BrokerParams(port=mosquitto.port), ble_backend=None,
                        settings=FAST) for n in range(4)]
    try:
        tasks = [asyncio.create_task(a.run()) for a in agents]
        await until(lambda: all(a.publisher and a.publisher.connected for a in agents))
        for n, agent in enumerate(agents):
            await agent.on_measurement(f"DE:VI:CE:00:00:0{n}", spo2(), b"")
        await until(lambda: len(server.readings()) == 4)
        assert {m.topic for m in server.messages} == {
            f"homeward/v1/hubs/home-{n}/readings" for n in range(4)}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(a.outbox is None for a in agents)  # stopped cleanly
    finally:
        server.close()


def test_ids_are_time_ordered_uuids() -> None:
    reading = reading_from_measurement("AA:01", spo2(), b"", received_at=RECEIVED, zone=LONDON)
    assert isinstance(reading.id, uuid.UUID) and reading.id.version == 7
