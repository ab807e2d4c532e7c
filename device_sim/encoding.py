"""Encoders for the GATT health characteristics the virtual devices send.

Layouts follow /work/shared/reference/ble-gatt.md section 1 (Bluetooth SIG GATT
XML definitions, cross-checked with Nordic's Android-BLE-Common-Library and
SpeziBluetooth).  These are encoders only: the parsers live in ``edge.gatt``
and the tests check one against the other and against the reference vectors
(never an encoder against itself).

All multi-byte fields are little-endian (reference section 1.0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

# IEEE 11073-20601 special values (reference section 2).  They only exist with
# exponent 0, so an ordinary number must never encode to one of these.
SFLOAT_NAN = 0x07FF
SFLOAT_NRES = 0x0800
SFLOAT_POSITIVE_INFINITY = 0x07FE
SFLOAT_NEGATIVE_INFINITY = 0x0802
SFLOAT_RESERVED = 0x0801
_SFLOAT_SPECIAL_MANTISSAS = frozenset({0x07FE, 0x07FF, -0x0800, -0x07FF, -0x07FE})

FLOAT_NAN = 0x007FFFFF
FLOAT_NRES = 0x00800000
FLOAT_POSITIVE_INFINITY = 0x007FFFFE
FLOAT_NEGATIVE_INFINITY = 0x00800002
_FLOAT_SPECIAL_MANTISSAS = frozenset({0x7FFFFE, 0x7FFFFF, -0x800000, -0x7FFFFF, -0x7FFFFE})

# Weight Measurement resolution (reference section 1.4): raw x 0.005 kg, raw x 0.01 lb.
WEIGHT_KG_STEP = 0.005
WEIGHT_LB_STEP = 0.01
WEIGHT_UNSUCCESSFUL = 0xFFFF

# RACP op codes, operators and response codes (reference section 1.6).
RACP_REPORT_RECORDS = 0x01
RACP_DELETE_RECORDS = 0x02
RACP_ABORT = 0x03
RACP_REPORT_NUMBER = 0x04
RACP_NUMBER_RESPONSE = 0x05
RACP_RESPONSE_CODE = 0x06

RACP_OP_NULL = 0x00
RACP_OP_ALL = 0x01
RACP_OP_LESS_OR_EQUAL = 0x02
RACP_OP_GREATER_OR_EQUAL = 0x03
RACP_OP_WITHIN_RANGE = 0x04
RACP_OP_FIRST = 0x05
RACP_OP_LAST = 0x06

RACP_FILTER_SEQUENCE_NUMBER = 0x01

RACP_SUCCESS = 0x01
RACP_OP_CODE_NOT_SUPPORTED = 0x02
RACP_INVALID_OPERATOR = 0x03
RACP_OPERATOR_NOT_SUPPORTED = 0x04
RACP_INVALID_OPERAND = 0x05
RACP_NO_RECORDS_FOUND = 0x06
RACP_ABORT_UNSUCCESSFUL = 0x07
RACP_PROCEDURE_NOT_COMPLETED = 0x08
RACP_OPERAND_NOT_SUPPORTED = 0x09


def _sfloat_raw(mantissa: int, exponent: int) -> int:
    if not -8 <= exponent <= 7:
        raise ValueError(f"SFLOAT exponent {exponent} outside -8..7")
    if not -2048 <= mantissa <= 2047:
        raise ValueError(f"SFLOAT mantissa {mantissa} outside -2048..2047")
    if exponent == 0 and mantissa in _SFLOAT_SPECIAL_MANTISSAS:
        raise ValueError(f"SFLOAT mantissa {mantissa} with exponent 0 is a special value")
    return ((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)


def sfloat(value: float, exponent: int = 0) -> bytes:
    """``value`` as an SFLOAT with the given decimal exponent (precision).

    ``sfloat(36.7, -1)`` is ``6F F1``: mantissa 367, exponent -1 (reference section 2).
    """
    mantissa = round(value / 10.0**exponent)
    return struct.pack("<H", _sfloat_raw(mantissa, exponent))


def sfloat_fitting(value: float, finest_exponent: int) -> bytes:
    """``value`` as an SFLOAT with the finest exponent >= ``finest_exponent`` that fits."""
    for exponent in range(finest_exponent, 8):
        if -2046 <= round(value / 10.0**exponent) <= 2045:
            return sfloat(value, exponent)
    raise ValueError(f"{value} does not fit an SFLOAT")


def sfloat_special(raw: int) -> bytes:
    """One of the SFLOAT special values (``SFLOAT_NAN`` ...) as bytes."""
    return struct.pack("<H", raw)


def float32(value: float, exponent: int = 0) -> bytes:
    """``value`` as an IEEE 11073 32-bit FLOAT: 8-bit exponent, 24-bit mantissa."""
    if not -128 <= exponent <= 127:
        raise ValueError(f"FLOAT exponent {exponent} outside -128..127")
    mantissa = round(value / 10.0**exponent)
    if not -(2**23) <= mantissa < 2**23:
        raise ValueError(f"FLOAT mantissa {mantissa} out of range")
    if exponent == 0 and mantissa in _FLOAT_SPECIAL_MANTISSAS:
        raise ValueError(f"FLOAT mantissa {mantissa} with exponent 0 is a special value")
    return struct.pack("<I", ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF))


def float32_special(raw: int) -> bytes:
    return struct.pack("<I", raw)


def date_time(value: datetime | None) -> bytes:
    """Date Time 0x2A08 (7 bytes): the device's local wall clock, no zone.

    ``None`` encodes as all zeros, which the spec defines as "unknown".
    """
    if value is None:
        return bytes(7)
    return struct.pack(
        "<HBBBBB", value.year, value.month, value.day, value.hour, value.minute, value.second
    )


def current_time(value: datetime, *, adjust_reason: int = 0) -> bytes:
    """Current Time 0x2A2B (10 bytes): Date Time, day of week (1 = Monday), 1/256 s, reason."""
    fractions256 = value.microsecond * 256 // 1_000_000
    return date_time(value) + bytes([value.isoweekday(), fractions256, adjust_reason])


def _check_fits(data: bytes, maximum: int) -> bytes:
    # Reference section 1.0: every layout fits the default 20-byte ATT payload.
    assert len(data) <= maximum, (len(data), maximum)
    return data


# ---------------------------------------------------------------- Blood pressure 0x2A35


@dataclass(frozen=True, slots=True)
class BloodPressure:
    systolic: float
    diastolic: float
    mean_arterial: float
    pulse_rate: float | None = None
    timestamp: datetime | None = None
    user_id: int | None = None
    status: int | None = None
    kpa: bool = False


def blood_pressure_measurement(m: BloodPressure) -> bytes:
    """0x2A35 Blood Pressure Measurement (reference section 1.1), 7..19 bytes.

    Pressures in mmHg are sent as whole numbers (exponent 0), in kPa with one
    decimal, as the reference vectors V1 and V3 do.
    """
    exponent = -1 if m.kpa else 0
    flags = (
        (0x01 if m.kpa else 0)
        | (0x02 if m.timestamp is not None else 0)
        | (0x04 if m.pulse_rate is not None else 0)
        | (0x08 if m.user_id is not None else 0)
        | (0x10 if m.status is not None else 0)
    )
    out = bytearray([flags])
    out += sfloat(m.systolic, exponent) + sfloat(m.diastolic, exponent)
    out += sfloat(m.mean_arterial, exponent)
    if m.timestamp is not None:
        out += date_time(m.timestamp)
    if m.pulse_rate is not None:
        out += sfloat(m.pulse_rate)
    if m.user_id is not None:
        out.append(m.user_id)
    if m.status is not None:
        out += struct.pack("<H", m.status)
    return _check_fits(bytes(out), 19)


def blood_pressure_feature(bits: int) -> bytes:
    """0x2A49 Blood Pressure Feature, uint16."""
    return struct.pack("<H", bits)


# ---------------------------------------------------------------- Pulse oximeter 0x2A5E / 0x2A5F


@dataclass(frozen=True, slots=True)
class SpotCheck:
    spo2: float
    pulse_rate: float
    timestamp: datetime | None = None
    measurement_status: int | None = None
    device_sensor_status: int | None = None
    pulse_amplitude_index: float | None = None
    clock_not_set: bool = False


def plx_spot_check(m: SpotCheck) -> bytes:
    """0x2A5E PLX Spot-Check Measurement (reference section 1.2), 5..19 bytes."""
    flags = (
        (0x01 if m.timestamp is not None else 0)
        | (0x02 if m.measurement_status is not None else 0)
        | (0x04 if m.device_sensor_status is not None else 0)
        | (0x08 if m.pulse_amplitude_index is not None else 0)
        | (0x10 if m.clock_not_set else 0)
    )
    out = bytearray([flags]) + sfloat(m.spo2) + sfloat(m.pulse_rate)
    if m.timestamp is not None:
        out += date_time(m.timestamp)
    if m.measurement_status is not None:
        out += struct.pack("<H", m.measurement_status)
    if m.device_sensor_status is not None:
        out += m.device_sensor_status.to_bytes(3, "little")
    if m.pulse_amplitude_index is not None:
        out += sfloat(m.pulse_amplitude_index, -1)
    return _check_fits(bytes(out), 19)


@dataclass(frozen=True, slots=True)
class Continuous:
    spo2: float
    pulse_rate: float
    pulse_amplitude_index: float | None = None


def plx_continuous(m: Continuous) -> bytes:
    """0x2A5F PLX Continuous Measurement: Normal SpO2/PR, optional PAI (flag bit 4)."""
    flags = 0x10 if m.pulse_amplitude_index is not None else 0
    out = bytearray([flags]) + sfloat(m.spo2) + sfloat(m.pulse_rate)
    if m.pulse_amplitude_index is not None:
        out += sfloat(m.pulse_amplitude_index, -1)
    return _check_fits(bytes(out), 20)


def plx_features(bits: int) -> bytes:
    """0x2A60 PLX Features; the support fields follow only when bits 0/1 are set."""
    out = struct.pack("<H", bits)
    if bits & 0x01:
        out += struct.pack("<H", 0xFFE0)  # every defined measurement-status bit (5..15)
    if bits & 0x02:
        out += (0x00FFFF).to_bytes(3, "little")  # every defined device/sensor bit (0..15)
    return out


# ---------------------------------------------------------------- Thermometer 0x2A1C


@dataclass(frozen=True, slots=True)
class Temperature:
    celsius: float
    timestamp: datetime | None = None
    site: int | None = None
    fahrenheit: bool = False


def temperature_measurement(m: Temperature) -> bytes:
    """0x2A1C Temperature Measurement (reference section 1.3): FLOAT, 5..13 bytes."""
    value = m.celsius * 9 / 5 + 32 if m.fahrenheit else m.celsius
    flags = (
        (0x01 if m.fahrenheit else 0)
        | (0x02 if m.timestamp is not None else 0)
        | (0x04 if m.site is not None else 0)
    )
    out = bytearray([flags]) + float32(value, -1)
    if m.timestamp is not None:
        out += date_time(m.timestamp)
    if m.site is not None:
        out.append(m.site)
    return _check_fits(bytes(out), 13)


# ---------------------------------------------------------------- Scale 0x2A9D


@dataclass(frozen=True, slots=True)
class Weight:
    kilograms: float
    timestamp: datetime | None = None
    user_id: int | None = None
    bmi: float | None = None
    height_m: float | None = None
    imperial: bool = False


def weight_measurement(m: Weight) -> bytes:
    """0x2A9D Weight Measurement (reference section 1.4), fixed 0.005 kg / 0.01 lb step."""
    if m.imperial:
        raw = round(m.kilograms / 0.45359237 / WEIGHT_LB_STEP)
    else:
        raw = round(m.kilograms / WEIGHT_KG_STEP)
    if not 0 <= raw < WEIGHT_UNSUCCESSFUL:
        raise ValueError(f"weight {m.kilograms} kg does not fit the 16-bit field")
    with_bmi = m.bmi is not None and m.height_m is not None
    flags = (
        (0x01 if m.imperial else 0)
        | (0x02 if m.timestamp is not None else 0)
        | (0x04 if m.user_id is not None else 0)
        | (0x08 if with_bmi else 0)
    )
    out = bytearray([flags]) + struct.pack("<H", raw)
    if m.timestamp is not None:
        out += date_time(m.timestamp)
    if m.user_id is not None:
        out.append(m.user_id)
    if m.bmi is not None and m.height_m is not None:
        height = m.height_m / 0.0254 / 0.1 if m.imperial else m.height_m / 0.001
        out += struct.pack("<HH", round(m.bmi / 0.1), round(height))
    return _check_fits(bytes(out), 15)


def weight_unsuccessful() -> bytes:
    """A Weight Measurement saying "measurement unsuccessful" (0xFFFF, reference M13)."""
    return bytes([0x00]) + struct.pack("<H", WEIGHT_UNSUCCESSFUL)


def weight_scale_feature(bits: int) -> bytes:
    return struct.pack("<I", bits)


# ---------------------------------------------------------------- Glucose 0x2A18 / 0x2A34

GLUCOSE_TYPE_CAPILLARY_WHOLE_BLOOD = 1
GLUCOSE_LOCATION_FINGER = 1


@dataclass(frozen=True, slots=True)
class Glucose:
    sequence_number: int
    base_time: datetime | None
    mmol_per_l: float
    time_offset_minutes: int | None = None
    sample_type: int = GLUCOSE_TYPE_CAPILLARY_WHOLE_BLOOD
    sample_location: int = GLUCOSE_LOCATION_FINGER
    sensor_status: int | None = None
    mg_per_dl: bool = False
    context_follows: bool = False


# mg/dL per mmol/L of glucose (molar mass 180.16 g/mol); used only to send mg/dL.
MG_PER_DL_PER_MMOL_PER_L = 18.016


def glucose_measurement(m: Glucose) -> bytes:
    """0x2A18 Glucose Measurement (reference section 1.5), 10..17 bytes.

    Concentration is sent in mol/L (flag bit 2) with exponent -5, or in kg/L
    when ``mg_per_dl`` (e.g. 99 mg/dL = 0.00099 kg/L: mantissa 99, exponent -5).
    """
    flags = (
        (0x01 if m.time_offset_minutes is not None else 0)
        | 0x02
        | (0x00 if m.mg_per_dl else 0x04)
        | (0x08 if m.sensor_status is not None else 0)
        | (0x10 if m.context_follows else 0)
    )
    out = bytearray([flags]) + struct.pack("<H", m.sequence_number) + date_time(m.base_time)
    if m.time_offset_minutes is not None:
        out += struct.pack("<h", m.time_offset_minutes)
    if m.mg_per_dl:
        # kg/L = mg/dL / 100 000 (reference: mg/dL = kg/L x 100 000)
        out += sfloat_fitting(m.mmol_per_l * MG_PER_DL_PER_MMOL_PER_L / 100_000, -5)
    else:
        # mol/L = mmol/L / 1000; exponent -5 gives 0.01 mmol/L up to 20.45 mmol/L
        out += sfloat_fitting(m.mmol_per_l / 1000, -5)
    out.append((m.sample_location << 4) | (m.sample_type & 0x0F))
    if m.sensor_status is not None:
        out += struct.pack("<H", m.sensor_status)
    return _check_fits(bytes(out), 17)


GLUCOSE_MEAL_PREPRANDIAL = 1
GLUCOSE_MEAL_FASTING = 3


def glucose_context(sequence_number: int, meal: int) -> bytes:
    """0x2A34 Glucose Measurement Context carrying only the meal field (flag bit 1)."""
    return bytes([0x02]) + struct.pack("<H", sequence_number) + bytes([meal])


def glucose_feature(bits: int) -> bytes:
    return struct.pack("<H", bits)


# ---------------------------------------------------------------- RACP 0x2A52


def racp_number_of_records(count: int) -> bytes:
    """``05 00 <uint16 count>`` (reference vector V20)."""
    return bytes([RACP_NUMBER_RESPONSE, RACP_OP_NULL]) + struct.pack("<H", count)


def racp_response(request_op_code: int, response_code: int) -> bytes:
    """``06 00 <request op code> <response code>`` (reference vectors V21, V22)."""
    return bytes([RACP_RESPONSE_CODE, RACP_OP_NULL, request_op_code, response_code])
