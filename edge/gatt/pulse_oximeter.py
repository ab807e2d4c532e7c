"""Pulse Oximeter Service 0x1822: 0x2A5E spot-check, 0x2A5F continuous, 0x2A60 features.

Layouts (SIG XML, ble-gatt.md 1.2):
- 0x2A5E: Flags u8 . SpO2 SFLOAT . PR SFLOAT . [Timestamp 7 if b0] . [Measurement
  Status u16 if b1] . [Device & Sensor Status u24 if b2] . [Pulse Amplitude Index
  SFLOAT if b3]; b4 = device clock not set; b5-7 RFU.
- 0x2A5F: Flags u8 . SpO2PR-Normal (2 SFLOAT) . [SpO2PR-Fast if b0] . [SpO2PR-Slow
  if b1] . [Measurement Status if b2] . [Device & Sensor Status if b3] . [PAI if b4].

Rejection policy (ble-gatt.md 1.2 "[D] Clinical use"): a measurement whose
status says ongoing (bit 5), demonstration (10), testing (11), unavailable
(13), questionable (14) or invalid (15) raises GattParseError -- it is not a
patient value.  Bit 9 (from measurement storage) becomes the flag
``from_storage``; the other informative bits and every Device & Sensor Status
bit become flags.  The Pulse Amplitude Index is stored as ``perfusion_index``.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from homeward.kinds import Kind

from .errors import GattParseError
from .fields import (
    DEVICE_CLOCK_NOT_SET,
    Bytes,
    bit_names,
    bit_table,
    check_plausible,
    date_time,
    note_rfu,
    note_trailing,
    note_unused,
    require,
)
from .ieee11073 import SFLOAT_SPECIAL, SFLOAT_VALUES
from .results import Measurement, PlxFeatures, fast_measurement

_HEADER: Final = struct.Struct("<BHH")
_U16: Final = struct.Struct("<H")
_U16_PAIR: Final = struct.Struct("<HH")
_STATUS_AND_DSS: Final = struct.Struct("<HB")  # u24 read as u16 + u8
_MIN_LENGTH: Final = 5

#: Measurement Status bits that make the numbers unusable as patient data.
STATUS_REJECT: Final[tuple[tuple[int, str], ...]] = (
    (1 << 13, "measurement unavailable (status bit 13)"),
    (1 << 15, "invalid measurement detected (status bit 15)"),
    (1 << 14, "questionable measurement detected (status bit 14)"),
    (1 << 5, "measurement ongoing (status bit 5)"),
    (1 << 10, "data for demonstration (status bit 10)"),
    (1 << 11, "data for testing (status bit 11)"),
)
STATUS_REJECT_MASK: Final = sum(bit for bit, _ in STATUS_REJECT)
#: Informative Measurement Status bits -> flags (bits 0-4 RFU).
_STATUS_NAMES: Final[tuple[str | None, ...]] = (
    None, None, None, None, None, None,  # 0-4 RFU, 5 ongoing (rejected)
    "early_estimate",  # 6
    "validated_data",  # 7
    "fully_qualified_data",  # 8
    "from_storage",  # 9
    None, None,
    "calibration_ongoing",  # 12
)
STATUS_RFU: Final = 0x001F
#: Flags for Measurement Status bits 6-12, indexed by ``status >> 6 & 0x7F``.
_STATUS_FLAGS: Final = bit_table(_STATUS_NAMES[6:])
#: Device & Sensor Status bits 0-15 -> flags (16-23 RFU).
_DEVICE_SENSOR_NAMES: Final = (
    "extended_display_update_ongoing",
    "equipment_malfunction",
    "signal_processing_irregularity",
    "inadequate_signal",
    "poor_signal",
    "low_perfusion",
    "erratic_signal",
    "non_pulsatile_signal",
    "questionable_pulse",
    "signal_analysis_ongoing",
    "sensor_interference",
    "sensor_unconnected_to_user",
    "unknown_sensor_connected",
    "sensor_displaced",
    "sensor_malfunctioning",
    "sensor_disconnected",
)

_SPOT_LENGTH: Final = tuple(
    _MIN_LENGTH + 7 * (f & 1) + 2 * (f >> 1 & 1) + 3 * (f >> 2 & 1) + 2 * (f >> 3 & 1)
    for f in range(16)
)
_CONT_LENGTH: Final = tuple(
    _MIN_LENGTH + 4 * (f & 1) + 4 * (f >> 1 & 1) + 2 * (f >> 2 & 1) + 3 * (f >> 3 & 1)
    + 2 * (f >> 4 & 1)
    for f in range(32)
)

_FEATURE_NAMES: Final = (
    "measurement_status",
    "device_sensor_status",
    "spot_check_storage",
    "spot_check_timestamp",
    "spo2pr_fast",
    "spo2pr_slow",
    "pulse_amplitude_index",
    "multiple_bonds",
)


def _status_flags(status: int, what: str, data: Bytes) -> tuple[str, ...]:
    if status & STATUS_REJECT_MASK:
        for bit, reason in STATUS_REJECT:
            if status & bit:
                raise GattParseError(f"{what}: {reason}")
    if status & STATUS_RFU:
        note_rfu(status, STATUS_RFU, what + " status", data)
    return _STATUS_FLAGS[status >> 6 & 0x7F]


def _values(
    spo2_raw: int, pr_raw: int, pai_raw: int | None, flags: list[str], what: str
) -> tuple[dict[str, float], dict[str, str]]:
    spo2 = SFLOAT_VALUES[spo2_raw]
    if spo2 is None:
        raise GattParseError(
            f"{what}: SpO2 is {SFLOAT_SPECIAL[spo2_raw].value} (IEEE 11073 special value)")
    values = {"spo2": spo2}
    unavailable: dict[str, str] = {}
    value = SFLOAT_VALUES[pr_raw]
    if value is not None:
        values["pulse_rate"] = value
    else:
        unavailable["pulse_rate"] = SFLOAT_SPECIAL[pr_raw].value
        flags.append("pulse_rate_unavailable")
    if pai_raw is not None:
        value = SFLOAT_VALUES[pai_raw]
        if value is not None:
            values["perfusion_index"] = value
        else:
            unavailable["perfusion_index"] = SFLOAT_SPECIAL[pai_raw].value
            flags.append("perfusion_index_unavailable")
    check_plausible(Kind.SPO2, values, what)
    return values, unavailable


def _statuses(data: Bytes, offset: int, has_status: bool, has_sensor: bool,
              out_flags: list[str], what: str) -> tuple[int, int | None, int | None]:
    """Measurement Status (16 bits) and Device & Sensor Status (24 bits), when present.

    Both PLX measurements carry them in this order; only their flag bits differ.
    Returns the offset after them and the raw values (None when absent).
    """
    status: int | None = None
    sensor: int | None = None
    if has_status:
        (status,) = _U16.unpack_from(data, offset)
        offset += 2
        out_flags.extend(_status_flags(status, what, data))
    if has_sensor:
        low, high = _STATUS_AND_DSS.unpack_from(data, offset)
        sensor = low | high << 16
        offset += 3
        if low:
            out_flags.extend(bit_names(low, _DEVICE_SENSOR_NAMES))
        if high:
            note_rfu(high, 0xFF, what + " device & sensor status", data)
    return offset, status, sensor


def decode_plx_spot_check(data: Bytes) -> Measurement:
    """0x2A5E -> an SpO2 :class:`Measurement`."""
    what = "PLX spot-check measurement"
    n = require(data, _MIN_LENGTH, what)
    flags, spo2_raw, pr_raw = _HEADER.unpack_from(data)
    need = _SPOT_LENGTH[flags & 0x0F]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    offset = _MIN_LENGTH
    out_flags: list[str] = []
    taken_at: datetime | None = None
    time_flag: str | None = None
    pai_raw: int | None = None
    if flags & 0x01:
        taken_at, time_flag = date_time(data, offset)
        offset += 7
    offset, status, sensor = _statuses(data, offset, bool(flags & 0x02), bool(flags & 0x04),
                                       out_flags, what)
    if flags & 0x08:
        (pai_raw,) = _U16.unpack_from(data, offset)
    values, unavailable = _values(spo2_raw, pr_raw, pai_raw, out_flags, what)
    if flags & 0x10:
        # "Device Clock is Not Set": a time stamp, if any, is not a wall-clock time.
        taken_at = None
        out_flags.append(DEVICE_CLOCK_NOT_SET)
    elif time_flag is not None:
        out_flags.append(time_flag)
    if flags & 0xE0 or n > need:
        note_unused(data, need, flags & 0xE0, what)
    return fast_measurement({
        "kind": Kind.SPO2,
        "values": values,
        "taken_at": taken_at,
        "flags": tuple(out_flags),
        "unavailable": unavailable,
        "measurement_status": status,
        "sensor_status": sensor,
        "extras": {},
    })


def decode_plx_continuous(data: Bytes) -> Measurement:
    """0x2A5F -> an SpO2 :class:`Measurement` (Normal values; Fast/Slow in ``extras``)."""
    what = "PLX continuous measurement"
    n = require(data, _MIN_LENGTH, what)
    flags, spo2_raw, pr_raw = _HEADER.unpack_from(data)
    need = _CONT_LENGTH[flags & 0x1F]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    offset = _MIN_LENGTH
    out_flags: list[str] = []
    extras: dict[str, float] = {}
    pai_raw: int | None = None
    if flags & 0x03:
        for bit, suffix in ((0x01, "_fast"), (0x02, "_slow")):
            if flags & bit:
                s_raw, p_raw = _U16_PAIR.unpack_from(data, offset)
                offset += 4
                value = SFLOAT_VALUES[s_raw]
                if value is not None:
                    extras["spo2" + suffix] = value
                value = SFLOAT_VALUES[p_raw]
                if value is not None:
                    extras["pulse_rate" + suffix] = value
    offset, status, sensor = _statuses(data, offset, bool(flags & 0x04), bool(flags & 0x08),
                                       out_flags, what)
    if flags & 0x10:
        (pai_raw,) = _U16.unpack_from(data, offset)
    values, unavailable = _values(spo2_raw, pr_raw, pai_raw, out_flags, what)
    if flags & 0xE0 or n > need:
        note_unused(data, need, flags & 0xE0, what)
    return fast_measurement({
        "kind": Kind.SPO2,
        "values": values,
        "flags": tuple(out_flags),
        "unavailable": unavailable,
        "measurement_status": status,
        "sensor_status": sensor,
        "extras": extras,
    })


def decode_plx_features(data: Bytes) -> PlxFeatures:
    """0x2A60: Features u16 . [Measurement Status Support u16 if b0] . [DSS Support u24 if b1]."""
    what = "PLX features"
    n = require(data, 2, what)
    (raw,) = _U16.unpack_from(data)
    need = 2 + 2 * (raw & 1) + 3 * (raw >> 1 & 1)
    if n < need:
        raise GattParseError(f"{what}: features 0x{raw:04X} promise {need} bytes, got {n}")
    offset = 2
    status_support = sensor_support = None
    if raw & 0x01:
        (status_support,) = _U16.unpack_from(data, offset)
        offset += 2
    if raw & 0x02:
        low, high = _STATUS_AND_DSS.unpack_from(data, offset)
        sensor_support = low | high << 16
    note_rfu(raw, 0xFF00, what, data)
    note_trailing(data, need, what)
    return PlxFeatures(
        raw=raw,
        features=bit_names(raw, _FEATURE_NAMES),
        measurement_status_support=status_support,
        device_sensor_status_support=sensor_support,
    )
