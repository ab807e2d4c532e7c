"""Weight Scale Service 0x181D: 0x2A9D Weight Measurement, 0x2A9E Weight Scale Feature.

0x2A9D (SIG XML, ble-gatt.md 1.4): Flags u8 . Weight u16 . [Time Stamp 7 if b1] .
[User ID u8 if b2] . [BMI u16 + Height u16 if b3]; b0 0 = SI, 1 = imperial;
b4-7 RFU.  Weight is decoded with the fixed step of the XML (0.005 kg / 0.01
lb) -- the Feature "resolution" is the scale's precision, not a multiplier
(ble-gatt.md 1.4 "Known ambiguity").  Weight 0xFFFF = measurement unsuccessful.
"""

from __future__ import annotations

import struct
from typing import Final

from homeward.kinds import Kind

from .errors import GattParseError
from .fields import Bytes, check_plausible, date_time, note_rfu, note_trailing, note_unused, require
from .results import Measurement, WeightScaleFeature, fast_measurement
from .units import inch_to_m, lb_to_kg

_HEADER: Final = struct.Struct("<BH")
_U16_PAIR: Final = struct.Struct("<HH")
_U32: Final = struct.Struct("<I")
_MIN_LENGTH: Final = 3
_LENGTH: Final = tuple(
    _MIN_LENGTH + 7 * (f >> 1 & 1) + (f >> 2 & 1) + 4 * (f >> 3 & 1) for f in range(16)
)

#: "Measurement Unsuccessful" (RivieraWaves wscp_common.h; ble-gatt.md M13).
WEIGHT_UNSUCCESSFUL: Final = 0xFFFF
UNKNOWN_USER: Final = 0xFF

#: Weight Scale Feature bits 3-6 -> resolution (kg, lb); bits 7-9 -> height (m, in).
_WEIGHT_RESOLUTION: Final[dict[int, tuple[float, float]]] = {
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
_HEIGHT_RESOLUTION: Final[dict[int, tuple[float, float]]] = {
    1: (0.01, 1.0),
    2: (0.005, 0.5),
    3: (0.001, 0.1),
}
_FEATURE_NAMES: Final = ("time_stamp", "multiple_users", "bmi")


def decode_weight_measurement(data: Bytes) -> Measurement:
    """0x2A9D -> a weight :class:`Measurement` in kg (BMI and height in ``extras``)."""
    what = "weight measurement"
    n = require(data, _MIN_LENGTH, what)
    flags, raw = _HEADER.unpack_from(data)
    need = _LENGTH[flags & 0x0F]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    if raw == WEIGHT_UNSUCCESSFUL:
        raise GattParseError(f"{what}: measurement unsuccessful (weight 0xFFFF)")
    imperial = flags & 0x01
    # SI: raw x 0.005 kg, computed as raw * 5 / 1000 so 14490 gives exactly 72.45.
    weight = lb_to_kg(raw / 100) if imperial else raw * 5 / 1000
    out_flags: list[str] = []
    taken_at = None
    time_flag = None
    user_id = None
    extras: dict[str, float] = {}
    offset = _MIN_LENGTH
    if flags & 0x02:
        taken_at, time_flag = date_time(data, offset)
        offset += 7
    if flags & 0x04:
        user = data[offset]
        offset += 1
        if user == UNKNOWN_USER:
            out_flags.append("user_unknown")
        else:
            user_id = user
    if flags & 0x08:
        bmi_raw, height_raw = _U16_PAIR.unpack_from(data, offset)
        extras["bmi"] = bmi_raw / 10
        extras["height_m"] = inch_to_m(height_raw / 10) if imperial else height_raw / 1000
    if time_flag is not None:
        out_flags.append(time_flag)
    values = {"body_weight": weight}
    check_plausible(Kind.WEIGHT, values, what)
    if flags & 0xF0 or n > need:
        note_unused(data, need, flags & 0xF0, what)
    return fast_measurement({
        "kind": Kind.WEIGHT,
        "values": values,
        "taken_at": taken_at,
        "flags": tuple(out_flags),
        "unavailable": {},
        "user_id": user_id,
        "extras": extras,
    })


def decode_weight_scale_feature(data: Bytes) -> WeightScaleFeature:
    """0x2A9E: uint32 (b0 time stamp, b1 multiple users, b2 BMI, b3-6 weight, b7-9 height res.)."""
    what = "weight scale feature"
    require(data, 4, what)
    (raw,) = _U32.unpack_from(data)
    weight = _WEIGHT_RESOLUTION.get(raw >> 3 & 0x0F)
    height = _HEIGHT_RESOLUTION.get(raw >> 7 & 0x07)
    note_rfu(raw, 0xFFFFFC00, what, data)
    note_trailing(data, 4, what)
    return WeightScaleFeature(
        raw=raw,
        features=tuple(name for bit, name in enumerate(_FEATURE_NAMES) if raw >> bit & 1),
        weight_resolution_kg=weight[0] if weight else None,
        weight_resolution_lb=weight[1] if weight else None,
        height_resolution_m=height[0] if height else None,
        height_resolution_in=height[1] if height else None,
    )
