"""From a decoded GATT measurement to a wire reading: identity, time and flags.

Pure functions.  The time rules (DESIGN.md "taken_at";
/work/shared/reference/ble-gatt.md section 1.7 [D] "coincident time stamp"):

- a device stamps readings with its own wall clock, local time without a
  zone; the hub reads it in the home's zone (``Europe/London`` by default)
  and converts to UTC.  In the autumn's repeated hour the first occurrence
  is taken (``fold=0``); a device cannot tell them apart either;
- when the collector knows the device clock's error (device minus hub), the
  device time is corrected by it;
- absent a device time, or when the device time is unusable (more than
  :data:`homeward.wire.MAX_FUTURE_SKEW` ahead of the hub even after
  correction, or the device flags its clock as not set), the hub's receive
  time is used and the reading is flagged ``device_time_invalid`` when a time
  was there but refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from homeward.kinds import Kind
from homeward.wire import MAX_FUTURE_SKEW, Reading, new_reading_id

#: Flag added when the device sent a time the hub could not use.
DEVICE_TIME_INVALID = "device_time_invalid"
#: Flags a GATT decoder may set that mean "this device's clock is not to be trusted".
UNTRUSTED_CLOCK_FLAGS = frozenset({DEVICE_TIME_INVALID, "device_clock_not_set"})
#: ``raw`` on the wire holds at most 64 bytes (homeward.wire.Reading).
MAX_RAW_BYTES = 64


class MeasurementLike(Protocol):
    """What the agent reads from an ``edge.gatt`` Measurement."""

    @property
    def kind(self) -> Kind: ...
    @property
    def values(self) -> Mapping[str, float]: ...
    @property
    def taken_at(self) -> datetime | None: ...
    @property
    def flags(self) -> Sequence[str]: ...


def device_time_to_utc(device_time: datetime, zone: tzinfo,
                       clock_offset: timedelta | None = None) -> datetime:
    """A device's wall-clock time (naive, local) as UTC, corrected by ``clock_offset``.

    ``clock_offset`` is the device clock minus the hub clock (positive: the
    device runs ahead).  An aware ``device_time`` is converted as it is.
    """
    if clock_offset:
        device_time = device_time - clock_offset
    if device_time.tzinfo is None:
        device_time = device_time.replace(tzinfo=zone, fold=0)
    return device_time.astimezone(UTC)


def reading_from_measurement(
    address: str,
    measurement: MeasurementLike,
    raw: bytes,
    *,
    received_at: datetime,
    zone: tzinfo,
    clock_offset: timedelta | None = None,
    reading_id: uuid.UUID | None = None,
) -> Reading:
    """The wire reading for one measurement (a new UUID unless ``reading_id`` is given).

    Raises ``pydantic.ValidationError`` (a ValueError) for values the wire
    refuses, e.g. physiologically impossible ones.
    """
    flags = list(dict.fromkeys(measurement.flags))
    taken_at = received_at.astimezone(UTC)
    if measurement.taken_at is not None:
        if UNTRUSTED_CLOCK_FLAGS.isdisjoint(flags):
            candidate = device_time_to_utc(measurement.taken_at, zone, clock_offset)
            if candidate <= taken_at + MAX_FUTURE_SKEW:
                taken_at = candidate
            else:
                flags.append(DEVICE_TIME_INVALID)
        elif DEVICE_TIME_INVALID not in flags:
            flags.append(DEVICE_TIME_INVALID)
    return Reading(
        id=reading_id or new_reading_id(),
        kind=measurement.kind,
        taken_at=taken_at,
        device=address,
        values=dict(measurement.values),
        flags=tuple(flags),
        raw=raw.hex() if 0 < len(raw) <= MAX_RAW_BYTES else None,
    )
