"""Field readers shared by the profile parsers: Date Time, bit fields, length checks."""

from __future__ import annotations

import logging
import struct
from datetime import datetime
from typing import Final, TypeAlias

from homeward.kinds import METRICS, Kind, check_values

from .errors import GattParseError

_LOGGER = logging.getLogger(__name__)

#: What the decoders accept: bleak delivers a bytearray; memoryview also works.
Bytes: TypeAlias = bytes | bytearray | memoryview

DATE_TIME: Final = struct.Struct("<HBBBBB")  # 0x2A08: year, month, day, h, m, s
DATE_TIME_SIZE: Final = 7

#: Flag for a Date Time with year, month or day 0 ("not known", SIG XML 0x2A08).
DEVICE_TIME_UNKNOWN: Final = "device_time_unknown"
#: Flag for a Date Time no calendar has (month 13, 31 February, hour 24, year < 1582).
DEVICE_TIME_INVALID: Final = "device_time_invalid"
#: Flag for PLX spot-check flags bit 4: the device says its clock is not set.
DEVICE_CLOCK_NOT_SET: Final = "device_clock_not_set"

#: Date Time year range (SIG XML 0x2A08: 1582..9999, 0 = unknown).
MIN_YEAR: Final = 1582
MAX_YEAR: Final = 9999


def date_time(data: Bytes, offset: int) -> tuple[datetime | None, str | None]:
    """The Date Time at ``offset`` (length already checked): (naive time, None) or (None, flag)."""
    year, month, day, hour, minute, second = DATE_TIME.unpack_from(data, offset)
    if year == 0 or month == 0 or day == 0:
        return None, DEVICE_TIME_UNKNOWN
    if year < MIN_YEAR:
        return None, DEVICE_TIME_INVALID
    try:
        return datetime(year, month, day, hour, minute, second), None  # noqa: DTZ001 - wall clock
    except ValueError:
        return None, DEVICE_TIME_INVALID


def require(data: Bytes, size: int, what: str) -> int:
    """``len(data)``, after checking that at least ``size`` bytes are there."""
    n = len(data)
    if n < size:
        raise GattParseError(f"{what}: {n} bytes, need at least {size}")
    return n


def note_trailing(data: Bytes, used: int, what: str) -> None:
    """Bytes after the last field are tolerated (a newer spec revision may add fields)."""
    if len(data) > used and _LOGGER.isEnabledFor(logging.DEBUG):
        _LOGGER.debug("%s: ignoring %d trailing byte(s) in %s", what, len(data) - used, data.hex())


def note_rfu(value: int, rfu_mask: int, what: str, data: Bytes) -> None:
    """Reserved bits are ignored (receiver rule for RFU) but logged: maybe a newer revision."""
    if value & rfu_mask and _LOGGER.isEnabledFor(logging.DEBUG):
        _LOGGER.debug("%s: ignoring RFU bits 0x%X in %s", what, value & rfu_mask, data.hex())


def bit_names(value: int, names: tuple[str | None, ...]) -> tuple[str, ...]:
    """Names of the set bits of ``value``; ``names[i]`` names bit i (None: not a flag)."""
    return tuple(name for bit, name in enumerate(names) if name is not None and value >> bit & 1)


def bit_table(names: tuple[str | None, ...]) -> tuple[tuple[str, ...], ...]:
    """:func:`bit_names` for every value of ``len(names)`` bits, precomputed for the hot path."""
    return tuple(bit_names(value, names) for value in range(1 << len(names)))


#: (minimum, maximum) per kind and metric, taken from homeward.kinds.METRICS (not duplicated).
_BOUNDS: Final = {
    kind: {metric.name: (metric.minimum, metric.maximum) for metric in metrics}
    for kind, metrics in METRICS.items()
}


def check_plausible(kind: Kind, values: dict[str, float], what: str) -> None:
    """Reject (never clamp) values outside the homeward.kinds plausibility limits.

    homeward.kinds.check_values decides.  The loop in front of it only lets a
    reading through without calling it when every value is inside its metric's
    bounds (and, for blood pressure, diastolic < systolic) -- which is exactly
    when check_values accepts a reading that carries its required metrics, as
    the parsers guarantee; a property test checks the two agree.
    """
    bounds = _BOUNDS[kind]
    for name, value in values.items():
        low, high = bounds[name]  # parsers only emit metric names of their kind
        if not low <= value <= high:
            break
    else:
        if kind is not Kind.BLOOD_PRESSURE or values["diastolic"] < values["systolic"]:
            return
    reason = check_values(kind, values)
    if reason is not None:
        raise GattParseError(f"{what}: {reason}")



def note_unused(data: Bytes, used: int, rfu_flags: int, what: str) -> None:
    """Log RFU flag bits and trailing bytes of a measurement PDU (both tolerated, see M7).

    Call only when there is something to log (``rfu_flags or len(data) > used``):
    the check stays inline in the hot path.
    """
    if _LOGGER.isEnabledFor(logging.DEBUG):
        _LOGGER.debug(
            "%s: ignoring RFU flag bits 0x%02X and %d trailing byte(s) in %s",
            what, rfu_flags, max(0, len(data) - used), data.hex(),
        )
