"""Serve the virtual radios of this process to sim backends in other processes.

Each client connection gets a ``_Session``, which drives the very same
``SimBleakScanner`` / ``SimBleakClient`` objects (and so the same
``VirtualPeripheral`` GATT logic) as an in-process edge would; this module
only turns lines into calls on them and their callbacks into lines.  Wire
format: ``device_sim.remote_protocol``.

Requests of one connection are handled one after another; replies and pushed
events go through one bounded queue, so they leave in the order they
happened.  A client whose queue overflows (it stopped reading) is dropped.
A closed connection disconnects its device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from device_sim.backend import SimBleakClient, SimBleakScanner
from device_sim.radio import UnknownRadio, VirtualRadio
from device_sim.remote_protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    SEND_QUEUE_LIMIT,
    ErrorName,
    ProtocolError,
    RadioAddress,
    decode,
    encode,
)

_LOGGER = logging.getLogger(__name__)

#: How long the server lets a device connection take (the in-process
#: connect is immediate; this only bounds a stuck one).
CONNECT_TIMEOUT_S = 10.0


class _BadRequest(Exception):
    pass


def services_to_wire(client: SimBleakClient) -> list[dict[str, Any]]:
    """The connected device's GATT tree, as bleak built it, for the client to rebuild."""
    assert client.services is not None
    return [
        {"uuid": service.uuid, "handle": service.handle, "characteristics": [
            {"uuid": c.uuid, "handle": c.handle, "properties": list(c.properties),
             "descriptors": [{"uuid": d.uuid, "handle": d.handle} for d in c.descriptors]}
            for c in service.characteristics]}
        for service in client.services]


def _error(err: BaseException) -> tuple[ErrorName, str, int | None]:
    """The wire name of an exception the in-process backend raised."""
    if isinstance(err, BleakDeviceNotFoundError):
        return "device_not_found", str(err.args[0] if err.args else err), None
    if isinstance(err, BleakGATTProtocolError):
        return "att", str(err), int(err.code)
    if isinstance(err, BleakError):
        message = str(err)
        return ("not_connected" if message == "Not connected" else "bleak"), message, None
    if isinstance(err, TimeoutError):
        return "timeout", str(err) or "timed out", None
    if isinstance(err, UnknownRadio):
        return "unknown_radio", str(err.args[0] if err.args else err), None
    return "bad_request", f"{type(err).__name__}: {err}", None


class _Session:
    """One client connection: at most one scan and one device connection."""

    def __init__(self, server: RadioServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.radio_id: str | None = None
        self.scanner: SimBleakScanner | None = None
        self.client: SimBleakClient | None = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self.closing = False
        self.peer = writer.get_extra_info("peername") or "unix socket"

    # ------------------------------------------------------------ sending

    def push(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(encode(message))
        except asyncio.QueueFull:
            _LOGGER.error("client %s reads too slowly (%d messages waiting); dropping it",
                          self.peer, SEND_QUEUE_LIMIT)
            self.abort()

    def abort(self) -> None:
        self.closing = True
        self.writer.transport.abort()

    async def _send_loop(self) -> None:
        while True:
            line = await self.queue.get()
            if line is None:
                return
            self.writer.write(line)
            while not self.queue.empty():  # batch what is already waiting
                more = self.queue.get_nowait()
                if more is None:
                    await self.writer.drain()
                    return
                self.writer.write(more)
            await self.writer.drain()

    # ------------------------------------------------------------ receiving

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        try:
            while not self.closing:
                try:
                    line = await self.reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    _LOGGER.warning("client %s sent a line over %d bytes; closing", self.peer,
                                    MAX_LINE)
                    break
                if not line:
                    break
                try:
                    message = decode(line)
                except ProtocolError as err:
                    _LOGGER.warning("client %s: %s; closing", self.peer, err)
                    break
                await self._handle(message)
        except ConnectionError:
            pass
        finally:
            self.closing = True
            await self._release()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    async def _handle(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        op = message.get("op")
        try:
            if not isinstance(op, str) or not hasattr(self, f"_op_{op}"):
                raise _BadRequest(f"unknown op {op!r}")
            if op != "hello" and self.radio_id is None:
                raise _BadRequest("say hello first")
            result = await getattr(self, f"_op_{op}")(message)
        except (BleakError, TimeoutError, UnknownRadio, _BadRequest, KeyError, TypeError,
                ValueError) as err:
            name, text, code = _error(err)
            self.push({"id": request_id, "ok": False, "error": name, "message": text,
                       "code": code})
            return
        except Exception as err:  # a simulator bug: answer it, keep serving
            _LOGGER.exception("client %s: %r failed", self.peer, op)
            self.push({"id": request_id, "ok": False, "error": "bleak",
                       "message": f"simulator error: {err!r}", "code": None})
            return
        self.push({"id": request_id, "ok": True, **(result or {})})

    async def _release(self) -> None:
        if self.scanner is not None:
            await self.scanner.stop()
            self.scanner = None
        if self.client is not None:
            with contextlib.suppress(BleakError):
                await self.client.disconnect()
            self.client = None

    # ------------------------------------------------------------ operations

    def _radio(self) -> VirtualRadio:
        assert self.radio_id is not None
        return VirtualRadio.lookup(self.radio_id)

    async def _op_hello(self, message: dict[str, Any]) -> dict[str, Any]:
        wanted = message.get("radio") or self.server.default_radio
        if wanted not in self.server.radio_ids:
            raise UnknownRadio(f"this server serves {sorted(self.server.radio_ids)}, "
                               f"not {wanted!r}")
        radio = VirtualRadio.lookup(wanted)
        self.radio_id = wanted
        return {"radio": wanted, "version": PROTOCOL_VERSION,
                "advertising_interval_s": radio.advertising_interval_s}

    async def _op_ping(self, message: dict[str, Any]) -> None:
        return None

    async def _op_scan(self, message: dict[str, Any]) -> None:
        if self.scanner is not None:
            raise _BadRequest("already scanning")

        def heard(device: BLEDevice, adv: AdvertisementData) -> None:
            self.push({"event": "advertisement", "address": device.address,
                       "name": adv.local_name, "rssi": adv.rssi,
                       "service_uuids": adv.service_uuids, "tx_power": adv.tx_power})

        self.scanner = SimBleakScanner(heard, message.get("service_uuids"),
                                       sim_radio=self.radio_id or "")
        await self.scanner.start()

    async def _op_stop_scan(self, message: dict[str, Any]) -> None:
        if self.scanner is not None:
            await self.scanner.stop()
            self.scanner = None

    async def _op_connect(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.client is not None and self.client.is_connected:
            raise _BadRequest("this connection already has a device; open another")
        address = str(message["address"])

        def lost() -> None:
            self.push({"event": "disconnected"})

        client = SimBleakClient(address, disconnected_callback=lost, timeout=CONNECT_TIMEOUT_S,
                                sim_radio=self.radio_id)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await client.connect(pair=False)
        self.client = client
        _LOGGER.info("%s connected to %s", self.peer, address)
        return {"name": client.name, "mtu": client.mtu_size,
                "services": services_to_wire(client)}

    async def _op_disconnect(self, message: dict[str, Any]) -> None:
        if self.client is not None:
            _LOGGER.info("%s disconnected from %s", self.peer, self.client.address)
            await self.client.disconnect()
            self.client = None

    def _connected(self) -> SimBleakClient:
        if self.client is None or self.client.services is None:
            raise BleakError("Not connected")
        return self.client

    def _characteristic(self, message: dict[str, Any]) -> Any:
        client = self._connected()
        assert client.services is not None
        characteristic = client.services.get_characteristic(int(message["handle"]))
        if characteristic is None:
            raise BleakGATTProtocolError(0x01)  # invalid handle
        return characteristic

    async def _op_read(self, message: dict[str, Any]) -> dict[str, Any]:
        characteristic = self._characteristic(message)
        return {"data": (await self._connected().read_gatt_char(characteristic)).hex()}

    async def _op_read_descriptor(self, message: dict[str, Any]) -> dict[str, Any]:
        client = self._connected()
        assert client.services is not None
        descriptor = client.services.get_descriptor(int(message["handle"]))
        if descriptor is None:
            raise BleakGATTProtocolError(0x01)
        return {"data": (await client.read_gatt_descriptor(descriptor)).hex()}

    async def _op_write(self, message: dict[str, Any]) -> None:
        characteristic = self._characteristic(message)
        await self._connected().write_gatt_char(
            characteristic, bytes.fromhex(message["data"]), bool(message.get("response", True)))

    async def _op_write_descriptor(self, message: dict[str, Any]) -> None:
        client = self._connected()
        assert client.services is not None
        descriptor = client.services.get_descriptor(int(message["handle"]))
        if descriptor is None:
            raise BleakGATTProtocolError(0x01)
        await client.write_gatt_descriptor(descriptor, bytes.fromhex(message["data"]))

    async def _op_start_notify(self, message: dict[str, Any]) -> None:
        characteristic = self._characteristic(message)
        handle = characteristic.handle

        def notified(data: bytearray) -> None:
            self.push({"event": "notification", "handle": handle, "data": data.hex()})

        await self._connected().start_notify(characteristic, notified)

    async def _op_stop_notify(self, message: dict[str, Any]) -> None:
        await self._connected().stop_notify(self._characteristic(message))

    # ------------------------------------------------------------ control (not BLE)

    async def _op_devices(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"devices": [{"address": p.address, "kind": p.kind.value, "name": p.name,
                             "in_range": p.in_range, "connected": p.connected}
                            for p in self._radio()]}

    def _peripheral(self, message: dict[str, Any]) -> Any:
        peripheral = self._radio().get(str(message["address"]))
        if peripheral is None:
            raise BleakDeviceNotFoundError(str(message["address"]),
                                           f"no device {message['address']} on this radio")
        return peripheral

    async def _op_measure(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("address") is None:
            return {"count": self._radio().measure_all()}
        self._peripheral(message).measure()
        return {"count": 1}

    async def _op_push(self, message: dict[str, Any]) -> None:
        self._peripheral(message).push(bytes.fromhex(message["data"]))


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a server that died; anything else there is not ours to delete."""
    if Path(path).is_socket():
        os.unlink(path)
    elif Path(path).exists():
        raise FileExistsError(f"{path} exists and is not a socket")


class RadioServer:
    """Serves ``radio_ids`` (radios of this process) on ``address`` (port 0: any free port).

    ``async with RadioServer(["hub-1"], RadioAddress("tcp", "hub-1", host="127.0.0.1"))
    as server: print(server.url)``.
    """

    def __init__(self, radio_ids: list[str], address: RadioAddress) -> None:
        if not radio_ids:
            raise ValueError("serve at least one radio")
        self.radio_ids = set(radio_ids)
        self.default_radio = radio_ids[0]
        self.address = address
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._session_objects: set[_Session] = set()

    @property
    def url(self) -> str:
        """The address to give ``sim_radio`` (with the actual port once started)."""
        if self.address.scheme == "unix":
            return str(RadioAddress("unix", self.default_radio, path=self.address.path))
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(RadioAddress("tcp", self.default_radio, host=host, port=port))

    async def start(self) -> None:
        if self.address.scheme == "unix":
            _remove_stale_socket(self.address.path)
            self._server = await asyncio.start_unix_server(self._serve, self.address.path,
                                                           limit=MAX_LINE)
        else:
            self._server = await asyncio.start_server(
                self._serve, self.address.host, self.address.port, limit=MAX_LINE)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._session_objects.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(task)
            self._session_objects.discard(session)

    async def stop(self) -> None:
        """Stop listening and close every connection (clients see disconnections)."""
        if self._server is None:
            return
        self._server.close()
        for session in list(self._session_objects):
            session.abort()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=2.0)
        await self._server.wait_closed()
        self._server = None
        if self.address.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address.path)

    async def __aenter__(self) -> RadioServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
