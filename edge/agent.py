"""The hub agent: BLE collector → durable outbox → MQTT publisher, plus the hub's status.

::

    agent = EdgeAgent(hub_id="hub-1", state_dir=Path(".homeward/edge/hub-1"),
                      broker=BrokerParams(port=1883, username="hub-1", password="..."),
                      ble_backend="sim")
    await agent.run()          # until cancelled; or: await agent.start() ... await agent.stop()

Everything the agent touches is a parameter (broker, credentials, state
folder, backend, virtual radio, clock), so one process can run many agents in
one asyncio loop (the demo's simulated homes) and tests can point one at a
private broker.  Each agent owns:

- an :class:`~edge.outbox.Outbox` in ``state_dir/outbox.db``; every reading
  is committed there (on a one-thread executor, so commits keep arrival order
  and never block the event loop) before :meth:`EdgeAgent.on_measurement`
  returns, which is the collector's signal that the reading is safe;
- a :class:`~edge.publisher.Publisher` thread that drains the outbox and
  publishes the retained status;
- optionally a ``edge.ble.BleCollector`` (``ble_backend`` "bleak" or "sim";
  ``None`` for none: readings then come only through
  :meth:`~EdgeAgent.on_measurement` / :meth:`~EdgeAgent.submit`).

Paired devices are the union of the server's retained config (cached in the
outbox state, so a hub that boots offline still knows its devices) and the
devices paired locally with ``homeward edge pair`` (``state_dir/paired.json``,
re-read when it changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from edge.outbox import Outbox, OutboxFull
from edge.publisher import BrokerParams, Publisher
from edge.readings import MeasurementLike, reading_from_measurement
from edge.settings import EdgeSettings
from homeward import __version__
from homeward.kinds import Kind
from homeward.wire import DeviceState, HubConfig, HubStatus, PairedDevice, Reading

if TYPE_CHECKING:
    from edge.ble import BleCollector, BleTiming

log = logging.getLogger(__name__)

_PAIRED = TypeAdapter(list[PairedDevice])
SERVER_CONFIG_KEY = "server_config"
PAIRED_FILE = "paired.json"


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- the locally paired devices (``homeward edge pair``) ----------------------------------------


def load_paired(state_dir: Path) -> list[PairedDevice]:
    path = Path(state_dir) / PAIRED_FILE
    if not path.exists():
        return []
    try:
        return _PAIRED.validate_json(path.read_bytes())
    except ValidationError as err:
        raise ValueError(f"{path} is not a list of paired devices: {err}") from err


def save_paired(state_dir: Path, devices: Iterable[PairedDevice]) -> Path:
    """Write the local pairing list atomically (a crash never leaves half a file)."""
    path = Path(state_dir) / PAIRED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(_PAIRED.dump_json(list(devices), indent=2))
    os.replace(tmp, path)
    return path


def merge_devices(server: Sequence[PairedDevice], local: Sequence[PairedDevice]
                  ) -> list[PairedDevice]:
    """The server's devices, then local ones it does not list (by address)."""
    merged = {d.address.upper(): d for d in local}
    merged.update({d.address.upper(): d for d in server})
    return list(merged.values())


class OutboxCursorStore:
    """``edge.ble.RecordCursorStore`` over the outbox's key-value state (survives restarts)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def load(self, address: str) -> int | None:
        return self.outbox.get_last_sequence(address.upper())

    def save(self, address: str, cursor: int) -> None:
        self.outbox.set_last_sequence(address.upper(), cursor)


class EdgeAgent:
    """One hub: collects, stores durably, publishes.  See the module docstring."""

    def __init__(
        self,
        *,
        hub_id: str,
        state_dir: Path | str,
        broker: BrokerParams,
        ble_backend: str | None = "bleak",
        sim_radio: str | None = None,
        devices: Sequence[PairedDevice] = (),
        settings: EdgeSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        ble_timing: BleTiming | None = None,
        agent_version: str = __version__,
        client_id: str | None = None,
        on_stored: Callable[[Reading], None] | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.state_dir = Path(state_dir)
        self.broker = broker
        self.ble_backend = ble_backend
        self.sim_radio = sim_radio or hub_id
        self.settings = settings or EdgeSettings()
        self.zone = ZoneInfo(self.settings.timezone)
        self.clock = clock
        self.ble_timing = ble_timing
        self.agent_version = agent_version
        self.client_id = client_id
        self.on_stored = on_stored  # called (on the loop) after each commit: demo/test counters
        self._extra_devices = list(devices)
        self.outbox: Outbox | None = None
        self.publisher: Publisher | None = None
        self.collector: BleCollector | None = None
        self.server_config: HubConfig | None = None
        self.local_devices: list[PairedDevice] = []
        self.devices: list[PairedDevice] = []
        self.readings_stored = 0
        self.readings_refused = 0  # the outbox was full
        self.readings_rejected = 0  # the wire format refused them (implausible values)
        self.garbage = 0  # bytes the GATT decoder could not parse
        self._last_seen: dict[str, datetime] = {}
        self._db: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._paired_mtime: float | None = None
        self._status_signature: object = None
        self._last_refusal_log = float("-inf")

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-{self.hub_id}")
        s = self.settings
        self.outbox = await self._in_db(partial(
            Outbox, self.state_dir / "outbox.db", max_readings=s.outbox_max_readings,
            nearly_full_ratio=s.outbox_nearly_full_ratio, synchronous=s.outbox_synchronous))
        cached = await self._in_db(partial(self.outbox.get_state, SERVER_CONFIG_KEY))
        if cached:
            with contextlib.suppress(ValidationError):
                self.server_config = HubConfig.model_validate_json(cached)
        self._reload_paired()
        self.devices = self._effective_devices()
        self.publisher = Publisher(
            hub_id=self.hub_id, outbox=self.outbox, broker=self.broker, settings=s,
            status_source=self.status, on_config=self._on_config_threadsafe,
            client_id=self.client_id)
        self.publisher.start()
        if self.ble_backend is not None:
            try:
                await self._start_collector(self.ble_backend)
            except BaseException:  # no Bluetooth: do not leave the publisher running
                self.collector = None
                await self.stop()
                raise
        self._status_task = asyncio.create_task(self._status_loop(),
                                                name=f"status {self.hub_id}")
        log.info("hub %s: agent %s started with %d devices, %d readings waiting",
                 self.hub_id, self.agent_version, len(self.devices), self.outbox.depth)

    async def _start_collector(self, backend_name: str) -> None:
        from edge.ble import BleCollector, resolve_backend

        assert self.outbox is not None
        self.collector = BleCollector(
            self.devices, self.on_measurement, on_garbage=self._on_garbage,
            cursors=OutboxCursorStore(self.outbox),
            backend=resolve_backend(backend_name, sim_radio=self.sim_radio),
            timing=self.ble_timing, zone=self.zone, clock=self.clock)
        await self.collector.start()

    async def stop(self) -> None:
        """Stop collecting, say offline, close the outbox (nothing in it is lost)."""
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status_task
            self._status_task = None
        if self.collector is not None:
            await self.collector.stop()
            self.collector = None
        if self.publisher is not None:
            await asyncio.to_thread(self.publisher.stop)
            self.publisher = None
        if self.outbox is not None:
            await self._in_db(self.outbox.close)
            self.outbox = None
        if self._db is not None:
            self._db.shutdown(wait=True)
            self._db = None

    async def run(self) -> None:
        """Start, run until cancelled, stop."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    async def __aenter__(self) -> EdgeAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- readings -------------------------------------------------------------------------

    async def on_measurement(self, address: str, measurement: MeasurementLike,
                             raw: bytes) -> None:
        """The collector's callback: returns only once the reading is committed.

        Raises :class:`~edge.outbox.OutboxFull` when the outbox refuses it (the
        collector retries later; the device keeps its record).
        """
        address = address.upper()
        offset = None
        if self.collector is not None:
            with contextlib.suppress(KeyError):
                seconds = self.collector.clock_offset_s(address)
                offset = None if seconds is None else timedelta(seconds=seconds)
        try:
            reading = reading_from_measurement(address, measurement, raw,
                                               received_at=self.clock(), zone=self.zone,
                                               clock_offset=offset)
        except ValueError as err:
            self.readings_rejected += 1
            log.warning("hub %s: %s reading from %s refused (%s); raw %s", self.hub_id,
                        measurement.kind, address, err, raw.hex())
            return
        sequence = getattr(measurement, "sequence_number", None)
        # a glucose record and its RACP cursor in one transaction: never fetched twice
        cursor = ((address, int(sequence)) if measurement.kind is Kind.GLUCOSE
                  and isinstance(sequence, int) else None)
        await self.submit(reading, sequence=cursor)

    async def submit(self, reading: Reading, *, sequence: tuple[str, int] | None = None) -> None:
        """Store a reading durably (it is then published); raises OutboxFull when full."""
        assert self.outbox is not None, "start() the agent first"
        was_nearly_full = self.outbox.status().nearly_full
        try:
            await self._in_db(partial(self.outbox.add, reading, sequence=sequence))
        except OutboxFull as err:
            self.readings_refused += 1
            # the collector retries every second: one ERROR a minute, the rest at DEBUG
            now = time.monotonic()
            loud = now - self._last_refusal_log >= 60.0
            if loud:
                self._last_refusal_log = now
            log.log(logging.ERROR if loud else logging.DEBUG, "hub %s: %s (refused so far: %d)",
                    self.hub_id, err, self.readings_refused)
            self._request_status()
            raise
        self.readings_stored += 1
        self._last_seen[reading.device] = self.clock()
        if self.on_stored is not None:
            self.on_stored(reading)
        if self.outbox.status().nearly_full != was_nearly_full:
            self._request_status()

    async def _on_garbage(self, address: str, characteristic: int, raw: bytes,
                          reason: str) -> None:
        self.garbage += 1  # the collector has logged it with the bytes

    async def _in_db(self, call: Callable[[], Any]) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._db, call)

    # -- devices and config ---------------------------------------------------------------

    def _effective_devices(self) -> list[PairedDevice]:
        server = self.server_config.devices if self.server_config else []
        return merge_devices(server, [*self._extra_devices, *self.local_devices])

    def _reload_paired(self) -> bool:
        path = self.state_dir / PAIRED_FILE
        try:
            mtime: float | None = path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._paired_mtime:
            return False
        self._paired_mtime = mtime
        try:
            self.local_devices = load_paired(self.state_dir)
        except ValueError as err:
            log.error("hub %s: %s", self.hub_id, err)
            return False
        return True

    def _on_config_threadsafe(self, config: HubConfig) -> None:
        """Called on the publisher's thread: hand over to the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_config, config)

    def _apply_config(self, config: HubConfig) -> None:
        self.server_config = config
        if self.outbox is not None and self._db is not None:
            self._db.submit(self.outbox.set_state, SERVER_CONFIG_KEY, config.model_dump_json())
        self._devices_changed()

    def _devices_changed(self) -> None:
        devices = self._effective_devices()
        if devices == self.devices:
            return
        added = {d.address for d in devices} - {d.address for d in self.devices}
        removed = {d.address for d in self.devices} - {d.address for d in devices}
        log.info("hub %s: devices changed (+%s -%s)", self.hub_id, sorted(added),
                 sorted(removed))
        self.devices = devices
        if self.collector is not None:
            self.collector.update_devices(devices)
        self._request_status()

    # -- status ---------------------------------------------------------------------------

    def status(self) -> HubStatus:
        """The retained online status (also called from the publisher's thread)."""
        known: dict[str, DeviceState] = {
            d.address.upper(): DeviceState(address=d.address.upper(), kind=d.kind)
            for d in self.devices}
        if self.collector is not None:
            for state in self._collector_states():
                known[state.address.upper()] = state
        for address, seen in list(self._last_seen.items()):
            device = known.get(address)
            if device is not None and (device.last_seen is None or device.last_seen < seen):
                known[address] = device.model_copy(update={"last_seen": seen})
        outbox = self.outbox.status() if self.outbox is not None else None
        return HubStatus(
            state="online", ts=self.clock(), agent=self.agent_version,
            devices=list(known.values()),
            outbox_depth=outbox.depth if outbox else None,
            outbox_nearly_full=bool(outbox and outbox.nearly_full))

    def _collector_states(self) -> list[DeviceState]:
        """The collector's device states; status() also runs on the publisher's thread,
        where the loop may be changing the collector's device table at that moment."""
        assert self.collector is not None
        for _ in range(5):
            try:
                return self.collector.status()
            except RuntimeError:  # dictionary changed size during iteration
                continue
        return []

    def _signature(self) -> object:
        """What makes a status worth publishing at once (not last_seen nor depth)."""
        status = self.status()
        return (status.outbox_nearly_full, self.readings_refused > 0,
                tuple((d.address, d.kind, d.battery, d.connected) for d in status.devices))

    def _request_status(self) -> None:
        if self.publisher is not None:
            self.publisher.request_status()

    async def _status_loop(self) -> None:
        """Publish the status every ``status_interval_s`` and on change (checked each second)."""
        interval = self.settings.status_interval_s
        elapsed = 0.0
        while True:
            await asyncio.sleep(1.0)
            elapsed += 1.0
            if self._reload_paired():
                self._devices_changed()
            signature = self._signature()
            if signature != self._status_signature or elapsed >= interval:
                self._status_signature = signature
                elapsed = 0.0
                self._request_status()
