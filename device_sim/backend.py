"""A bleak backend over virtual radios: ``BleakScanner(backend=SimBleakScanner, sim_radio=...)``.

bleak picks its backend from the ``backend=`` argument of ``BleakScanner`` and
``BleakClient`` and passes every extra keyword argument through to it; this
backend reads ``sim_radio`` (default ``"default"``) to find its
``device_sim.radio.VirtualRadio``.  Everything above the backend (bleak's own
``BleakScanner``/``BleakClient``, bleak-retry-connector, the edge) is the real
code.  The GATT tree is built from the device's profile table with bleak's own
``BleakGATTServiceCollection`` / ``BleakGATTService`` /
``BleakGATTCharacteristic`` / ``BleakGATTDescriptor`` types.

Errors are bleak's: a device out of range raises ``BleakDeviceNotFoundError``,
a dropped link ``BleakError("Not connected")``, an ATT error response
``BleakGATTProtocolError(code)``.

When ``sim_radio`` is a URL (``tcp://HOST:PORT/RADIO`` or ``unix:///PATH#RADIO``)
the radio lives in another process (``homeward sim devices``): both classes
then construct their thin proxies from ``device_sim.remote_client`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
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

from device_sim import profiles
from device_sim.peripheral import AttError, ConnectRefused, Link, LinkLost, VirtualPeripheral
from device_sim.radio import DEFAULT_RADIO, VirtualRadio
from device_sim.remote_protocol import is_remote

_LOGGER = logging.getLogger(__name__)

#: The default ATT MTU (reference section 1.0): 20-byte values.
DEFAULT_MTU = 23


@dataclass(frozen=True, slots=True)
class SimDeviceDetails:
    """``BLEDevice.details`` for a virtual device (not a dict, so
    bleak-retry-connector does not look for a BlueZ D-Bus path)."""

    radio_id: str
    address: str


class SimBleakScanner(BaseBleakScanner):
    """Hears the advertisements of one virtual radio's in-range, unconnected devices."""

    def __new__(cls, *args: Any, **kwargs: Any) -> SimBleakScanner:
        if cls is SimBleakScanner and is_remote(kwargs.get("sim_radio")):
            from device_sim.remote_client import RemoteBleakScanner

            return super().__new__(RemoteBleakScanner)
        return super().__new__(cls)

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        sim_radio: str = DEFAULT_RADIO,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio_id = sim_radio
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        radio = VirtualRadio.lookup(self._radio_id)
        self.seen_devices = {}
        self._advertise_once(radio)
        self._task = asyncio.get_running_loop().create_task(self._listen(radio))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self, radio: VirtualRadio) -> None:
        while True:
            await asyncio.sleep(radio.advertising_interval_s)
            self._advertise_once(radio)

    def _advertise_once(self, radio: VirtualRadio) -> None:
        for peripheral in radio.advertisers():
            adv = AdvertisementData(
                local_name=peripheral.name,
                manufacturer_data={},
                service_data={},
                service_uuids=[peripheral.profile.advertised_service],
                tx_power=None,
                rssi=peripheral.rssi,
                platform_data=(),
            )
            if not self.is_allowed_uuid(adv.service_uuids):
                continue
            device = self.create_or_update_device(
                peripheral.address, peripheral.address, peripheral.name,
                SimDeviceDetails(radio.radio_id, peripheral.address), adv,
            )
            self.call_detection_callbacks(device, adv)


def build_services(peripheral: VirtualPeripheral) -> BleakGATTServiceCollection:
    """The device's GATT tree from its profile; handles numbered as a real server would."""
    collection = BleakGATTServiceCollection()
    handle = 1
    for service_spec in peripheral.profile.services:
        service = BleakGATTService(service_spec, handle, profiles.uuid16(service_spec.uuid16))
        collection.add_service(service)
        handle += 1
        for spec in service_spec.characteristics:
            handle += 1  # the characteristic declaration
            props: list[CharacteristicPropertyName] = list(spec.properties)  # type: ignore[arg-type]
            characteristic = BleakGATTCharacteristic(
                spec, handle, profiles.uuid16(spec.uuid16), props,
                lambda: DEFAULT_MTU - 3, service,
            )
            collection.add_characteristic(characteristic)
            handle += 1
            if spec.subscribable:
                collection.add_descriptor(BleakGATTDescriptor(
                    None, handle, profiles.uuid16(profiles.CCCD), characteristic))
                handle += 1
    return collection


def _uuid16(characteristic: BleakGATTCharacteristic) -> int:
    return int(characteristic.uuid[4:8], 16)


class SimBleakClient(BaseBleakClient):
    """A connection to one virtual device on the radio named by ``sim_radio``."""

    def __new__(cls, address_or_ble_device: BLEDevice | str, *args: Any, **kwargs: Any
                ) -> SimBleakClient:
        radio = kwargs.get("sim_radio")
        if radio is None and isinstance(address_or_ble_device, BLEDevice) and isinstance(
                address_or_ble_device.details, SimDeviceDetails):
            radio = address_or_ble_device.details.radio_id
        if cls is SimBleakClient and is_remote(radio):
            from device_sim.remote_client import RemoteBleakClient

            return super().__new__(RemoteBleakClient)
        return super().__new__(cls)

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        sim_radio: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        if sim_radio is None and isinstance(address_or_ble_device, BLEDevice) and isinstance(
            address_or_ble_device.details, SimDeviceDetails
        ):
            sim_radio = address_or_ble_device.details.radio_id
        self._radio_id = sim_radio or DEFAULT_RADIO
        self._link: Link | None = None
        self._peripheral: VirtualPeripheral | None = None

    @property
    def name(self) -> str:
        return self._peripheral.name if self._peripheral is not None else self.address

    @property
    def mtu_size(self) -> int:
        return DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._link is not None and self._link.connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        radio = VirtualRadio.lookup(self._radio_id)
        peripheral = radio.get(self.address)
        if peripheral is None or not peripheral.in_range:
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} "
                                           "was not found (out of range)")
        await asyncio.sleep(0)
        try:
            self._link = peripheral.connect(self._on_link_lost)
        except ConnectRefused as err:
            raise BleakError(f"{self.address}: connection failed: {err}") from err
        self._peripheral = peripheral
        self.services = build_services(peripheral)

    def _on_link_lost(self) -> None:
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        if self._peripheral is not None and self._link is not None:
            self._peripheral.disconnect(self._link)
        self._link = None
        self.services = None
        await asyncio.sleep(0)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Virtual devices need no bond (Just Works)."""

    async def unpair(self) -> None:
        """Nothing to forget."""

    def _connection(self) -> tuple[VirtualPeripheral, Link]:
        if self._peripheral is None or self._link is None or not self._link.connected:
            raise BleakError("Not connected")
        return self._peripheral, self._link

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        peripheral, link = self._connection()
        try:
            return bytearray(await peripheral.read(link, _uuid16(characteristic)))
        except LinkLost as err:
            raise BleakError("Not connected") from err
        except AttError as err:
            raise BleakGATTProtocolError(err.code) from err

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        _, link = self._connection()
        await asyncio.sleep(0)
        subscribed = int(descriptor.characteristic_uuid[4:8], 16) in link.subscriptions
        indicate = "indicate" in self._properties(descriptor)
        return bytearray(((2 if indicate else 1) if subscribed else 0, 0))

    def _properties(self, descriptor: BleakGATTDescriptor) -> list[str]:
        assert self.services is not None
        characteristic = self.services.get_characteristic(descriptor.characteristic_handle)
        return list(characteristic.properties) if characteristic is not None else []

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        peripheral, link = self._connection()
        try:
            await peripheral.write(link, _uuid16(characteristic), bytes(data))
        except LinkLost as err:
            raise BleakError("Not connected") from err
        except AttError as err:
            raise BleakGATTProtocolError(err.code) from err

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        self._connection()
        raise BleakGATTProtocolError(0x03)  # write not permitted

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peripheral, link = self._connection()
        if "notify" not in characteristic.properties and (
                "indicate" not in characteristic.properties):
            raise BleakError(f"{characteristic.uuid} cannot notify or indicate")
        await asyncio.sleep(0)  # the CCCD write
        peripheral.subscribe(link, _uuid16(characteristic), callback)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peripheral, link = self._connection()
        await asyncio.sleep(0)
        peripheral.unsubscribe(link, _uuid16(characteristic))
