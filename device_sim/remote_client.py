"""The sim backend's thin proxies for a virtual radio served by another process.

``SimBleakScanner`` / ``SimBleakClient`` hand over to ``RemoteBleakScanner`` /
``RemoteBleakClient`` when ``sim_radio`` is a URL (``tcp://HOST:PORT/RADIO`` or
``unix:///PATH#RADIO``, see ``device_sim.remote_protocol``).  All GATT
behaviour stays on the server, which runs the in-process backend; these
classes only forward calls and raise the same exceptions the in-process
backend raises:

- device out of range -> ``BleakDeviceNotFoundError``; refused -> ``BleakError``;
- ATT error response -> ``BleakGATTProtocolError(code)``;
- dropped link, or the socket lost -> the disconnected callback, and
  ``BleakError("Not connected")`` for calls after it (the edge reconnects);
- server unreachable -> ``BleakError`` naming the address; no reply within the
  URL's timeout (default 10 s) -> the connection is treated as lost.

Each scanner and each client opens its own connection.  A scanner whose
connection drops keeps trying to reopen it (every 0.2 s, backing off to 2 s)
until stopped, so an edge whose device server restarts hears the devices again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from device_sim.backend import DEFAULT_MTU, SimBleakClient, SimBleakScanner, SimDeviceDetails
from device_sim.radio import UnknownRadio
from device_sim.remote_protocol import (
    KEEPALIVE_S,
    MAX_LINE,
    PROTOCOL_VERSION,
    ProtocolError,
    RadioAddress,
    decode,
    encode,
    parse_radio_url,
)

_LOGGER = logging.getLogger(__name__)

#: Scanner reconnection: first wait, longest wait (a local server restarts in ~1 s).
RESCAN_INITIAL_S = 0.2
RESCAN_MAX_S = 2.0

EventCallback = Callable[[dict[str, Any]], None]
LostCallback = Callable[[str], None]


def _not_connected() -> BleakError:
    return BleakError("Not connected")


def _exception(reply: dict[str, Any], address: str) -> Exception:
    """The exception the in-process backend would have raised (remote_server._error)."""
    name, message = reply.get("error"), str(reply.get("message", ""))
    if name == "device_not_found":
        return BleakDeviceNotFoundError(address, message)
    if name == "att":
        return BleakGATTProtocolError(int(reply.get("code") or 0x0E))
    if name == "not_connected":
        return _not_connected()
    if name == "timeout":
        return TimeoutError(message)
    if name == "unknown_radio":
        return UnknownRadio(message)
    return BleakError(message)


class Channel:
    """One socket to a radio server: requests with replies, pushed events, loss detection."""

    def __init__(self, address: RadioAddress, on_event: EventCallback, on_lost: LostCallback,
                 *, keepalive_s: float | None = KEEPALIVE_S) -> None:
        self.address = address
        self._on_event = on_event
        self._on_lost = on_lost
        self._keepalive_s = keepalive_s
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._last_heard = time.monotonic()
        self._closing = False
        self.closed = asyncio.Event()
        self.hello: dict[str, Any] = {}

    async def open(self) -> dict[str, Any]:
        """Connect and say hello; BleakError (server unreachable) or UnknownRadio."""
        try:
            if self.address.scheme == "unix":
                reader, writer = await asyncio.open_unix_connection(self.address.path,
                                                                    limit=MAX_LINE)
            else:
                reader, writer = await asyncio.open_connection(self.address.host,
                                                               self.address.port, limit=MAX_LINE)
        except OSError as err:
            self.closed.set()
            raise BleakError(f"cannot reach the virtual radio at {self.address}: "
                             f"{err.strerror or err} (is `homeward sim devices` running?)"
                             ) from err
        self._writer = writer
        self._last_heard = time.monotonic()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._read_loop(reader)))
        if self._keepalive_s:
            self._tasks.append(loop.create_task(self._keepalive(self._keepalive_s)))
        try:
            self.hello = await self.request("hello", radio=self.address.radio,
                                            version=PROTOCOL_VERSION)
        except BaseException:
            await self.close()
            raise
        return self.hello

    async def request(self, op: str, /, **args: Any) -> dict[str, Any]:
        """Send one request and wait for its reply (the URL's timeout at most)."""
        if self.closed.is_set() or self._writer is None:
            raise _not_connected()
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(encode({"id": request_id, "op": op, **args}))
            await self._writer.drain()
            async with asyncio.timeout(self.address.timeout_s):
                reply = await future
        except TimeoutError:
            self._lost(f"no reply to {op!r} within {self.address.timeout_s:g} s")
            raise BleakError(f"Not connected: the virtual radio at {self.address} did not "
                             f"answer {op!r} within {self.address.timeout_s:g} s") from None
        except ConnectionError as err:
            self._lost(f"connection lost: {err}")
            raise _not_connected() from err
        finally:
            self._pending.pop(request_id, None)
        if reply.get("ok"):
            return reply
        raise _exception(reply, str(args.get("address") or ""))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        reason = "the virtual radio closed the connection"
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                self._last_heard = time.monotonic()
                message = decode(line)
                if "event" in message:
                    try:
                        self._on_event(message)
                    except Exception:  # a callback's bug must not end the connection
                        _LOGGER.exception("event handler failed on %s", message)
                    continue
                future = self._pending.get(message.get("id", -1))
                if future is not None and not future.done():
                    future.set_result(message)
        except (ConnectionError, ProtocolError, ValueError) as err:
            reason = f"connection lost: {err}"
        finally:
            self._lost(reason)

    async def _keepalive(self, every: float) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(every)
            if time.monotonic() - self._last_heard >= every:
                with contextlib.suppress(BleakError):
                    await self.request("ping")

    def _lost(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_not_connected())
        if self._writer is not None:
            self._writer.transport.abort()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if not self._closing:
            _LOGGER.info("virtual radio %s: %s", self.address, reason)
            self._on_lost(reason)

    async def close(self) -> None:
        """Hang up (no on_lost call)."""
        self._closing = True
        self._lost("closed")
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        await asyncio.gather(*tasks, return_exceptions=True)


def _radio_of(sim_radio: str | None, device: BLEDevice | str) -> str:
    if sim_radio is None and isinstance(device, BLEDevice) and isinstance(
            device.details, SimDeviceDetails):
        sim_radio = device.details.radio_id
    if sim_radio is None:
        raise ValueError("a remote virtual radio needs sim_radio='tcp://...' or 'unix://...'")
    return sim_radio


class RemoteBleakScanner(SimBleakScanner):
    """Hears the advertisements of a radio in another process."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        sim_radio: str,
        **kwargs: Any,
    ) -> None:
        BaseBleakScanner.__init__(self, detection_callback, service_uuids)
        self._url = sim_radio
        self._address = parse_radio_url(sim_radio)
        self._channel: Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False

    async def start(self) -> None:
        self.seen_devices = {}
        self._running = True
        await self._open()  # the first time, an unreachable server is an error
        self._task = asyncio.get_running_loop().create_task(self._stay_open())

    async def _open(self) -> None:
        channel = Channel(self._address, self._on_event, lambda reason: None)
        await channel.open()
        try:
            await channel.request("scan", service_uuids=self._service_uuids)
        except BaseException:
            await channel.close()
            raise
        self._channel = channel

    async def _stay_open(self) -> None:
        while self._running:
            assert self._channel is not None
            await self._channel.closed.wait()
            wait = RESCAN_INITIAL_S
            while self._running:
                await asyncio.sleep(wait)
                try:
                    await self._open()
                    _LOGGER.info("virtual radio %s: scanning again", self._address)
                    break
                except (BleakError, UnknownRadio) as err:
                    _LOGGER.debug("virtual radio %s: %s", self._address, err)
                    wait = min(wait * 2, RESCAN_MAX_S)

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def _on_event(self, message: dict[str, Any]) -> None:
        if message.get("event") != "advertisement":
            return
        adv = AdvertisementData(
            local_name=message.get("name"), manufacturer_data={}, service_data={},
            service_uuids=list(message.get("service_uuids") or []),
            tx_power=message.get("tx_power"), rssi=int(message.get("rssi", -127)),
            platform_data=(),
        )
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = str(message["address"])
        device = self.create_or_update_device(
            address, address, adv.local_name, SimDeviceDetails(self._url, address), adv)
        self.call_detection_callbacks(device, adv)


def services_from_wire(tree: list[dict[str, Any]]) -> BleakGATTServiceCollection:
    """Rebuild the server's GATT tree with bleak's own types (same handles)."""
    collection = BleakGATTServiceCollection()
    for s in tree:
        service = BleakGATTService(None, int(s["handle"]), str(s["uuid"]))
        collection.add_service(service)
        for c in s["characteristics"]:
            properties: list[CharacteristicPropertyName] = list(c["properties"])
            characteristic = BleakGATTCharacteristic(
                None, int(c["handle"]), str(c["uuid"]), properties,
                lambda: DEFAULT_MTU - 3, service)
            collection.add_characteristic(characteristic)
            for d in c["descriptors"]:
                collection.add_descriptor(BleakGATTDescriptor(
                    None, int(d["handle"]), str(d["uuid"]), characteristic))
    return collection


class RemoteBleakClient(SimBleakClient):
    """A connection to one device of a radio in another process."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        sim_radio: str | None = None,
        **kwargs: Any,
    ) -> None:
        BaseBleakClient.__init__(self, address_or_ble_device,
                                 disconnected_callback=disconnected_callback, timeout=timeout)
        self._address = parse_radio_url(_radio_of(sim_radio, address_or_ble_device))
        self._channel: Channel | None = None
        self._connected = False
        self._name: str | None = None
        self._mtu = DEFAULT_MTU
        self._callbacks: dict[int, NotifyCallback] = {}
        self._closing: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        channel = Channel(self._address, self._on_event, self._on_lost)
        try:
            async with asyncio.timeout(self._timeout):
                await channel.open()
                reply = await channel.request("connect", address=self.address)
        except BaseException:
            await channel.close()
            raise
        self._channel = channel
        self._name = reply.get("name")
        self._mtu = int(reply.get("mtu", DEFAULT_MTU))
        self.services = services_from_wire(reply["services"])
        self._callbacks = {}
        self._connected = True

    def _on_event(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "notification":
            callback = self._callbacks.get(int(message["handle"]))
            if callback is not None and self._connected:
                callback(bytearray.fromhex(message["data"]))
        elif event == "disconnected":
            self._on_lost("the device hung up")

    def _on_lost(self, reason: str) -> None:
        if not self._connected:
            return
        self._connected = False
        self._callbacks.clear()
        if self._channel is not None:
            self._closing = asyncio.get_running_loop().create_task(self._channel.close())
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        self._connected = False  # asked for: no disconnected callback
        self._callbacks.clear()
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(BleakError, TimeoutError):
                await channel.request("disconnect")
            await channel.close()
        self.services = None

    async def _request(self, op: str, **args: Any) -> dict[str, Any]:
        if not self._connected or self._channel is None:
            raise _not_connected()
        return await self._channel.request(op, **args)

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        reply = await self._request("read", handle=characteristic.handle)
        return bytearray.fromhex(reply["data"])

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        reply = await self._request("read_descriptor", handle=descriptor.handle)
        return bytearray.fromhex(reply["data"])

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        await self._request("write", handle=characteristic.handle, data=bytes(data).hex(),
                            response=response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        await self._request("write_descriptor", handle=descriptor.handle, data=bytes(data).hex())

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        if not self._connected:
            raise _not_connected()
        # registered first: the device may send (held records) before the reply arrives
        self._callbacks[characteristic.handle] = callback
        try:
            await self._request("start_notify", handle=characteristic.handle)
        except BaseException:
            self._callbacks.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await self._request("stop_notify", handle=characteristic.handle)
        self._callbacks.pop(characteristic.handle, None)


class RadioControl:
    """Not BLE: list a served radio's devices and make them measure (tests, demos)."""

    def __init__(self, url: str) -> None:
        self._channel = Channel(parse_radio_url(url), lambda message: None,
                                lambda reason: None, keepalive_s=None)

    async def __aenter__(self) -> RadioControl:
        await self._channel.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    async def devices(self) -> list[dict[str, Any]]:
        return list((await self._channel.request("devices"))["devices"])

    async def measure(self, address: str | None = None) -> int:
        return int((await self._channel.request("measure", address=address))["count"])

    async def push(self, address: str, data: bytes) -> None:
        await self._channel.request("push", address=address, data=data.hex())
