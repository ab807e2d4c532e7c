"""Health Thermometer Service 0x1809: 0x2A1C Temperature Measurement, 0x2A1D Temperature Type.

0x2A1C (SIG XML, ble-gatt.md 1.3): Flags u8 . Temperature FLOAT . [Time Stamp 7
if b1] . [Temperature Type u8 if b2]; b0 0 = degC, 1 = degF; b3-7 RFU.
"""

from __future__ import annotations

import logging
import struct
from typing import Final

from homeward.kinds import Kind

from .errors import GattParseError
from .fields import Bytes, check_plausible, date_time, note_trailing, note_unused, require
from .ieee11073 import FLOAT_SPECIAL, float_number
from .results import Measurement, TemperatureType, fast_measurement
from .units import fahrenheit_to_celsius

_LOGGER = logging.getLogger(__name__)

_HEADER: Final = struct.Struct("<BI")
_MIN_LENGTH: Final = 5
_LENGTH: Final = tuple(_MIN_LENGTH + 7 * (f >> 1 & 1) + (f >> 2 & 1) for f in range(8))

#: Temperature Type values 1-9 (SIG XML 0x2A1D); 0 and 10-255 are reserved.
TEMPERATURE_SITES: Final[dict[int, str]] = {
    1: "armpit",
    2: "body",
    3: "ear",
    4: "finger",
    5: "gastrointestinal_tract",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
}


def decode_temperature_measurement(data: Bytes) -> Measurement:
    """0x2A1C -> a temperature :class:`Measurement` in degC."""
    what = "temperature measurement"
    n = require(data, _MIN_LENGTH, what)
    flags, raw = _HEADER.unpack_from(data)
    need = _LENGTH[flags & 0x07]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    special = FLOAT_SPECIAL.get(raw)
    if special is not None:
        raise GattParseError(f"{what}: temperature is {special.value} (IEEE 11073 special value)")
    value = float_number(raw)
    celsius = fahrenheit_to_celsius(value) if flags & 0x01 else value
    out_flags: tuple[str, ...] = ()
    taken_at = None
    offset = _MIN_LENGTH
    if flags & 0x02:
        taken_at, time_flag = date_time(data, offset)
        offset += 7
        if time_flag is not None:
            out_flags = (time_flag,)
    site = None
    if flags & 0x04:
        code = data[offset]
        site = TEMPERATURE_SITES.get(code)
        if site is None:
            _LOGGER.debug("%s: reserved temperature type %d in %s", what, code, data.hex())
    values = {"body_temperature": celsius}
    check_plausible(Kind.TEMPERATURE, values, what)
    if flags & 0xF8 or n > need:
        note_unused(data, need, flags & 0xF8, what)
    return fast_measurement({
        "kind": Kind.TEMPERATURE,
        "values": values,
        "taken_at": taken_at,
        "flags": out_flags,
        "unavailable": {},
        "temperature_site": site,
        "extras": {},
    })


def decode_temperature_type(data: Bytes) -> TemperatureType:
    """0x2A1D: one byte; a reserved code gives ``site=None`` (nothing to reject)."""
    what = "temperature type"
    require(data, 1, what)
    note_trailing(data, 1, what)
    return TemperatureType(code=data[0], site=TEMPERATURE_SITES.get(data[0]))
