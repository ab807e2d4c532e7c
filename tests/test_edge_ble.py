"""edge.ble against the device simulator: the real bleak, bleak-retry-connector and
edge.gatt code paths, with only the radio simulated (backend "sim").

Timings are shrunk (BleTiming) so every scenario runs in well under a second or two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from device_sim.faults import Fault
from device_sim.radio import VirtualRadio
from edge.ble import (
    BackendUnavailable,
    BleCollector,
    BleTiming,
    MemoryCursorStore,
    resolve_backend,
    scan_for_new_devices,
)
from edge.gatt import Measurement
from homeward.kinds import Kind
from homeward.wire import PairedDevice

FAST = BleTiming(scan_window_s=0.3, reconnect_initial_s=0.02, reconnect_max_s=0.1,
                 racp_idle_timeout_s=2.0, battery_poll_s=0.2, connect_attempts=1,
                 delivery_retry_s=0.01)
RADIO = "test-edge-ble"
GLUCOSE = 0x2A18
PLX_SPOT_CHECK = 0x2A5E


class Sink:
    """The agent's side: remembers what it was handed."""

    def __init__(self, fail_first: int = 0) -> None:
        self.readings: list[tuple[str, Measurement, bytes]] = []
        self.garbage: list[tuple[str, int, bytes, str]] = []
        self.fail_first = fail_first

    async def on_measurement(self, address, measurement, raw):
        await asyncio.sleep(0)
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("outbox full")
        self.readings.append((address, measurement, raw))

    async def on_garbage(self, address, characteristic, raw, reason):
        self.garbage.append((address, characteristic, raw, reason))

    def sequences(self, address: str) -> list[int]:
        return [m.sequence_number or 0 for a, m, _ in self.readings if a == address]


async def wait_until(condition: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 -- polling what the test watches
            await asyncio.sleep(0.01)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def radio():
    with VirtualRadio(RADIO, advertising_interval_s=0.01) as r:
        yield r


def paired(*peripherals) -> list[PairedDevice]:
    return [PairedDevice(address=p.address, kind=p.kind) for p in peripherals]


def collector(devices, sink: Sink, cursors=None, **kwargs) -> BleCollector:
    return BleCollector(devices, sink.on_measurement, on_garbage=sink.on_garbage,
                        cursors=cursors or MemoryCursorStore(),
                        backend=resolve_backend("sim", sim_radio=RADIO), timing=FAST, **kwargs)


def sent(peripheral, characteristic: int) -> int:
    return sum(1 for c, _ in peripheral.sent if c == characteristic)


# ---------------------------------------------------------------- one cuff, end to end


@pytest.mark.hazard("H-005")
def test_cuff_reading_battery_and_clock(radio):
    now = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)  # winter: London = UTC
    radio.clock = lambda: now
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[
        Fault("wrong_clock", clock_offset_s=-3 * 3600), Fault("low_battery", battery=12)])
    sink = Sink()

    async def scenario():
        async with collector(paired(cuff), sink, clock=lambda: now) as c:
            await wait_until(lambda: bool(c.status()[0].connected)
                             and c.status()[0].battery == 12)
            cuff.push(bytes.fromhex("00 78 00 50 00 5D 00"))  # reference V1
            await wait_until(lambda: len(sink.readings) == 1)
            address, measurement, raw = sink.readings[0]
            assert address == cuff.address
            assert raw == bytes.fromhex("00 78 00 50 00 5D 00")
            assert measurement.kind is Kind.BLOOD_PRESSURE
            assert measurement.values == {"systolic": 120, "diastolic": 80, "mean_arterial": 93}
            state = c.status()[0]
            assert (state.address, state.kind, state.battery) == (cuff.address,
                                                                 Kind.BLOOD_PRESSURE, 12)
            assert state.last_seen == now
            # the clock was 3 h slow; the hub measured that, then set it
            assert c.clock_offset_s(cuff.address) == -3 * 3600
            assert cuff.clock_offset.total_seconds() == 0
            assert c.counters(cuff.address).clock_sets == 1
        assert not cuff.connected

    run(scenario())


def test_clock_write_refused_is_not_fatal(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[
        Fault("wrong_clock", clock_offset_s=600), Fault("reject_time_write")])
    cuff.measure()
    sink = Sink()

    async def scenario():
        async with collector(paired(cuff), sink) as c:
            await wait_until(lambda: len(sink.readings) == 1)
            assert c.counters(cuff.address).clock_sets == 0
            assert c.counters(cuff.address).connections == 1
            assert cuff.clock_offset.total_seconds() == 600

    run(scenario())


def test_readings_held_while_out_of_range_arrive_when_back(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[Fault("out_of_range")])
    cuff.measure()
    cuff.measure()
    sink = Sink()

    async def scenario():
        async with collector(paired(cuff), sink) as c:
            await asyncio.sleep(0.2)
            assert c.status()[0].connected is False
            assert sink.readings == []
            cuff.set_in_range(True)
            await wait_until(lambda: len(sink.readings) == 2)
            cuff.set_in_range(False)  # walks away mid-session
            await wait_until(lambda: not c.status()[0].connected)
            cuff.measure()
            cuff.set_in_range(True)
            await wait_until(lambda: len(sink.readings) == 3)
            assert c.counters(cuff.address).connections == 2

    run(scenario())


def test_disconnect_during_read_then_recovery(radio):
    # read 1 (Current Time) works, read 2 (battery) drops the link, twice
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[
        Fault("disconnect_during_read", after_reads=1, times=2)])
    cuff.measure()
    sink = Sink()

    async def scenario():
        async with collector(paired(cuff), sink) as c:
            await wait_until(lambda: c.status()[0].battery == 87 and len(sink.readings) == 1)
            counters = c.counters(cuff.address)
            assert counters.connections == 3
            assert counters.disconnects >= 2
            assert c.status()[0].connected

    run(scenario())


def test_slow_indications_still_deliver_everything(radio):
    meter = radio.add_device(Kind.GLUCOSE, faults=[
        Fault("slow_indications", delay_s=0.002, times=0)])
    meter.store_records(100)
    sink = Sink()

    async def scenario():
        async with collector(paired(meter), sink):
            await wait_until(lambda: len(sink.readings) == 100)
            assert sink.sequences(meter.address) == list(range(1, 101))

    run(scenario())


# ---------------------------------------------------------------- RACP


def test_glucose_200_records_downloaded_once_then_only_new_ones(radio):
    meter = radio.add_device(Kind.GLUCOSE)
    meter.store_records(200)
    sink = Sink()
    cursors = MemoryCursorStore()

    async def scenario():
        async with collector(paired(meter), sink, cursors) as c:
            await wait_until(lambda: len(sink.readings) == 200)
            assert sink.sequences(meter.address) == list(range(1, 201))
            assert sent(meter, GLUCOSE) == 200
            assert cursors.load(meter.address) == 200
            # the meter goes out of range, is used five times, comes back
            meter.set_in_range(False)
            for _ in range(5):
                meter.measure()
            meter.set_in_range(True)
            await wait_until(lambda: len(sink.readings) == 205)
            assert sink.sequences(meter.address) == list(range(1, 206))
            assert sent(meter, GLUCOSE) == 205  # only the 5 new records were fetched
            assert c.counters(meter.address).connections == 2

    run(scenario())


def test_cursor_survives_a_new_collector(radio):
    """A restarted hub (same cursor store) fetches nothing twice."""
    meter = radio.add_device(Kind.GLUCOSE)
    meter.store_records(20)
    cursors = MemoryCursorStore()

    async def scenario():
        first = Sink()
        async with collector(paired(meter), first, cursors):
            await wait_until(lambda: len(first.readings) == 20)
        meter.store_records(3)
        second = Sink()
        async with collector(paired(meter), second, cursors):
            await wait_until(lambda: len(second.readings) == 3)
            await asyncio.sleep(0.1)
        assert second.sequences(meter.address) == [21, 22, 23]
        assert sent(meter, GLUCOSE) == 23

    run(scenario())


def test_disconnect_during_racp_transfer_loses_and_duplicates_nothing(radio):
    meter = radio.add_device(Kind.GLUCOSE,
                             faults=[Fault("disconnect_during_racp", after_records=50)])
    meter.store_records(200)
    sink = Sink()

    async def scenario():
        async with collector(paired(meter), sink) as c:
            await wait_until(lambda: len(sink.readings) == 200)
            await asyncio.sleep(0.1)
            assert sink.sequences(meter.address) == list(range(1, 201))
            assert sent(meter, GLUCOSE) == 200  # 50, then the other 150
            assert c.counters(meter.address).connections == 2

    run(scenario())


def test_delivery_failure_is_retried_and_cursor_waits_for_it(radio):
    meter = radio.add_device(Kind.GLUCOSE)
    meter.store_records(3)
    sink = Sink(fail_first=2)
    cursors = MemoryCursorStore()

    async def scenario():
        async with collector(paired(meter), sink, cursors):
            await wait_until(lambda: len(sink.readings) == 3)
            assert sink.sequences(meter.address) == [1, 2, 3]
            assert cursors.load(meter.address) == 3

    run(scenario())


@pytest.mark.hazard("H-002")
def test_oximeter_stored_records_are_not_delivered_twice(radio):
    oximeter = radio.add_device(Kind.SPO2)
    oximeter.store_records(10)
    sink = Sink()

    async def scenario():
        async with collector(paired(oximeter), sink) as c:
            await wait_until(lambda: len(sink.readings) == 10)
            oximeter.set_in_range(False)
            oximeter.store_records(3)
            oximeter.set_in_range(True)
            await wait_until(lambda: len(sink.readings) == 13)
            await asyncio.sleep(0.1)
            assert len(sink.readings) == 13
            # PLXS can only "report all": the 10 old ones came again and were skipped
            assert c.counters(oximeter.address).duplicates_skipped == 10
            oximeter.measure()  # live spot-check while connected
            await wait_until(lambda: len(sink.readings) == 14)

    run(scenario())


# ---------------------------------------------------------------- isolation between devices


@pytest.mark.hazard("H-021")
def test_garbage_from_one_device_does_not_disturb_another(radio):
    noisy = radio.add_device(Kind.BLOOD_PRESSURE, faults=[Fault("malformed_packet")])
    quiet = radio.add_device(Kind.BLOOD_PRESSURE)
    meter = radio.add_device(Kind.GLUCOSE)
    meter.store_records(30)
    sink = Sink()

    async def scenario():
        async with collector(paired(noisy, quiet, meter), sink) as c:
            await wait_until(lambda: all(s.connected for s in c.status()))
            noisy.measure()  # 3 bytes: too short for 0x2A35
            quiet.measure()
            noisy.measure()
            await wait_until(lambda: len(sink.readings) == 32 and len(sink.garbage) == 1)
            address, characteristic, raw, reason = sink.garbage[0]
            assert (address, characteristic, len(raw)) == (noisy.address, 0x2A35, 3)
            assert reason
            assert c.counters(noisy.address).garbage == 1
            assert c.counters(quiet.address).garbage == 0
            by_device = [a for a, _, _ in sink.readings]
            assert by_device.count(noisy.address) == 1
            assert by_device.count(quiet.address) == 1
            assert sink.sequences(meter.address) == list(range(1, 31))
            assert all(s.connected for s in c.status())

    run(scenario())


def test_several_hubs_in_one_process_hear_only_their_own_devices():
    with VirtualRadio("hub-a", advertising_interval_s=0.01) as a, \
            VirtualRadio("hub-b", advertising_interval_s=0.01) as b:
        cuff_a = a.add_device(Kind.BLOOD_PRESSURE)
        cuff_b = b.add_device(Kind.BLOOD_PRESSURE)
        cuff_a.measure()
        cuff_b.measure()
        sink_a, sink_b = Sink(), Sink()

        async def scenario():
            # hub A is (wrongly) configured with both cuffs: it must still only hear its own
            both = paired(cuff_a, cuff_b)
            async with BleCollector(both, sink_a.on_measurement, timing=FAST,
                                    backend=resolve_backend("sim", sim_radio="hub-a")), \
                    BleCollector(paired(cuff_b), sink_b.on_measurement, timing=FAST,
                                 backend=resolve_backend("sim", sim_radio="hub-b")):
                await wait_until(lambda: bool(sink_a.readings and sink_b.readings))
                await asyncio.sleep(0.1)
            assert [r[0] for r in sink_a.readings] == [cuff_a.address]
            assert [r[0] for r in sink_b.readings] == [cuff_b.address]

        run(scenario())


# ---------------------------------------------------------------- pairing and config changes


def test_scan_for_new_devices_and_update_devices(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE)
    scale = radio.add_device(Kind.WEIGHT)
    scale.measure()
    sink = Sink()

    async def scenario():
        async with collector(paired(cuff), sink) as c:
            found = await c.scan_for_new_devices(0.1)
            assert [(f.address, f.kind) for f in found] == [(scale.address, Kind.WEIGHT)]
            everything = await scan_for_new_devices(
                0.1, backend=resolve_backend("sim", sim_radio=RADIO))
            assert {f.address for f in everything} >= {scale.address}
            c.update_devices(paired(cuff, scale))
            await wait_until(lambda: len(sink.readings) == 1)
            assert sink.readings[0][0] == scale.address
            c.update_devices(paired(scale))
            await wait_until(lambda: not cuff.connected)
            assert [s.address for s in c.status()] == [scale.address]

    run(scenario())


def test_unknown_backend_is_refused():
    with pytest.raises(BackendUnavailable):
        resolve_backend("carrier-pigeon")

