"""Device Information Service 0x180A and Battery Level 0x2A19.

DIS strings are UTF-8 (SIG XML); trailing NULs, which some firmware pads with,
are stripped.  System ID: Manufacturer Identifier u40 . OUI u24.  PnP ID: Vendor
ID Source u8 (1 Bluetooth SIG, 2 USB-IF) . Vendor ID u16 . Product ID u16 .
Product Version u16.  Battery Level: u8 percent 0-100, 101-255 reserved.
"""

from __future__ import annotations

import struct
from typing import Final

from .const import (
    FIRMWARE_REVISION_STRING,
    HARDWARE_REVISION_STRING,
    MANUFACTURER_NAME_STRING,
    MODEL_NUMBER_STRING,
    SERIAL_NUMBER_STRING,
    SOFTWARE_REVISION_STRING,
)
from .errors import GattParseError
from .fields import Bytes, note_trailing, require
from .results import BatteryLevel, DeviceInfoString, PnpId, SystemId

STRING_NAMES: Final[dict[int, str]] = {
    MANUFACTURER_NAME_STRING: "manufacturer_name",
    MODEL_NUMBER_STRING: "model_number",
    SERIAL_NUMBER_STRING: "serial_number",
    HARDWARE_REVISION_STRING: "hardware_revision",
    FIRMWARE_REVISION_STRING: "firmware_revision",
    SOFTWARE_REVISION_STRING: "software_revision",
}
#: ATT attribute values are at most 512 bytes (Core spec Vol 3 Part F 3.2.9).
MAX_ATTRIBUTE_LENGTH: Final = 512
MAX_BATTERY_PERCENT: Final = 100
_PNP: Final = struct.Struct("<BHHH")
_VENDOR_ID_SOURCES: Final = {1: "bluetooth_sig", 2: "usb_if"}


def decode_string(characteristic: int, data: Bytes) -> DeviceInfoString:
    """A DIS UTF-8 string characteristic -> :class:`DeviceInfoString`."""
    name = STRING_NAMES[characteristic]
    if len(data) > MAX_ATTRIBUTE_LENGTH:
        raise GattParseError(f"{name}: {len(data)} bytes, an attribute holds at most 512")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as err:
        raise GattParseError(f"{name}: not UTF-8 ({err.reason} at byte {err.start})") from None
    return DeviceInfoString(characteristic=characteristic, name=name, value=text.rstrip("\x00"))


def decode_system_id(data: Bytes) -> SystemId:
    what = "system id"
    require(data, 8, what)
    note_trailing(data, 8, what)
    return SystemId(
        manufacturer_identifier=int.from_bytes(data[0:5], "little"),
        organizationally_unique_identifier=int.from_bytes(data[5:8], "little"),
    )


def decode_pnp_id(data: Bytes) -> PnpId:
    what = "PnP ID"
    require(data, 7, what)
    source, vendor, product, version = _PNP.unpack_from(data)
    source_name = _VENDOR_ID_SOURCES.get(source)
    if source_name is None:
        raise GattParseError(f"{what}: reserved vendor ID source {source}")
    note_trailing(data, 7, what)
    return PnpId(
        vendor_id_source=source_name, vendor_id=vendor, product_id=product,
        product_version=version,
    )


def decode_battery_level(data: Bytes) -> BatteryLevel:
    what = "battery level"
    require(data, 1, what)
    percent = data[0]
    if percent > MAX_BATTERY_PERCENT:
        raise GattParseError(f"{what}: {percent} % is reserved (101-255)")
    note_trailing(data, 1, what)
    return BatteryLevel(percent=percent)
