"""Bluetooth LE collection for the hub: the only edge module that imports bleak.

``BleCollector`` keeps one task per paired device.  Each task waits for the
device's advertisement, connects with bleak-retry-connector's
``establish_connection``, subscribes to every measurement characteristic at
once (reference /work/shared/reference/ble-gatt.md section 1.10: a device may
send before the client is ready), sets the device clock when it is off by more
than two minutes, reads the battery, downloads stored records through RACP
(only those newer than the last one delivered), and then stays connected until
the device hangs up.  Lost connections are retried with back-off.

Bytes received are decoded with ``edge.gatt.decode``; a measurement goes to
``on_measurement(address, measurement, raw)``, which returns once the reading
is durable.  Bytes that do not parse go to ``on_garbage(address,
characteristic, raw, reason)`` and are counted; they never stop the device's
task, nor any other device's.

Backends: ``"bleak"`` is the platform's Bluetooth; any other name is looked up
among the installed ``homeward.ble_backends`` entry points (the simulator
publishes ``"sim"``), so the edge never names the simulator.  A plug-in gives
``scanner`` and ``client`` classes and a ``virtual_radio(radio_id)`` factory;
``sim_radio=<id>`` passes through bleak to the backend so several hubs in one
process each hear their own radio.

bleak errors are converted here (``raise ... from err``) into ``BleError``
subclasses; nothing above this module sees a bleak type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from edge.gatt import (
    BatteryLevel,
    CurrentTime,
    GattParseError,
    Measurement,
    RacpNumberOfRecords,
    RacpResponse,
    decode,
)
from edge.gatt import racp as racp_requests
from edge.gatt.results import ControlSolution
from edge.gatt.time_service import ADJUST_EXTERNAL_REFERENCE, encode_current_time
from homeward.kinds import Kind
from homeward.wire import DeviceState, PairedDevice

_LOGGER = logging.getLogger(__name__)

#: Entry-point group of named BLE backends (pyproject.toml).
BACKEND_ENTRY_POINTS = "homeward.ble_backends"

# Characteristic UUIDs (16-bit), reference section 1.
BATTERY_LEVEL = 0x2A19
CURRENT_TIME = 0x2A2B
RECORD_ACCESS_CONTROL_POINT = 0x2A52
GLUCOSE_MEASUREMENT = 0x2A18
PLX_SPOT_CHECK = 0x2A5E
#: Measurement characteristics the hub subscribes to and hands to on_measurement.
MEASUREMENT_CHARACTERISTICS = frozenset({
    0x2A35,  # Blood Pressure Measurement (indicate)
    0x2A5E,  # PLX Spot-Check Measurement (indicate)
    0x2A5F,  # PLX Continuous Measurement (notify)
    0x2A1C,  # Temperature Measurement (indicate)
    0x2A9D,  # Weight Measurement (indicate)
    0x2A18,  # Glucose Measurement (notify)
})

#: Advertised health services and the kind of device each means.
HEALTH_SERVICES: dict[int, Kind] = {
    0x1810: Kind.BLOOD_PRESSURE,
    0x1822: Kind.SPO2,
    0x1809: Kind.TEMPERATURE,
    0x181D: Kind.WEIGHT,
    0x1808: Kind.GLUCOSE,
}


#: A device clock further off than this is set (reference section 1.7 [D]: "~2 min");
#: closer than that, writing it would only churn the device's clock for nothing.
CLOCK_TOLERANCE = timedelta(minutes=2)


_SIG_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"


def uuid16_to_str(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


def str_to_uuid16(uuid: str) -> int | None:
    """The 16-bit SIG UUID inside a 128-bit one, or None for a vendor UUID."""
    uuid = uuid.lower()
    if len(uuid) == 36 and uuid.startswith("0000") and uuid.endswith(_SIG_BASE_UUID_TAIL):
        return int(uuid[4:8], 16)
    return None


# ---------------------------------------------------------------- errors


class BleError(Exception):
    """Something went wrong talking to a device; the task backs off and retries."""


class BackendUnavailable(BleError):
    """The configured backend cannot be loaded (no Bluetooth, or device_sim missing)."""


class ConnectFailed(BleError):
    pass


class LinkLost(BleError):
    """The device disconnected, or went out of range, during a session."""


class RacpFailed(BleError):
    """A stored-record download did not complete (error response or watchdog)."""


# ---------------------------------------------------------------- backend


@dataclass(frozen=True, slots=True)
class BleBackend:
    """The bleak backend classes to use (None: the platform's) and extra keyword
    arguments bleak passes through to them."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
    options: dict[str, Any] = field(default_factory=dict)


def load_backend_plugin(name: str) -> Any:
    """The module published as BLE backend ``name`` (entry point group
    ``homeward.ble_backends``); BackendUnavailable when none is installed."""
    found = entry_points(group=BACKEND_ENTRY_POINTS, name=name)
    if not found:
        known = sorted({"bleak", *(ep.name for ep in entry_points(group=BACKEND_ENTRY_POINTS))})
        raise BackendUnavailable(f"unknown BLE backend {name!r} (installed: {', '.join(known)})")
    try:
        return next(iter(found)).load()
    except (ImportError, AttributeError) as err:
        raise BackendUnavailable(f"cannot load BLE backend {name!r}: {err}") from err


def resolve_backend(name: Literal["bleak", "sim"] | str, *, sim_radio: str | None = None
                    ) -> BleBackend:
    """``"bleak"``: the platform's Bluetooth.  Any other name: the installed plug-in of
    that name (``"sim"``: the simulator's virtual radio ``sim_radio``, usually the hub id)."""
    if name == "bleak":
        return BleBackend()
    plugin = load_backend_plugin(name)
    options = {"sim_radio": sim_radio} if sim_radio is not None else {}
    return BleBackend(plugin.scanner, plugin.client, options)


# ---------------------------------------------------------------- timing


@dataclass(frozen=True, slots=True)
class BleTiming:
    """Waits and back-off; the defaults are for real devices, tests shrink them."""

    #: One look for a paired device's advertisement.  Health devices advertise
    #: every 0.1-1 s while awake; 10 s covers a slow one without hogging the task.
    scan_window_s: float = 10.0
    #: First wait after a session ends or fails: a cuff hangs up after each upload
    #: and is usually awake again within seconds of the next measurement.
    reconnect_initial_s: float = 1.0
    #: Longest wait: a device out of range (another room, a walk) is looked for
    #: once a minute, which costs little radio time and catches its return.
    reconnect_max_s: float = 60.0
    #: RACP watchdog: no record or reply for this long aborts the transfer
    #: (reference 1.6 step 5: about the ATT transaction timeout, 30 s).
    racp_idle_timeout_s: float = 30.0
    #: Battery level changes slowly; reading it hourly while connected is plenty.
    battery_poll_s: float = 3600.0
    #: establish_connection's own attempts before the task backs off.
    connect_attempts: int = 3
    #: Wait between retries when on_measurement fails (the outbox is refusing).
    delivery_retry_s: float = 1.0


# ---------------------------------------------------------------- interfaces

MeasurementCallback = Callable[[str, Measurement, bytes], Awaitable[None]]
GarbageCallback = Callable[[str, int, bytes, str], Awaitable[None]]


class RecordCursorStore(Protocol):
    """Where the last stored record delivered from each RACP device is remembered.

    Glucose meters: the last delivered sequence number.  Pulse oximeters (whose
    RACP has no sequence filter, reference 1.6): how many of the device's
    stored records have been delivered.
    """

    def load(self, address: str) -> int | None: ...

    def save(self, address: str, cursor: int) -> None: ...


class MemoryCursorStore:
    """A RecordCursorStore in a dict: for tests and for hubs without a disk."""

    def __init__(self) -> None:
        self.cursors: dict[str, int] = {}

    def load(self, address: str) -> int | None:
        return self.cursors.get(address)

    def save(self, address: str, cursor: int) -> None:
        self.cursors[address] = cursor


async def _log_garbage(address: str, characteristic: int, raw: bytes, reason: str) -> None:
    _LOGGER.warning("%s: unparsed 0x%04X %s: %s", address, characteristic, raw.hex(), reason)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class DeviceCounters:
    connections: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    measurements: int = 0
    garbage: int = 0
    duplicates_skipped: int = 0
    records_downloaded: int = 0
    racp_failures: int = 0
    clock_sets: int = 0
    last_error: str | None = None


# ---------------------------------------------------------------- scanning for new devices


@dataclass(frozen=True, slots=True)
class FoundDevice:
    address: str
    name: str | None
    kind: Kind
    rssi: int


def _kind_of(adv: AdvertisementData) -> Kind | None:
    for uuid in adv.service_uuids:
        value = str_to_uuid16(uuid)
        if value in HEALTH_SERVICES:
            return HEALTH_SERVICES[value]
    return None


async def scan_for_new_devices(
    seconds: float, *, backend: BleBackend | None = None, exclude: Iterable[str] = ()
) -> list[FoundDevice]:
    """Health devices advertising one of the five health services within ``seconds``
    seconds (for pairing), strongest signal first; ``exclude`` the already paired."""
    backend = backend or BleBackend()
    skip = {a.upper() for a in exclude}
    uuids = [uuid16_to_str(u) for u in HEALTH_SERVICES]
    try:
        async with BleakScanner(service_uuids=uuids, backend=backend.scanner,
                                **backend.options) as scanner:
            await asyncio.sleep(seconds)
            seen = scanner.discovered_devices_and_advertisement_data
    except BleakError as err:
        raise BleError(f"scan failed: {err}") from err
    found = []
    for device, adv in seen.values():
        kind = _kind_of(adv)
        if kind is not None and device.address.upper() not in skip:
            found.append(FoundDevice(device.address.upper(), adv.local_name or device.name,
                                     kind, adv.rssi))
    return sorted(found, key=lambda d: -d.rssi)


# ---------------------------------------------------------------- the collector


class BleCollector:
    """Collects readings from the hub's paired devices, one task per device.

    Use ``async with BleCollector(...) as collector:`` or ``await start()`` /
    ``await stop()``.
    """

    def __init__(
        self,
        devices: Iterable[PairedDevice],
        on_measurement: MeasurementCallback,
        *,
        on_garbage: GarbageCallback = _log_garbage,
        cursors: RecordCursorStore | None = None,
        backend: BleBackend | None = None,
        timing: BleTiming | None = None,
        zone: ZoneInfo | str = "Europe/London",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._devices = {d.address.upper(): d for d in devices}
        self.on_measurement = on_measurement
        self.on_garbage = on_garbage
        self.cursors: RecordCursorStore = cursors or MemoryCursorStore()
        self.backend = backend or BleBackend()
        self.timing = timing or BleTiming()
        self.zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        self.clock = clock
        self._workers: dict[str, _DeviceWorker] = {}
        self._scanner: BleakScanner | None = None
        self._adverts: dict[str, BLEDevice] = {}
        self._advert_events: dict[str, asyncio.Event] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._running = False

    async def __aenter__(self) -> BleCollector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._scanner = BleakScanner(self._on_advert, backend=self.backend.scanner,
                                     **self.backend.options)
        try:
            await self._scanner.start()
        except BleakError as err:
            raise BackendUnavailable(f"cannot start scanning: {err}") from err
        self._running = True
        for device in self._devices.values():
            self._start_worker(device)

    async def stop(self) -> None:
        self._running = False
        workers = list(self._workers.values())
        self._workers.clear()
        await asyncio.gather(*(w.stop() for w in workers), *self._stopping)
        if self._scanner is not None:
            with contextlib.suppress(BleakError):
                await self._scanner.stop()
            self._scanner = None

    def update_devices(self, devices: Iterable[PairedDevice]) -> None:
        """Apply a changed list of paired devices without a restart."""
        wanted = {d.address.upper(): d for d in devices}
        for address in set(self._devices) - set(wanted):
            worker = self._workers.pop(address, None)
            if worker is not None:
                task = asyncio.get_running_loop().create_task(worker.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        for address, device in wanted.items():
            worker = self._workers.get(address)
            if worker is not None:
                worker.paired = device
            elif self._running:
                self._start_worker(device)
        self._devices = wanted

    def _start_worker(self, device: PairedDevice) -> None:
        worker = _DeviceWorker(self, device)
        self._workers[device.address.upper()] = worker
        worker.start()

    # ------------------------------------------------------------ status

    def status(self) -> list[DeviceState]:
        """Per-device state for the hub's status message."""
        return [w.state() for w in self._workers.values()]

    def counters(self, address: str) -> DeviceCounters:
        return self._workers[address.upper()].counters

    def clock_offset_s(self, address: str) -> float | None:
        """How far the device clock was off (device - hub, seconds) when last checked,
        before any correction; readings it stored earlier carry that error."""
        return self._workers[address.upper()].clock_offset_s

    async def scan_for_new_devices(self, seconds: float) -> list[FoundDevice]:
        return await scan_for_new_devices(seconds, backend=self.backend, exclude=self._devices)

    # ------------------------------------------------------------ advertisements

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        self._adverts[address] = device
        worker = self._workers.get(address)
        if worker is not None:
            worker.last_seen = self.clock()
        event = self._advert_events.get(address)
        if event is not None:
            event.set()

    async def wait_for_advert(self, address: str, within_s: float) -> BLEDevice | None:
        """The device's next advertisement within ``within_s`` seconds (a fresh one:
        an old advertisement says nothing about whether it is in range now)."""
        event = self._advert_events.setdefault(address, asyncio.Event())
        event.clear()
        try:
            async with asyncio.timeout(within_s):
                await event.wait()
        except TimeoutError:
            return None
        return self._adverts.get(address)


class _DeviceWorker:
    """The task that looks after one paired device."""

    def __init__(self, collector: BleCollector, paired: PairedDevice) -> None:
        self.collector = collector
        self.paired = paired
        self.address = paired.address.upper()
        self.counters = DeviceCounters()
        self.battery: int | None = None
        self.last_seen: datetime | None = None
        self.connected = False
        self.clock_offset_s: float | None = None
        self._inbox: asyncio.Queue[tuple[int, bytes, int | None]] = asyncio.Queue()
        self._racp_replies: asyncio.Queue[bytes] = asyncio.Queue()
        self._last_activity = 0.0
        #: index of the next record within a "report all" transfer, None outside one
        self._transfer_index: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name=f"ble {self.address}"),
                       loop.create_task(self._consume(), name=f"ble consume {self.address}")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def state(self) -> DeviceState:
        return DeviceState(address=self.address, kind=self.paired.kind, battery=self.battery,
                           last_seen=self.last_seen, connected=self.connected)

    # ------------------------------------------------------------ connection loop

    async def _run(self) -> None:
        timing = self.collector.timing
        backoff = timing.reconnect_initial_s
        while True:
            device = await self.collector.wait_for_advert(self.address, timing.scan_window_s)
            if device is not None:
                try:
                    await self._session(device)
                    backoff = timing.reconnect_initial_s
                except BleError as err:
                    self.counters.last_error = str(err)
                    _LOGGER.info("%s: %s; retrying in %.1f s", self.address, err, backoff)
                except Exception as err:  # a bug must not end the device's task for good
                    self.counters.last_error = repr(err)
                    _LOGGER.exception("%s: session failed; retrying in %.1f s", self.address,
                                      backoff)
                finally:
                    self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, timing.reconnect_max_s)

    async def _connect(self, device: BLEDevice, on_disconnect: Callable[[BleakClient], None]
                       ) -> BleakClient:
        backend = self.collector.backend
        try:
            client: BleakClient = await establish_connection(
                BleakClient, device, self.paired.name or self.address,
                disconnected_callback=on_disconnect,
                max_attempts=self.collector.timing.connect_attempts,
                backend=backend.client, **backend.options,
            )
        except (BleakError, TimeoutError) as err:
            self.counters.connect_failures += 1
            raise ConnectFailed(f"connect failed: {err}") from err
        return client

    async def _session(self, device: BLEDevice) -> None:
        disconnected = asyncio.Event()

        def on_disconnect(_client: BleakClient) -> None:
            disconnected.set()

        client = await self._connect(device, on_disconnect)
        self.counters.connections += 1
        self.connected = True
        self.last_seen = self.collector.clock()
        self._racp_replies = asyncio.Queue()
        try:
            characteristics = self._characteristics(client)
            await self._subscribe(client, characteristics)
            if CURRENT_TIME in characteristics:
                await self._check_clock(client, characteristics[CURRENT_TIME])
            if BATTERY_LEVEL in characteristics:
                await self._read_battery(client, characteristics[BATTERY_LEVEL])
            if RECORD_ACCESS_CONTROL_POINT in characteristics:
                await self._download(client, characteristics, disconnected)
            while not disconnected.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.collector.timing.battery_poll_s):
                        await disconnected.wait()
                if not disconnected.is_set() and BATTERY_LEVEL in characteristics:
                    await self._read_battery(client, characteristics[BATTERY_LEVEL])
            self.counters.disconnects += 1
        except (BleakError, TimeoutError) as err:
            self.counters.disconnects += 1
            raise LinkLost(f"link lost: {err or type(err).__name__}") from err
        finally:
            self._transfer_index = None
            with contextlib.suppress(BleakError):
                await client.disconnect()

    @staticmethod
    def _characteristics(client: BleakClient) -> dict[int, BleakGATTCharacteristic]:
        found: dict[int, BleakGATTCharacteristic] = {}
        for characteristic in client.services.characteristics.values():
            value = str_to_uuid16(characteristic.uuid)
            if value is not None:
                found.setdefault(value, characteristic)
        return found

    async def _subscribe(self, client: BleakClient,
                         characteristics: dict[int, BleakGATTCharacteristic]) -> None:
        # RACP first so its replies have somewhere to go, then every measurement.
        if RECORD_ACCESS_CONTROL_POINT in characteristics:
            await client.start_notify(characteristics[RECORD_ACCESS_CONTROL_POINT],
                                      self._on_racp_reply)
        for value, characteristic in characteristics.items():
            if value in MEASUREMENT_CHARACTERISTICS:
                await client.start_notify(characteristic, self._on_notification)

    # ------------------------------------------------------------ received bytes

    def _on_notification(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        value = str_to_uuid16(characteristic.uuid) or 0
        self._last_activity = time.monotonic()
        self.last_seen = self.collector.clock()
        index = None
        if self._transfer_index is not None and value == PLX_SPOT_CHECK:
            index = self._transfer_index
            self._transfer_index += 1
        self._inbox.put_nowait((value, bytes(data), index))

    def _on_racp_reply(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self._last_activity = time.monotonic()
        self._racp_replies.put_nowait(bytes(data))

    async def _consume(self) -> None:
        """Decodes and delivers, one message at a time, in the order received."""
        while True:
            characteristic, raw, index = await self._inbox.get()
            try:
                await self._handle(characteristic, raw, index)
            except Exception:  # a bug must not stop the device's readings
                _LOGGER.exception("%s: failed to handle 0x%04X %s", self.address,
                                  characteristic, raw.hex())
            finally:
                self._inbox.task_done()

    async def _handle(self, characteristic: int, raw: bytes, index: int | None) -> None:
        collector = self.collector
        try:
            measurement = decode(characteristic, raw)
        except GattParseError as err:
            self.counters.garbage += 1
            _LOGGER.warning("%s: garbage on 0x%04X %s: %s", self.address, characteristic,
                            raw.hex(), err)
            await collector.on_garbage(self.address, characteristic, raw, str(err))
            return
        cursor = collector.cursors.load(self.address)
        if isinstance(measurement, ControlSolution):
            # a meter check, not patient data: step the cursor past it, store nothing
            if cursor is None or measurement.sequence_number > cursor:
                collector.cursors.save(self.address, measurement.sequence_number)
            return
        if not isinstance(measurement, Measurement):
            return
        new_cursor: int | None = None
        if characteristic == GLUCOSE_MEASUREMENT:
            sequence = -1 if measurement.sequence_number is None else measurement.sequence_number
            if cursor is not None and 0 <= sequence <= cursor:
                self.counters.duplicates_skipped += 1
                return
            new_cursor = sequence if sequence >= 0 else None
        elif characteristic == PLX_SPOT_CHECK and self._has_racp:
            position = index if index is not None else (cursor or 0)
            if cursor is not None and position < cursor:
                self.counters.duplicates_skipped += 1
                return
            new_cursor = position + 1
        await self._deliver(measurement, raw)
        if index is not None or characteristic == GLUCOSE_MEASUREMENT:
            self.counters.records_downloaded += 1
        if new_cursor is not None:
            collector.cursors.save(self.address, new_cursor)

    @property
    def _has_racp(self) -> bool:
        return self.paired.kind in (Kind.SPO2, Kind.GLUCOSE)

    async def _deliver(self, measurement: Measurement, raw: bytes) -> None:
        """Hand over until the callback accepts it: a reading is never dropped here."""
        while True:
            try:
                await self.collector.on_measurement(self.address, measurement, raw)
            except Exception as err:
                _LOGGER.warning("%s: on_measurement failed (%s); retrying", self.address, err)
                await asyncio.sleep(self.collector.timing.delivery_retry_s)
            else:
                self.counters.measurements += 1
                return

    # ------------------------------------------------------------ clock and battery

    async def _check_clock(self, client: BleakClient, characteristic: BleakGATTCharacteristic
                           ) -> None:
        local_now = self.collector.clock().astimezone(self.collector.zone).replace(tzinfo=None)
        raw = bytes(await client.read_gatt_char(characteristic))
        device_time = None
        try:
            current = decode(CURRENT_TIME, raw)
            if isinstance(current, CurrentTime) and current.value is not None:
                device_time = current.value.replace(microsecond=0)
        except GattParseError as err:
            _LOGGER.info("%s: unreadable Current Time %s: %s", self.address, raw.hex(), err)
        if device_time is not None:
            self.clock_offset_s = (device_time - local_now).total_seconds()
        close_enough = device_time is not None and abs(device_time - local_now) <= CLOCK_TOLERANCE
        if close_enough or "write" not in characteristic.properties:
            return
        try:
            await client.write_gatt_char(
                characteristic, encode_current_time(local_now, ADJUST_EXTERNAL_REFERENCE),
                response=True)
            self.counters.clock_sets += 1
        except BleakError as err:
            if not client.is_connected:
                raise
            # Omron cuffs answer ATT 0x80 here (reference 1.7): not fatal.
            _LOGGER.info("%s: device refused the clock setting: %s", self.address, err)

    async def _read_battery(self, client: BleakClient, characteristic: BleakGATTCharacteristic
                            ) -> None:
        raw = bytes(await client.read_gatt_char(characteristic))
        try:
            level = decode(BATTERY_LEVEL, raw)
        except GattParseError as err:  # 101..255 are reserved (reference 1.8, V25)
            _LOGGER.info("%s: battery level %s refused: %s", self.address, raw.hex(), err)
            return
        if isinstance(level, BatteryLevel):
            self.battery = level.percent

    # ------------------------------------------------------------ RACP (reference 1.6)

    async def _racp(self, client: BleakClient, characteristic: BleakGATTCharacteristic,
                    request: bytes, disconnected: asyncio.Event
                    ) -> RacpNumberOfRecords | RacpResponse:
        """Write one request, then wait for its reply while records keep arriving; the
        watchdog fires only after ``racp_idle_timeout_s`` of silence."""
        self._last_activity = time.monotonic()
        await client.write_gatt_char(characteristic, request, response=True)
        idle = self.collector.timing.racp_idle_timeout_s
        while True:
            remaining = self._last_activity + idle - time.monotonic()
            if remaining <= 0:
                with contextlib.suppress(BleakError):
                    await client.write_gatt_char(characteristic, racp_requests.abort_operation(),
                                                 response=True)
                raise RacpFailed(f"no RACP reply for {idle:.0f} s; aborted")
            reply = asyncio.ensure_future(self._racp_replies.get())
            gone = asyncio.ensure_future(disconnected.wait())
            done, _ = await asyncio.wait({reply, gone}, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if reply not in done:
                reply.cancel()
                if disconnected.is_set():
                    raise LinkLost("disconnected during a RACP transfer")
                continue
            raw = reply.result()
            try:
                parsed = decode(RECORD_ACCESS_CONTROL_POINT, raw)
            except GattParseError as err:
                raise RacpFailed(f"unreadable RACP reply {raw.hex()}: {err}") from err
            if isinstance(parsed, RacpNumberOfRecords | RacpResponse):
                return parsed
            raise RacpFailed(f"unexpected RACP indication {raw.hex()}")

    async def _download(self, client: BleakClient,
                        characteristics: dict[int, BleakGATTCharacteristic],
                        disconnected: asyncio.Event) -> None:
        """Fetch the stored records not yet delivered: count, then report."""
        racp = characteristics[RECORD_ACCESS_CONTROL_POINT]
        await self._inbox.join()  # the cursor must include everything already received
        cursor = self.collector.cursors.load(self.address)
        glucose = GLUCOSE_MEASUREMENT in characteristics
        if glucose and cursor is not None:
            count_request = racp_requests.report_number_of_records_from((cursor + 1) & 0xFFFF)
            report_request = racp_requests.report_records_from((cursor + 1) & 0xFFFF)
        else:
            count_request = racp_requests.report_number_of_records()
            report_request = racp_requests.report_all_records()
        try:
            count = await self._racp(client, racp, count_request, disconnected)
            if not isinstance(count, RacpNumberOfRecords):
                raise RacpFailed(f"count request answered {count.response_name}")
            new = count.count
            if not glucose:  # position cursor (PLX)
                if cursor is not None and count.count < cursor:
                    _LOGGER.warning("%s: device holds %d records, fewer than the %d delivered; "
                                    "its memory was cleared", self.address, count.count, cursor)
                    self.collector.cursors.save(self.address, 0)
                    cursor = 0
                new = count.count - (cursor or 0)
            if new <= 0:
                return
            self._transfer_index = None if glucose else 0
            result = await self._racp(client, racp, report_request, disconnected)
        except RacpFailed:
            self.counters.racp_failures += 1
            raise
        finally:
            self._transfer_index = None
        if not isinstance(result, RacpResponse) or result.response_code not in (
                racp_requests.RESPONSE_SUCCESS, racp_requests.RESPONSE_NO_RECORDS_FOUND):
            self.counters.racp_failures += 1
            raise RacpFailed(f"report request answered {result}")
        await self._inbox.join()
