"""Date Time 0x2A08 and Current Time 0x2A2B (Current Time Service 0x1805), plus the encoder
the edge uses to set a device clock.

Date Time (SIG XML): year u16 (1582-9999, 0 unknown) . month u8 (0 unknown) .
day u8 (0 unknown) . hours . minutes . seconds -- local wall clock, no zone.
Current Time: Date Time . Day of Week u8 (1 Mon .. 7 Sun, 0 unknown) .
Fractions256 u8 . Adjust Reason u8 (b0 manual, b1 external reference, b2 time
zone change, b3 DST change).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from .errors import GattParseError
from .fields import (
    DATE_TIME,
    DATE_TIME_SIZE,
    MAX_YEAR,
    MIN_YEAR,
    Bytes,
    bit_names,
    date_time,
    note_rfu,
    note_trailing,
    require,
)
from .results import CurrentTime, DateTimeValue

_LOGGER = logging.getLogger(__name__)

CURRENT_TIME_SIZE: Final = 10
ADJUST_MANUAL: Final = 0x01
ADJUST_EXTERNAL_REFERENCE: Final = 0x02
ADJUST_TIME_ZONE: Final = 0x04
ADJUST_DST: Final = 0x08
_ADJUST_NAMES: Final = (
    "manual_time_update",
    "external_reference_time_update",
    "time_zone_change",
    "dst_change",
)


def decode_date_time(data: Bytes) -> DateTimeValue:
    """0x2A08 -> :class:`DateTimeValue` (None plus a flag for an unknown/impossible time)."""
    what = "date time"
    require(data, DATE_TIME_SIZE, what)
    value, flag = date_time(data, 0)
    note_trailing(data, DATE_TIME_SIZE, what)
    return DateTimeValue(value=value, flags=() if flag is None else (flag,))


def decode_current_time(data: Bytes) -> CurrentTime:
    """0x2A2B -> :class:`CurrentTime`; Fractions256 become microseconds of ``value``."""
    what = "current time"
    require(data, CURRENT_TIME_SIZE, what)
    value, flag = date_time(data, 0)
    day_of_week, fractions, reason = data[7], data[8], data[9]
    if day_of_week > 7:
        raise GattParseError(f"{what}: day of week {day_of_week} is not 0-7")
    if value is not None:
        value = value.replace(microsecond=fractions * 1_000_000 // 256)
        if day_of_week and day_of_week != value.isoweekday():
            _LOGGER.debug("%s: day of week %d disagrees with %s", what, day_of_week, value)
    note_rfu(reason, 0xF0, what + " adjust reason", data)
    note_trailing(data, CURRENT_TIME_SIZE, what)
    return CurrentTime(
        value=value,
        day_of_week=day_of_week,
        fractions256=fractions,
        adjust_reason=reason,
        adjust_reasons=bit_names(reason, _ADJUST_NAMES),
        flags=() if flag is None else (flag,),
    )


def encode_date_time(local: datetime) -> bytes:
    """A naive local wall-clock time -> 7-byte Date Time (seconds truncated)."""
    if local.tzinfo is not None:
        raise ValueError("Date Time carries no zone: pass the device's local wall time, naive")
    if not MIN_YEAR <= local.year <= MAX_YEAR:
        raise ValueError(f"year {local.year} outside Date Time range {MIN_YEAR}-{MAX_YEAR}")
    return DATE_TIME.pack(
        local.year, local.month, local.day, local.hour, local.minute, local.second
    )


def encode_current_time(local: datetime, adjust_reason: int = ADJUST_MANUAL) -> bytes:
    """The 10-byte Current Time value to write to 0x2A2B to set a device clock.

    ``local`` is the home's naive wall-clock time (the agent converts from UTC
    with the home's zone, e.g. Europe/London).  Fractions256 come from the
    microseconds, rounded down.
    """
    if not 0 <= adjust_reason <= 0x0F:
        raise ValueError(f"adjust reason 0x{adjust_reason:X} uses reserved bits")
    return encode_date_time(local) + bytes(
        (local.isoweekday(), local.microsecond * 256 // 1_000_000, adjust_reason)
    )
