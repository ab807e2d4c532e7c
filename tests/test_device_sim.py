"""The device simulator, driven through the installed bleak's public API (no mocks).

Encoders are checked against the reference vectors in
/work/shared/reference/ble-gatt.md section 3 (built from the SIG layouts and
decoded independently), never against a decoder of our own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from device_sim import encoding as enc
from device_sim.backend import SimBleakClient, SimBleakScanner
from device_sim.faults import Fault
from device_sim.peripheral import VirtualPeripheral
from device_sim.radio import VirtualRadio
from device_sim.scenarios import Deteriorating, Steady
from homeward.kinds import Kind

T = datetime(2024, 3, 15, 8, 30, 5)  # the reference vectors' time stamp


def uuid(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def on(radio_id: str) -> Any:
    """bleak passes extra keyword arguments through to the backend; its classmethods'
    typed ``ExtraArgs`` do not list a custom backend's, hence ``Any``."""
    return {"sim_radio": radio_id}


@pytest.fixture
def radio():
    with VirtualRadio("test-sim", advertising_interval_s=0.01) as r:
        yield r


# ---------------------------------------------------------------- encoders vs reference vectors

VECTORS: list[tuple[str, Callable[[], bytes], str]] = [
    ("V1 BPM mmHg minimal", lambda: enc.blood_pressure_measurement(
        enc.BloodPressure(120, 80, 93)), "00 78 00 50 00 5D 00"),
    ("V3 BPM kPa minimal", lambda: enc.blood_pressure_measurement(
        enc.BloodPressure(16.0, 10.7, 12.4, kpa=True)), "01 A0 F0 6B F0 7C F0"),
    ("V4 BPM kPa + time + pulse", lambda: enc.blood_pressure_measurement(
        enc.BloodPressure(16.0, 10.7, 12.4, pulse_rate=60, timestamp=T, kpa=True)),
     "07 A0 F0 6B F0 7C F0 E8 07 03 0F 08 1E 05 3C 00"),
    ("V5 BPM status only", lambda: enc.blood_pressure_measurement(
        enc.BloodPressure(130, 82, 98, status=0x0032)), "10 82 00 52 00 62 00 32 00"),
    ("V6 BPM unknown user", lambda: enc.blood_pressure_measurement(
        enc.BloodPressure(140, 90, 105, user_id=0xFF)), "08 8C 00 5A 00 69 00 FF"),
    ("V8 PLX spot-check minimal", lambda: enc.plx_spot_check(enc.SpotCheck(97, 72)),
     "00 61 00 48 00"),
    ("V11 HTM Celsius", lambda: enc.temperature_measurement(enc.Temperature(36.7)),
     "00 6F 01 00 FF"),
    ("V14 WSM SI", lambda: enc.weight_measurement(enc.Weight(72.45)), "00 9A 38"),
    ("V16 WSM SI + BMI/height", lambda: enc.weight_measurement(
        enc.Weight(72.45, bmi=23.9, height_m=1.740)), "08 9A 38 EF 00 CC 06"),
    ("M13 WSM unsuccessful", enc.weight_unsuccessful, "00 FF FF"),
    ("V19 Current Time", lambda: enc.current_time(T, adjust_reason=1),
     "E8 07 03 0F 08 1E 05 05 00 01"),
    ("V20 RACP number of records", lambda: enc.racp_number_of_records(10), "05 00 0A 00"),
    ("V21 RACP success", lambda: enc.racp_response(1, enc.RACP_SUCCESS), "06 00 01 01"),
    ("V22 RACP no records", lambda: enc.racp_response(1, enc.RACP_NO_RECORDS_FOUND),
     "06 00 01 06"),
    ("V24 Date Time", lambda: enc.date_time(T), "E8 07 03 0F 08 1E 05"),
    ("SFLOAT 36.7 (reference section 2)", lambda: enc.sfloat(36.7, -1), "6F F1"),
    ("FLOAT 36.7 (reference section 2)", lambda: enc.float32(36.7, -1), "6F 01 00 FF"),
    ("SFLOAT 2.00 = 0xE0C8", lambda: enc.sfloat(2.0, -2), "C8 E0"),
    ("SFLOAT -1234 = 0x0B2E", lambda: enc.sfloat(-1234), "2E 0B"),
    ("SFLOAT NaN", lambda: enc.sfloat_special(enc.SFLOAT_NAN), "FF 07"),
]


@pytest.mark.parametrize(("name", "encode", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_encoder_matches_reference_vector(name, encode, expected):
    assert encode().hex(" ").upper() == expected


@pytest.mark.parametrize(("value", "exponent"), [(2047, 0), (2046, 0), (-2048, 0), (5000, 0)])
def test_sfloat_refuses_special_values_and_overflow(value, exponent):
    with pytest.raises(ValueError):
        enc.sfloat(value, exponent)


def test_glucose_measurement_layout():
    # flags 0x06 (concentration + mol/L), seq 7, base time, 5.5 mmol/L = 0.0055 mol/L
    # = mantissa 550 exponent -5 (0xB226), type 1 / location 1 (0x11)
    data = enc.glucose_measurement(enc.Glucose(7, T, 5.5))
    assert data.hex(" ").upper() == "06 07 00 E8 07 03 0F 08 1E 05 26 B2 11"


# ---------------------------------------------------------------- scenarios


def test_scenarios_are_deterministic_for_a_seed():
    a = [Steady(Kind.BLOOD_PRESSURE, seed=3).next_values() for _ in range(3)]
    b = [Steady(Kind.BLOOD_PRESSURE, seed=3).next_values() for _ in range(3)]
    assert a == b


def test_deteriorating_cuff_reaches_severe_hypertension():
    cuff = Deteriorating(Kind.BLOOD_PRESSURE, seed=1, readings=8)
    systolic = [cuff.next_values()["systolic"] for _ in range(10)]
    assert systolic[0] < 140
    assert all(s >= 180 for s in systolic[7:])


# ---------------------------------------------------------------- bleak conformance


def test_scan_by_service_uuid_finds_only_that_kind(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE)
    radio.add_device(Kind.GLUCOSE)
    radio.add_device(Kind.WEIGHT)

    async def scenario():
        found = await BleakScanner.discover(
            0.05, return_adv=True, backend=SimBleakScanner, **on("test-sim"),
            service_uuids=[uuid(0x1810)])
        assert list(found) == [cuff.address]
        _, adv = found[cuff.address]
        assert adv.service_uuids == [uuid(0x1810)]
        everything = await BleakScanner.discover(0.05, backend=SimBleakScanner,
                                                 **on("test-sim"))
        assert len(everything) == 3

    run(scenario())


def test_cuff_indicates_reference_bytes_and_serves_common_services(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, battery=64)

    async def scenario():
        device = await BleakScanner.find_device_by_address(
            cuff.address, timeout=1, backend=SimBleakScanner, **on("test-sim"))
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, backend=SimBleakClient, sim_radio="test-sim") as client:
            services = {s.uuid for s in client.services}
            assert services == {uuid(0x1810), uuid(0x180F), uuid(0x180A), uuid(0x1805)}
            bpm = client.services.get_characteristic(uuid(0x2A35))
            assert bpm is not None
            assert bpm.properties == ["indicate"]
            assert bpm.get_descriptor(uuid(0x2902)) is not None
            await client.start_notify(bpm, lambda _c, data: received.append(bytes(data)))
            cuff.push(bytes.fromhex("00 78 00 50 00 5D 00"))  # V1: 120/80, MAP 93
            assert await client.read_gatt_char(uuid(0x2A19)) == bytearray([64])
            assert await client.read_gatt_char(uuid(0x2A29)) == b"Homeward Simulated Devices"
            assert await client.read_gatt_char(uuid(0x2A49)) == bytearray([0x05, 0x00])
            for _ in range(50):
                if received:
                    break
                await asyncio.sleep(0.01)
        assert received == [bytes.fromhex("00 78 00 50 00 5D 00")]
        assert cuff.records == []  # indicated and confirmed, so forgotten

    run(scenario())


def test_cuff_stores_readings_while_alone_and_sends_them_on_subscribe(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE)
    for values in ({"systolic": 120, "diastolic": 80, "mean_arterial": 93},
                   {"systolic": 130, "diastolic": 82, "mean_arterial": 98}):
        cuff.measure(values, at=T)

    async def scenario():
        received: list[bytes] = []
        async with BleakClient(cuff.address, backend=SimBleakClient,
                               sim_radio="test-sim") as client:
            await client.start_notify(uuid(0x2A35), lambda _c, d: received.append(bytes(d)))
            await asyncio.sleep(0.05)
        # flags 0x02: time stamp present, reference V4's time stamp bytes
        assert [r.hex(" ").upper() for r in received] == [
            "02 78 00 50 00 5D 00 E8 07 03 0F 08 1E 05",
            "02 82 00 52 00 62 00 E8 07 03 0F 08 1E 05",
        ]

    run(scenario())


class Racp:
    """Drives a RACP over bleak and collects what comes back."""

    def __init__(self, client: BleakClient, measurement: int) -> None:
        self.client = client
        self.measurement = measurement
        self.records: list[bytes] = []
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    async def start(self) -> None:
        await self.client.start_notify(uuid(self.measurement),
                                       lambda _c, d: self.records.append(bytes(d)))
        await self.client.start_notify(uuid(0x2A52),
                                       lambda _c, d: self.replies.put_nowait(bytes(d)))

    async def ask(self, request: str) -> str:
        await self.client.write_gatt_char(uuid(0x2A52), bytes.fromhex(request), response=True)
        reply = await asyncio.wait_for(self.replies.get(), 5)
        return reply.hex(" ").upper()


def test_glucose_meter_racp_count_report_all_and_newer_than(radio):
    meter = radio.add_device(Kind.GLUCOSE)
    meter.store_records(200)

    async def scenario():
        async with BleakClient(meter.address, backend=SimBleakClient,
                               sim_radio="test-sim") as client:
            racp = Racp(client, 0x2A18)
            await racp.start()
            assert await racp.ask("04 01") == "05 00 C8 00"  # 200 records
            assert await racp.ask("01 01") == "06 00 01 01"  # all: success
            assert len(racp.records) == 200
            sequences = [int.from_bytes(r[1:3], "little") for r in racp.records]
            assert sequences == list(range(1, 201))
            racp.records.clear()
            assert await racp.ask("04 03 01 C6 00") == "05 00 03 00"  # >= 198: 3
            assert await racp.ask("01 03 01 C6 00") == "06 00 01 01"
            assert [int.from_bytes(r[1:3], "little") for r in racp.records] == [198, 199, 200]
            assert await racp.ask("01 03 01 C9 00") == "06 00 01 06"  # >= 201: none
            assert await racp.ask("02 01") == "06 00 02 02"  # delete: op code not supported
            assert await racp.ask("01 07") == "06 00 01 03"  # invalid operator
            assert await racp.ask("01 03 02 00 00") == "06 00 01 09"  # filter by time: no

    run(scenario())


def test_racp_abort_stops_a_slow_transfer(radio):
    meter = radio.add_device(Kind.GLUCOSE, faults=[Fault("slow_indications", delay_s=0.01,
                                                         times=0)])
    meter.store_records(200)

    async def scenario():
        async with BleakClient(meter.address, backend=SimBleakClient,
                               sim_radio="test-sim") as client:
            racp = Racp(client, 0x2A18)
            await racp.start()
            await client.write_gatt_char(uuid(0x2A52), bytes.fromhex("01 01"), response=True)
            await asyncio.sleep(0.1)
            with pytest.raises(BleakGATTProtocolError):  # 0xFE procedure already in progress
                await client.write_gatt_char(uuid(0x2A52), bytes.fromhex("04 01"),
                                             response=True)
            assert await racp.ask("03 00") == "06 00 03 01"
            got = len(racp.records)
            await asyncio.sleep(0.05)
            assert 0 < got == len(racp.records) < 200

    run(scenario())


def test_oximeter_racp_supports_only_all_records(radio):
    oximeter = radio.add_device(Kind.SPO2)
    oximeter.store_records(5)

    async def scenario():
        async with BleakClient(oximeter.address, backend=SimBleakClient,
                               sim_radio="test-sim") as client:
            racp = Racp(client, 0x2A5E)
            await racp.start()
            assert await racp.ask("04 01") == "05 00 05 00"
            assert await racp.ask("01 03 01 01 00") == "06 00 01 04"  # operator not supported
            assert await racp.ask("01 01") == "06 00 01 01"
            assert len(racp.records) == 5
            assert all(r[0] & 0x01 for r in racp.records)  # time stamps present

    run(scenario())


def test_racp_without_indications_is_refused(radio):
    meter = radio.add_device(Kind.GLUCOSE)

    async def scenario():
        async with BleakClient(meter.address, backend=SimBleakClient,
                               sim_radio="test-sim") as client:
            with pytest.raises(BleakGATTProtocolError) as err:
                await client.write_gatt_char(uuid(0x2A52), b"\x04\x01", response=True)
            assert err.value.code == 0xFD  # CCCD improperly configured

    run(scenario())


# ---------------------------------------------------------------- clock


def test_wrong_clock_is_read_and_can_be_set(radio):
    fixed = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)  # winter: London = UTC
    radio.clock = lambda: fixed
    cuff = radio.add_device(Kind.BLOOD_PRESSURE,
                            faults=[Fault("wrong_clock", clock_offset_s=-3 * 3600)])

    async def scenario():
        async with BleakClient(cuff.address, backend=SimBleakClient,
                               sim_radio="test-sim") as client:
            before = await client.read_gatt_char(uuid(0x2A2B))
            assert before[:7] == enc.date_time(datetime(2026, 1, 10, 9, 0, 0))
            await client.write_gatt_char(uuid(0x2A2B), enc.current_time(
                datetime(2026, 1, 10, 12, 0, 0)), response=True)
            after = await client.read_gatt_char(uuid(0x2A2B))
            assert after[:7] == enc.date_time(datetime(2026, 1, 10, 12, 0, 0))

    run(scenario())


# ---------------------------------------------------------------- faults


def test_disconnect_during_read_drops_the_link_and_calls_back(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE,
                            faults=[Fault("disconnect_during_read", after_reads=2)])

    async def scenario():
        dropped = asyncio.Event()
        client = BleakClient(cuff.address, lambda _c: dropped.set(), backend=SimBleakClient,
                             sim_radio="test-sim")
        await client.connect()
        await client.read_gatt_char(uuid(0x2A19))
        await client.read_gatt_char(uuid(0x2A19))
        with pytest.raises(BleakError):
            await client.read_gatt_char(uuid(0x2A19))
        await asyncio.wait_for(dropped.wait(), 1)
        assert not client.is_connected
        # the fault fired once: the next connection reads normally
        await client.connect()
        assert await client.read_gatt_char(uuid(0x2A19)) == bytearray([87])
        await client.disconnect()

    run(scenario())


def test_out_of_range_device_is_not_heard_and_cannot_be_connected(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[Fault("out_of_range")])

    async def scenario():
        assert await BleakScanner.discover(0.05, backend=SimBleakScanner,
                                           **on("test-sim")) == []
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient(cuff.address, backend=SimBleakClient,
                              sim_radio="test-sim").connect()
        cuff.set_in_range(True)
        found = await BleakScanner.discover(0.05, backend=SimBleakScanner, **on("test-sim"))
        assert [d.address for d in found] == [cuff.address]

    run(scenario())


def test_connect_fails_and_time_write_rejected_are_bleak_errors(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[
        Fault("connect_fails"), Fault("reject_time_write"), Fault("low_battery", battery=4)])

    async def scenario():
        client = BleakClient(cuff.address, backend=SimBleakClient, sim_radio="test-sim")
        with pytest.raises(BleakError, match="refused"):
            await client.connect()
        await client.connect()
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.write_gatt_char(uuid(0x2A2B), enc.current_time(T), response=True)
        assert err.value.code == 0x80
        assert await client.read_gatt_char(uuid(0x2A19)) == bytearray([4])
        await client.disconnect()

    run(scenario())


def test_malformed_packet_fault_sends_garbage_once(radio):
    cuff = radio.add_device(Kind.BLOOD_PRESSURE, faults=[Fault("malformed_packet")])
    garbage = cuff.measure()
    good = cuff.measure()
    assert len(garbage) == 3
    assert len(good) == 16  # flags, 3 pressures, time stamp, pulse


def test_radios_are_isolated():
    with VirtualRadio("home-a", advertising_interval_s=0.01) as a, \
            VirtualRadio("home-b", advertising_interval_s=0.01) as b:
        cuff_a = a.add_device(Kind.BLOOD_PRESSURE)
        scale_b = b.add_device(Kind.WEIGHT)

        async def scenario():
            seen_a = await BleakScanner.discover(0.05, backend=SimBleakScanner, **on("home-a"))
            seen_b = await BleakScanner.discover(0.05, backend=SimBleakScanner, **on("home-b"))
            assert [d.address for d in seen_a] == [cuff_a.address]
            assert [d.address for d in seen_b] == [scale_b.address]
            with pytest.raises(BleakDeviceNotFoundError):
                await BleakClient(scale_b.address, backend=SimBleakClient,
                                  sim_radio="home-a").connect()

        run(scenario())
    with pytest.raises(ValueError), VirtualRadio("dup"), VirtualRadio("dup"):
        pass


def test_peripheral_rejects_unknown_kind():
    with pytest.raises(ValueError):
        VirtualPeripheral(Kind.RESPIRATORY_RATE, "C0:00:00:00:00:01")


def test_store_records_spaces_time_stamps(radio):
    radio.clock = lambda: datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)
    scale = radio.add_device(Kind.WEIGHT)
    scale.store_records(3, every=timedelta(hours=24))
    stamps = [r.data[3:10] for r in scale.records]
    assert stamps == [enc.date_time(datetime(2026, 1, d, 12, 0, 0)) for d in (7, 8, 9)]


# ---------------------------------------------------------------- encoder x edge.gatt decoder

ROUND_TRIPS = [
    (Kind.BLOOD_PRESSURE, {"systolic": 182.0, "diastolic": 101.0, "mean_arterial": 128.0,
                           "pulse_rate": 88.0}, {}),
    (Kind.SPO2, {"spo2": 91.0, "pulse_rate": 104.0}, {}),
    (Kind.TEMPERATURE, {"body_temperature": 38.4}, {}),
    (Kind.WEIGHT, {"body_weight": 84.35}, {}),
    (Kind.GLUCOSE, {"blood_glucose": 7.8}, {}),
    (Kind.GLUCOSE, {"blood_glucose": 27.5}, {}),  # beyond 20.45: exponent -4
    (Kind.GLUCOSE, {"blood_glucose": 5.5}, {"mg_per_dl": True}),
]


@pytest.mark.parametrize(("kind", "values", "options"), ROUND_TRIPS,
                         ids=[f"{k}-{v}" for k, v, _ in ROUND_TRIPS])
def test_every_device_encoding_decodes_with_edge_gatt(kind, values, options):
    from edge.gatt import Measurement, decode

    device = VirtualPeripheral(kind, "C0:00:00:00:00:01", **options)
    data = device.encode(values, T, 42)
    measurement = decode(device.profile.measurement, data)
    assert isinstance(measurement, Measurement)
    assert measurement.kind is kind
    assert measurement.values == pytest.approx(values, abs=0.05)
    assert measurement.taken_at == T
    if kind is Kind.GLUCOSE:
        assert measurement.sequence_number == 42
