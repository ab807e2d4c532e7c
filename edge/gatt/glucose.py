"""Glucose Service 0x1808: 0x2A18 Glucose Measurement, 0x2A34 Glucose Measurement Context.

0x2A18 (SIG XML, ble-gatt.md 1.5): Flags u8 . Sequence Number u16 . Base Time 7 .
[Time Offset s16 minutes if b0] . [Concentration SFLOAT + Type/Location u8 if b1]
. [Sensor Status Annunciation u16 if b3]; b2 units 0 = kg/L, 1 = mol/L; b4 a
context record follows; b5-7 RFU.  Effective time = base time + offset.

Control solution (type 10 or sample location 4) is a meter check, not the
patient: it comes back as :class:`ControlSolution`, never as a Measurement, so
the agent can still advance its RACP sequence number past it.  A record without
a concentration (flags b1 clear, e.g. a strip error event) or with a special
value raises GattParseError.  Sensor Status Annunciation bits become flags.
"""

from __future__ import annotations

import logging
import struct
from datetime import timedelta
from typing import Final

from homeward.kinds import Kind

from .errors import GattParseError
from .fields import (
    DEVICE_TIME_INVALID,
    Bytes,
    bit_names,
    check_plausible,
    date_time,
    note_rfu,
    note_trailing,
    note_unused,
    require,
)
from .ieee11073 import SFLOAT_SPECIAL, SFLOAT_VALUES
from .results import ControlSolution, GlucoseContext, Measurement, fast_measurement
from .units import kg_per_l_to_mmol_per_l, mol_per_l_to_mmol_per_l

_LOGGER = logging.getLogger(__name__)

_HEADER: Final = struct.Struct("<BH")
_S16: Final = struct.Struct("<h")
_U16: Final = struct.Struct("<H")
_MIN_LENGTH: Final = 10
_LENGTH: Final = tuple(
    _MIN_LENGTH + 2 * (f & 1) + 3 * (f >> 1 & 1) + 2 * (f >> 3 & 1) for f in range(16)
)

SAMPLE_TYPES: Final[dict[int, str]] = {
    1: "capillary_whole_blood",
    2: "capillary_plasma",
    3: "venous_whole_blood",
    4: "venous_plasma",
    5: "arterial_whole_blood",
    6: "arterial_plasma",
    7: "undetermined_whole_blood",
    8: "undetermined_plasma",
    9: "interstitial_fluid",
    10: "control_solution",
}
SAMPLE_LOCATIONS: Final[dict[int, str]] = {
    1: "finger",
    2: "alternate_site_test",
    3: "earlobe",
    4: "control_solution",
    15: "not_available",
}
CONTROL_SOLUTION_TYPE: Final = 10
CONTROL_SOLUTION_LOCATION: Final = 4

#: Sensor Status Annunciation bits 0-11 -> flags (12-15 RFU).
_SENSOR_STATUS_NAMES: Final = (
    "battery_low",
    "sensor_malfunction",
    "sample_size_insufficient",
    "strip_insertion_error",
    "strip_type_incorrect",
    "result_above_device_range",
    "result_below_device_range",
    "sensor_temperature_too_high",
    "sensor_temperature_too_low",
    "strip_pulled_too_soon",
    "device_fault",
    "time_fault",
)
CONTEXT_FOLLOWS_FLAG: Final = "context_follows"


def decode_glucose_measurement(data: Bytes) -> Measurement | ControlSolution:
    """0x2A18 -> a glucose :class:`Measurement` in mmol/L, or :class:`ControlSolution`."""
    what = "glucose measurement"
    n = require(data, _MIN_LENGTH, what)
    flags, sequence = _HEADER.unpack_from(data)
    need = _LENGTH[flags & 0x0F]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    if not flags & 0x02:
        raise GattParseError(f"{what}: record {sequence} carries no concentration (flags b1 clear)")
    taken_at, time_flag = date_time(data, 3)
    offset = _MIN_LENGTH
    if flags & 0x01:
        (minutes,) = _S16.unpack_from(data, offset)
        offset += 2
        if taken_at is not None and minutes:
            try:
                taken_at += timedelta(minutes=minutes)
            except OverflowError:
                taken_at, time_flag = None, DEVICE_TIME_INVALID
    conc_raw, type_location = _U16.unpack_from(data, offset)[0], data[offset + 2]
    offset += 3
    sample_type = SAMPLE_TYPES.get(type_location & 0x0F)
    sample_location = SAMPLE_LOCATIONS.get(type_location >> 4)
    if sample_type is None or sample_location is None:
        _LOGGER.debug("%s: reserved type/location 0x%02X in %s", what, type_location, data.hex())
    out_flags: list[str] = []
    sensor = None
    if flags & 0x08:
        (sensor,) = _U16.unpack_from(data, offset)
        out_flags.extend(bit_names(sensor, _SENSOR_STATUS_NAMES))
        if sensor & 0xF000:
            note_rfu(sensor, 0xF000, what + " sensor status", data)
    if flags & 0x10:
        out_flags.append(CONTEXT_FOLLOWS_FLAG)
    if time_flag is not None:
        out_flags.append(time_flag)
    if flags & 0xE0 or n > need:
        note_unused(data, need, flags & 0xE0, what)

    concentration = SFLOAT_VALUES[conc_raw]
    if (type_location & 0x0F == CONTROL_SOLUTION_TYPE
            or type_location >> 4 == CONTROL_SOLUTION_LOCATION):
        return ControlSolution(
            sequence_number=sequence,
            blood_glucose=None if concentration is None else _mmol_per_l(concentration, flags),
            taken_at=taken_at,
            flags=tuple(out_flags),
        )
    if concentration is None:
        raise GattParseError(f"{what}: concentration is {SFLOAT_SPECIAL[conc_raw].value}"
                             " (IEEE 11073 special value)")
    values = {"blood_glucose": _mmol_per_l(concentration, flags)}
    check_plausible(Kind.GLUCOSE, values, what)
    return fast_measurement({
        "kind": Kind.GLUCOSE,
        "values": values,
        "taken_at": taken_at,
        "flags": tuple(out_flags),
        "unavailable": {},
        "sequence_number": sequence,
        "sensor_status": sensor,
        "sample_type": sample_type,
        "sample_location": sample_location,
        "extras": {},
    })


def _mmol_per_l(value: float, flags: int) -> float:
    return mol_per_l_to_mmol_per_l(value) if flags & 0x04 else kg_per_l_to_mmol_per_l(value)


_MEALS: Final = {1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"}
_TESTERS: Final = {1: "self", 2: "health_care_professional", 3: "lab_test", 15: "not_available"}
_HEALTH: Final = {
    1: "minor_health_issues",
    2: "major_health_issues",
    3: "during_menses",
    4: "under_stress",
    5: "no_health_issues",
    15: "not_available",
}
_CONTEXT_LENGTH: Final = tuple(
    3 + 3 * (f & 1) + (f >> 1 & 1) + (f >> 2 & 1) + 3 * (f >> 3 & 1) + 3 * (f >> 4 & 1)
    + 2 * (f >> 6 & 1) + (f >> 7 & 1)
    for f in range(256)
)
EXERCISE_OVERRUN: Final = 0xFFFF


def _optional_sfloat(raw: int) -> float | None:
    return SFLOAT_VALUES[raw]


def decode_glucose_context(data: Bytes) -> GlucoseContext:
    """0x2A34 -> :class:`GlucoseContext` (special values and reserved codes become None)."""
    what = "glucose measurement context"
    n = require(data, 3, what)
    flags, sequence = _HEADER.unpack_from(data)
    need = _CONTEXT_LENGTH[flags]
    if n < need:
        raise GattParseError(f"{what}: flags 0x{flags:02X} promise {need} bytes, got {n}")
    offset = 3
    extended = carb_id = meal = tester = health = duration = intensity = med_id = None
    carbohydrate = medication = hba1c = None
    medication_unit = None
    if flags & 0x80:
        extended = data[offset]
        offset += 1
    if flags & 0x01:
        carb_id = data[offset]
        carbohydrate = _optional_sfloat(_U16.unpack_from(data, offset + 1)[0])
        offset += 3
    if flags & 0x02:
        meal = _MEALS.get(data[offset])
        offset += 1
    if flags & 0x04:
        tester = _TESTERS.get(data[offset] & 0x0F)
        health = _HEALTH.get(data[offset] >> 4)
        offset += 1
    if flags & 0x08:
        (seconds,) = _U16.unpack_from(data, offset)
        duration = None if seconds == EXERCISE_OVERRUN else seconds
        intensity = data[offset + 2]
        offset += 3
    if flags & 0x10:
        med_id = data[offset]
        medication = _optional_sfloat(_U16.unpack_from(data, offset + 1)[0])
        medication_unit = "L" if flags & 0x20 else "kg"
        offset += 3
    if flags & 0x40:
        hba1c = _optional_sfloat(_U16.unpack_from(data, offset)[0])
    note_trailing(data, need, what)
    return GlucoseContext(
        sequence_number=sequence,
        extended_flags=extended,
        carbohydrate_id=carb_id,
        carbohydrate=carbohydrate,
        meal=meal,
        tester=tester,
        health=health,
        exercise_duration_s=duration,
        exercise_intensity_percent=intensity,
        medication_id=med_id,
        medication=medication,
        medication_unit=medication_unit,
        hba1c_percent=hba1c,
    )
