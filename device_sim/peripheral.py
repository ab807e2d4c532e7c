"""One virtual BLE health device: its GATT server, stored records, clock and faults.

The peripheral knows nothing about bleak; ``device_sim.backend`` adapts it to
bleak's backend interface.  A connection is a ``Link``; the peripheral
accepts one at a time, as real health devices do.

Stored readings (reference /work/shared/reference/ble-gatt.md section 1.6 and 1.10):
- RACP devices (glucose meter, pulse oximeter) keep every record and answer
  Record Access Control Point requests: report number (0x04), report (0x01)
  with operators all / <= / >= / range / first / last on the sequence number
  (the oximeter only supports "all", as PLXS does), abort (0x03).
- the others (cuff, thermometer, scale) store readings taken while nobody
  is connected and indicate them, oldest first, once a client enables
  indications; a record is forgotten only after its indication is confirmed.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from device_sim import encoding as enc
from device_sim import profiles as p
from device_sim.faults import ArmedFaults, Fault
from device_sim.scenarios import Scenario, Steady
from homeward.kinds import Kind

_LOGGER = logging.getLogger(__name__)

#: The device's wall clock is UK local time unless told otherwise.
DEFAULT_DEVICE_ZONE = ZoneInfo("Europe/London")

# ATT error codes the simulator answers with (reference section 1.0).
ATT_WRITE_NOT_PERMITTED = 0x03
ATT_READ_NOT_PERMITTED = 0x02
ATT_APPLICATION_ERROR = 0x80  # Omron cuffs reject Current Time writes with this
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE

NotifyCallback = Callable[[bytearray], None]
Clock = Callable[[], datetime]


class LinkLost(Exception):
    """The connection dropped (fault, out of range or device gone)."""


class ConnectRefused(Exception):
    """The device did not accept a connection."""


class AttError(Exception):
    """An ATT error response to a read or write."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code


@dataclass(frozen=True, slots=True)
class StoredRecord:
    sequence_number: int
    data: bytes


@dataclass(eq=False)
class Link:
    """One connection from a central to this peripheral."""

    on_disconnect: Callable[[], None]
    connected: bool = True
    reads: int = 0
    subscriptions: dict[int, NotifyCallback] = field(default_factory=dict)
    live: deque[tuple[int, bytes]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class VirtualPeripheral:
    """A virtual device of one ``kind`` (homeward.kinds.Kind).

    ``scenario`` produces the values of each new reading (default: a steady
    patient seeded with ``seed``).  ``clock`` returns aware UTC; the device's
    own clock is that in ``zone`` plus ``clock_offset`` (a wrong clock).
    """

    def __init__(
        self,
        kind: Kind,
        address: str,
        *,
        name: str | None = None,
        scenario: Scenario | None = None,
        faults: Iterable[Fault] = (),
        battery: int = 87,
        clock_offset: timedelta = timedelta(0),
        clock: Clock = _utc_now,
        zone: ZoneInfo = DEFAULT_DEVICE_ZONE,
        seed: int = 0,
        serial_number: str | None = None,
        rssi: int = -60,
        mg_per_dl: bool = False,
        indication_delay_s: float = 0.0,
    ) -> None:
        if kind not in p.PROFILES:
            raise ValueError(f"no virtual device for kind {kind}")
        self.kind = kind
        self.profile = p.PROFILES[kind]
        self.address = address.upper()
        self.name = name or f"{self.profile.model} {self.address[-5:].replace(':', '')}"
        self.scenario: Scenario = scenario or Steady(kind, seed=seed)
        self.faults = ArmedFaults(tuple(faults))
        self.battery = battery
        self.clock_offset = clock_offset
        self.clock = clock
        self.zone = zone
        self.serial_number = serial_number or f"SIM{seed:05d}{self.address[-2:]}"
        self.rssi = rssi
        self.mg_per_dl = mg_per_dl
        self.indication_delay_s = indication_delay_s
        self.in_range = True
        #: RACP devices: every record; the others: records not yet delivered.
        self.records: list[StoredRecord] = []
        self._next_sequence = 1
        self._link: Link | None = None
        self._racp_task: asyncio.Task[None] | None = None
        #: counters a test or demo can look at
        self.sent: list[tuple[int, bytes]] = []
        self.connections = 0
        for fault in faults:
            self._apply_state_fault(fault)

    # ------------------------------------------------------------ state

    def _apply_state_fault(self, fault: Fault) -> None:
        if fault.name == "wrong_clock":
            self.clock_offset = timedelta(seconds=fault.clock_offset_s)
        elif fault.name == "low_battery":
            self.battery = fault.battery
        elif fault.name == "out_of_range":
            self.in_range = False

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)
        self._apply_state_fault(fault)

    def device_time(self) -> datetime:
        """The device's own wall clock: naive local time, possibly wrong."""
        local = self.clock().astimezone(self.zone).replace(tzinfo=None)
        return local + self.clock_offset

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    @property
    def advertising(self) -> bool:
        """Health devices stop advertising while connected."""
        return self.in_range and not self.connected

    def set_in_range(self, in_range: bool) -> None:
        """Carry the device out of (or back into) the hub's range."""
        self.in_range = in_range
        if not in_range and self._link is not None:
            self._drop(self._link, "out of range")

    # ------------------------------------------------------------ readings

    def measure(self, values: dict[str, float] | None = None, *,
                at: datetime | None = None) -> bytes:
        """Take one reading now (``values`` or the scenario's next), store it and send it
        if a client is subscribed.  Returns the bytes the device produced."""
        values = values if values is not None else self.scenario.next_values()
        sequence = self._next_sequence
        self._next_sequence = (self._next_sequence + 1) & 0xFFFF
        data = self.encode(values, at or self.device_time(), sequence)
        malformed = self.faults.take("malformed_packet")
        if malformed is not None:
            data = malformed.payload if malformed.payload is not None else data[:3]
        self._hold(sequence, data)
        return data

    def push(self, data: bytes) -> None:
        """Store and send exactly these measurement bytes (a reference vector, or garbage)."""
        sequence = self._next_sequence
        self._next_sequence = (self._next_sequence + 1) & 0xFFFF
        self._hold(sequence, bytes(data))

    def _hold(self, sequence: int, data: bytes) -> None:
        self.records.append(StoredRecord(sequence, data))
        link = self._link
        if link is not None and link.connected:
            if self.profile.racp and self.profile.measurement in link.subscriptions:
                link.live.append((self.profile.measurement, data))
            link.wake.set()

    def store_records(self, count: int, *, every: timedelta = timedelta(hours=1)) -> None:
        """Fill the memory with ``count`` past readings, ``every`` apart, ending now."""
        now = self.device_time()
        for i in range(count):
            self.measure(at=now - every * (count - i))

    def encode(self, values: dict[str, float], at: datetime, sequence: int) -> bytes:
        """The measurement characteristic's bytes for ``values`` taken at device time ``at``."""
        if self.kind is Kind.BLOOD_PRESSURE:
            return enc.blood_pressure_measurement(enc.BloodPressure(
                values["systolic"], values["diastolic"], values["mean_arterial"],
                pulse_rate=values.get("pulse_rate"), timestamp=at))
        if self.kind is Kind.SPO2:
            return enc.plx_spot_check(enc.SpotCheck(
                values["spo2"], values["pulse_rate"], timestamp=at))
        if self.kind is Kind.TEMPERATURE:
            return enc.temperature_measurement(enc.Temperature(
                values["body_temperature"], timestamp=at, site=1))
        if self.kind is Kind.WEIGHT:
            return enc.weight_measurement(enc.Weight(values["body_weight"], timestamp=at))
        return enc.glucose_measurement(enc.Glucose(
            sequence, at, values["blood_glucose"], mg_per_dl=self.mg_per_dl))

    def send_continuous(self, spo2: float, pulse_rate: float) -> bool:
        """An oximeter's 0x2A5F continuous notification (not stored)."""
        link = self._link
        if self.kind is not Kind.SPO2 or link is None or p.PLX_CONTINUOUS not in link.subscriptions:
            return False
        link.live.append((p.PLX_CONTINUOUS, enc.plx_continuous(enc.Continuous(spo2, pulse_rate))))
        link.wake.set()
        return True

    # ------------------------------------------------------------ connection

    def connect(self, on_disconnect: Callable[[], None]) -> Link:
        if not self.in_range:
            raise ConnectRefused(f"{self.address} is out of range")
        if self.faults.take("connect_fails") is not None:
            raise ConnectRefused(f"{self.address} refused the connection (fault)")
        if self.connected:
            raise ConnectRefused(f"{self.address} is already connected to another central")
        link = Link(on_disconnect)
        self._link = link
        self.connections += 1
        self._spawn(link, self._sender(link))
        return link

    def disconnect(self, link: Link) -> None:
        """The central hangs up: no disconnected callback (bleak calls it only
        for unsolicited disconnections)."""
        self._close(link)

    def _spawn(self, link: Link, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)
        return task

    def _close(self, link: Link) -> None:
        if not link.connected:
            return
        link.connected = False
        # Without a bond the CCCDs reset with every connection (reference 1.0).
        link.subscriptions.clear()
        link.wake.set()
        current = asyncio.current_task()
        for task in list(link.tasks):
            if task is not current:
                task.cancel()
        if self._link is link:
            self._link = None
        self._racp_task = None

    def _drop(self, link: Link, reason: str) -> None:
        """The device side ends the connection: the central is told."""
        if not link.connected:
            return
        _LOGGER.debug("%s: link dropped: %s", self.address, reason)
        self._close(link)
        asyncio.get_running_loop().call_soon(link.on_disconnect)

    def _check(self, link: Link) -> None:
        if not link.connected or self._link is not link:
            raise LinkLost(f"{self.address}: not connected")

    # ------------------------------------------------------------ GATT server

    async def read(self, link: Link, characteristic: int) -> bytes:
        self._check(link)
        link.reads += 1
        fault = self.faults.find("disconnect_during_read")
        if fault is not None and link.reads > fault.after_reads:
            self.faults.fire(fault)
            self._drop(link, "disconnect_during_read")
            raise LinkLost(f"{self.address}: disconnected during read (fault)")
        await asyncio.sleep(0)
        return self._value(characteristic)

    def _value(self, characteristic: int) -> bytes:
        values: dict[int, Callable[[], bytes]] = {
            p.BATTERY_LEVEL: lambda: bytes([self.battery]),
            p.MANUFACTURER_NAME: lambda: b"Homeward Simulated Devices",
            p.MODEL_NUMBER: lambda: self.profile.model.encode(),
            p.SERIAL_NUMBER: lambda: self.serial_number.encode(),
            p.FIRMWARE_REVISION: lambda: b"1.0.0-sim",
            p.CURRENT_TIME: lambda: enc.current_time(self.device_time()),
            # irregular pulse detection + body movement (bits 0 and 2)
            p.BLOOD_PRESSURE_FEATURE: lambda: enc.blood_pressure_feature(0x0005),
            # spot-check storage and timestamp (bits 2, 3), measurement status (bit 0)
            p.PLX_FEATURES: lambda: enc.plx_features(0x000D),
            p.TEMPERATURE_TYPE: lambda: bytes([1]),  # armpit
            # time stamp supported, 0.05 kg resolution (value 4 in bits 3-6)
            p.WEIGHT_SCALE_FEATURE: lambda: enc.weight_scale_feature(0x01 | (4 << 3)),
            # bit 0: low battery detection during measurement supported
            p.GLUCOSE_FEATURE: lambda: enc.glucose_feature(0x0001),
        }
        if characteristic not in values:
            raise AttError(ATT_READ_NOT_PERMITTED, f"0x{characteristic:04X} is not readable")
        return values[characteristic]()

    async def write(self, link: Link, characteristic: int, data: bytes) -> None:
        self._check(link)
        await asyncio.sleep(0)
        if characteristic == p.CURRENT_TIME:
            self._write_current_time(data)
        elif characteristic == p.RECORD_ACCESS_CONTROL_POINT and self.profile.racp:
            self._racp_request(link, bytes(data))
        else:
            raise AttError(ATT_WRITE_NOT_PERMITTED, f"0x{characteristic:04X} is not writable")

    def _write_current_time(self, data: bytes) -> None:
        if self.faults.take("reject_time_write") is not None:
            raise AttError(ATT_APPLICATION_ERROR, "current time write rejected (fault)")
        if len(data) < 7:
            raise AttError(0x0D, "invalid attribute value length")
        year, month, day, hour, minute, second = struct.unpack_from("<HBBBBB", data)
        try:
            written = datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 -- device wall clock
        except ValueError as err:
            raise AttError(0xFF, f"out of range: {err}") from err
        true_local = self.clock().astimezone(self.zone).replace(tzinfo=None)
        self.clock_offset = written - true_local

    def subscribe(self, link: Link, characteristic: int, callback: NotifyCallback) -> None:
        self._check(link)
        link.subscriptions[characteristic] = callback
        if characteristic == self.profile.measurement:
            link.wake.set()  # store and forward: push what is held

    def unsubscribe(self, link: Link, characteristic: int) -> None:
        link.subscriptions.pop(characteristic, None)

    async def _send(self, link: Link, characteristic: int, data: bytes) -> bool:
        """One notification/indication; True once the client has it (confirmed)."""
        slow = self.faults.find("slow_indications")
        delay = slow.delay_s if slow is not None else self.indication_delay_s
        await asyncio.sleep(delay)
        callback = link.subscriptions.get(characteristic)
        if not link.connected or callback is None:
            return False
        callback(bytearray(data))
        self.sent.append((characteristic, data))
        return True

    async def _sender(self, link: Link) -> None:
        """Delivers live notifications and, for store-and-forward devices, the held
        records, one at a time (an indication waits for its confirmation)."""
        while link.connected:
            await link.wake.wait()
            link.wake.clear()
            while link.connected:
                if link.live:
                    characteristic, data = link.live.popleft()
                    await self._send(link, characteristic, data)
                elif (not self.profile.racp and self.records
                      and self.profile.measurement in link.subscriptions):
                    record = self.records[0]
                    if await self._send(link, self.profile.measurement, record.data):
                        self.records.remove(record)
                else:
                    break

    # ------------------------------------------------------------ RACP (reference 1.6)

    def _racp_request(self, link: Link, request: bytes) -> None:
        if p.RECORD_ACCESS_CONTROL_POINT not in link.subscriptions:
            raise AttError(ATT_CCCD_IMPROPERLY_CONFIGURED, "RACP indications not enabled")
        op_code = request[0] if request else 0
        if op_code == enc.RACP_ABORT:
            if self._racp_task is not None:
                self._racp_task.cancel()
                self._racp_task = None
            self._racp_reply(link, enc.racp_response(enc.RACP_ABORT, enc.RACP_SUCCESS))
            return
        if self._racp_task is not None and not self._racp_task.done():
            raise AttError(ATT_PROCEDURE_ALREADY_IN_PROGRESS, "procedure already in progress")
        if op_code not in (enc.RACP_REPORT_RECORDS, enc.RACP_REPORT_NUMBER):
            self._racp_reply(link, enc.racp_response(op_code, enc.RACP_OP_CODE_NOT_SUPPORTED))
            return
        selected = self._select(request)
        if isinstance(selected, int):
            self._racp_reply(link, enc.racp_response(op_code, selected))
            return
        if op_code == enc.RACP_REPORT_NUMBER:
            self._racp_reply(link, enc.racp_number_of_records(len(selected)))
            return
        if not selected:
            self._racp_reply(link, enc.racp_response(op_code, enc.RACP_NO_RECORDS_FOUND))
            return
        if self.profile.measurement not in link.subscriptions:
            raise AttError(ATT_CCCD_IMPROPERLY_CONFIGURED, "measurement notifications not enabled")
        self._racp_task = self._spawn(link, self._stream(link, selected))

    def _select(self, request: bytes) -> list[StoredRecord] | int:
        """The records a request's operator selects, or a RACP response code."""
        if len(request) < 2:
            return enc.RACP_INVALID_OPERATOR
        operator, operand = request[1], request[2:]
        records = self.records
        if operator == enc.RACP_OP_ALL:
            return list(records) if not operand else enc.RACP_INVALID_OPERAND
        if operator == enc.RACP_OP_NULL or operator > enc.RACP_OP_LAST:
            return enc.RACP_INVALID_OPERATOR
        if self.kind is Kind.SPO2:  # PLXS: Null and All records only (reference 1.6)
            return enc.RACP_OPERATOR_NOT_SUPPORTED
        if operator == enc.RACP_OP_FIRST:
            return records[:1]
        if operator == enc.RACP_OP_LAST:
            return records[-1:]
        if not operand:
            return enc.RACP_INVALID_OPERAND
        if operand[0] != enc.RACP_FILTER_SEQUENCE_NUMBER:
            return enc.RACP_OPERAND_NOT_SUPPORTED
        wanted = 4 if operator == enc.RACP_OP_WITHIN_RANGE else 2
        if len(operand) != 1 + wanted:
            return enc.RACP_INVALID_OPERAND
        first = struct.unpack_from("<H", operand, 1)[0]
        if operator == enc.RACP_OP_LESS_OR_EQUAL:
            return [r for r in records if r.sequence_number <= first]
        if operator == enc.RACP_OP_GREATER_OR_EQUAL:
            return [r for r in records if r.sequence_number >= first]
        last = struct.unpack_from("<H", operand, 3)[0]
        if first > last:
            return enc.RACP_INVALID_OPERAND
        return [r for r in records if first <= r.sequence_number <= last]

    def _racp_reply(self, link: Link, data: bytes) -> None:
        link.live.append((p.RECORD_ACCESS_CONTROL_POINT, data))
        link.wake.set()

    async def _stream(self, link: Link, records: list[StoredRecord]) -> None:
        fault = self.faults.find("disconnect_during_racp")
        for i, record in enumerate(records):
            if fault is not None and i >= fault.after_records:
                self.faults.fire(fault)
                self._drop(link, "disconnect_during_racp")
                return
            if not await self._send(link, self.profile.measurement, record.data):
                return
        self._racp_reply(link, enc.racp_response(enc.RACP_REPORT_RECORDS, enc.RACP_SUCCESS))
        self._racp_task = None
