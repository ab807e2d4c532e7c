"""Blood Pressure Service 0x1810: 0x2A35 measurement, 0x2A36 cuff pressure, 0x2A49 feature.

Layout (SIG XML, ble-gatt.md 1.1): Flags u8 . Systolic SFLOAT . Diastolic SFLOAT .
MAP SFLOAT . [Time Stamp 7 if b1] . [Pulse Rate SFLOAT if b2] . [User ID u8 if b3]
. [Measurement Status u16 if b4].  Flags b0: 0 = mmHg, 1 = kPa; b5-7 RFU.
0x2A36 has the same layout; its first SFLOAT is the cuff pressure and the
other two slots are unused (NaN in practice), so it is never a reading.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from homeward.kinds import Kind

from .errors import GattParseError
from .fields import (
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
from .results import (
    BloodPressureFeature,
    IntermediateCuffPressure,
    Measurement,
    fast_measurement,
)
from .units import kpa_to_mmhg

_HEADER: Final = struct.Struct("<BHHH")
_U16: Final = struct.Struct("<H")
_MIN_LENGTH: Final = 7

FLAG_KPA: Final = 0x01
FLAG_TIME_STAMP: Final = 0x02
FLAG_PULSE_RATE: Final = 0x04
FLAG_USER_ID: Final = 0x08
FLAG_STATUS: Final = 0x10
FLAGS_RFU: Final = 0xE0

#: PDU length promised by flag bits 1-4 (optional fields in order, no gaps).
_LENGTH: Final = tuple(
    _MIN_LENGTH + 7 * (f >> 1 & 1) + 2 * (f >> 2 & 1) + (f >> 3 & 1) + 2 * (f >> 4 & 1)
    for f in range(32)
)

#: Measurement Status bits 0-5 -> flags (bits 3-4 are the pulse-rate range field).
_STATUS_FLAGS: Final = bit_table(
    ("body_movement", "cuff_too_loose", "irregular_pulse", None, None, "improper_position")
)
#: Measurement Status bits 3-4: 0 in range, 1 above upper limit, 2 below lower limit, 3 RFU.
_PULSE_RANGE_FLAGS: Final[tuple[tuple[str, ...], ...]] = (
    (),
    ("pulse_rate_out_of_range", "pulse_rate_above_range"),
    ("pulse_rate_out_of_range", "pulse_rate_below_range"),
    (),
)
STATUS_RFU: Final = 0xFFC0

#: User ID 0xFF = "unknown user" (SIG XML): do not attribute the reading to a named user.
UNKNOWN_USER: Final = 0xFF
USER_UNKNOWN_FLAG: Final = "user_unknown"

#: A cuff inflates some 30 mmHg above systolic; kinds caps systolic at 300, so a
#: cuff pressure above this is corrupt bytes or kPa sent as mmHg.
MAX_PLAUSIBLE_CUFF_PRESSURE_MMHG: Final = 330.0

_FEATURE_NAMES: Final = (
    "body_movement_detection",
    "cuff_fit_detection",
    "irregular_pulse_detection",
    "pulse_rate_range_detection",
    "measurement_position_detection",
    "multiple_bonds",
    "e2e_crc",
    "user_data_service",
    "user_facing_time",
)


class _Fields:
    """The optional part of a BPM/ICP PDU, read once by :func:`_read_optional`."""

    __slots__ = ("flags", "pulse_raw", "status", "taken_at", "user_id")

    def __init__(self) -> None:
        self.taken_at: datetime | None = None
        self.pulse_raw: int | None = None
        self.user_id: int | None = None
        self.status: int | None = None
        self.flags: list[str] = []


def _read_optional(data: Bytes, flags: int, what: str) -> _Fields:
    n = len(data)
    need = _LENGTH[flags & 0x1F]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    out = _Fields()
    offset = _MIN_LENGTH
    time_flag = None
    if flags & FLAG_TIME_STAMP:
        out.taken_at, time_flag = date_time(data, offset)
        offset += 7
    if flags & FLAG_PULSE_RATE:
        (out.pulse_raw,) = _U16.unpack_from(data, offset)
        offset += 2
    unknown_user = False
    if flags & FLAG_USER_ID:
        user = data[offset]
        offset += 1
        if user == UNKNOWN_USER:
            unknown_user = True
        else:
            out.user_id = user
    if flags & FLAG_STATUS:
        (status,) = _U16.unpack_from(data, offset)
        out.status = status
        out.flags.extend(_STATUS_FLAGS[status & 0x3F])
        out.flags.extend(_PULSE_RANGE_FLAGS[status >> 3 & 3])
        if status & STATUS_RFU:
            note_rfu(status, STATUS_RFU, what + " status", data)
    if unknown_user:
        out.flags.append(USER_UNKNOWN_FLAG)
    if time_flag is not None:
        out.flags.append(time_flag)
    if flags & FLAGS_RFU or n > need:
        note_unused(data, need, flags & FLAGS_RFU, what)
    return out


def _pressure(raw: int, kpa: int, name: str, what: str) -> float:
    value = SFLOAT_VALUES[raw]
    if value is None:
        raise GattParseError(
            f"{what}: {name} is {SFLOAT_SPECIAL[raw].value} (IEEE 11073 special value)")
    return kpa_to_mmhg(value) if kpa else value


def decode_blood_pressure_measurement(data: Bytes) -> Measurement:
    """0x2A35 -> a blood-pressure :class:`Measurement` in mmHg."""
    what = "blood pressure measurement"
    require(data, _MIN_LENGTH, what)
    flags, sys_raw, dia_raw, map_raw = _HEADER.unpack_from(data)
    opt = _read_optional(data, flags, what)
    kpa = flags & FLAG_KPA
    values = {
        "systolic": _pressure(sys_raw, kpa, "systolic", what),
        "diastolic": _pressure(dia_raw, kpa, "diastolic", what),
    }
    unavailable: dict[str, str] = {}
    out_flags = opt.flags
    value = SFLOAT_VALUES[map_raw]
    if value is not None:
        values["mean_arterial"] = kpa_to_mmhg(value) if kpa else value
    else:
        unavailable["mean_arterial"] = SFLOAT_SPECIAL[map_raw].value
        out_flags.append("mean_arterial_unavailable")
    if opt.pulse_raw is not None:
        value = SFLOAT_VALUES[opt.pulse_raw]
        if value is not None:
            values["pulse_rate"] = value
        else:
            unavailable["pulse_rate"] = SFLOAT_SPECIAL[opt.pulse_raw].value
            out_flags.append("pulse_rate_unavailable")
    check_plausible(Kind.BLOOD_PRESSURE, values, what)
    return fast_measurement({
        "kind": Kind.BLOOD_PRESSURE,
        "values": values,
        "taken_at": opt.taken_at,
        "flags": tuple(out_flags),
        "unavailable": unavailable,
        "user_id": opt.user_id,
        "measurement_status": opt.status,
        "extras": {},
    })


def decode_intermediate_cuff_pressure(data: Bytes) -> IntermediateCuffPressure:
    """0x2A36 -> the cuff pressure in mmHg; diastolic/MAP slots are unused and ignored."""
    what = "intermediate cuff pressure"
    require(data, _MIN_LENGTH, what)
    flags, cuff_raw, _unused_dia, _unused_map = _HEADER.unpack_from(data)
    opt = _read_optional(data, flags, what)
    cuff = _pressure(cuff_raw, flags & FLAG_KPA, "cuff pressure", what)
    if not 0.0 <= cuff <= MAX_PLAUSIBLE_CUFF_PRESSURE_MMHG:
        raise GattParseError(
            f"{what}: cuff pressure {cuff} mmHg outside plausible range "
            f"0..{MAX_PLAUSIBLE_CUFF_PRESSURE_MMHG:g}"
        )
    return IntermediateCuffPressure(
        cuff_pressure=cuff,
        taken_at=opt.taken_at,
        flags=tuple(opt.flags),
        user_id=opt.user_id,
        measurement_status=opt.status,
    )


def decode_blood_pressure_feature(data: Bytes) -> BloodPressureFeature:
    """0x2A49: uint16 of supported features (bits 6-8 from BLS 1.1; 9-15 RFU)."""
    what = "blood pressure feature"
    require(data, 2, what)
    (raw,) = _U16.unpack_from(data)
    note_rfu(raw, 0xFE00, what, data)
    note_trailing(data, 2, what)
    return BloodPressureFeature(raw=raw, features=bit_names(raw, _FEATURE_NAMES))
