"""Bluetooth GATT health characteristics -> typed results (pure functions over bytes).

``decode(characteristic, data)`` is the entry point; see docs/gatt.md.
"""

from __future__ import annotations

from .decode import DECODERS, MEASUREMENT_CHARACTERISTICS, SUPPORTED_CHARACTERISTICS, decode
from .errors import GattParseError
from .ieee11073 import SpecialValue, decode_float, decode_sfloat
from .racp import (
    abort_operation,
    report_all_records,
    report_last_record,
    report_number_of_records,
    report_number_of_records_from,
    report_records_from,
)
from .results import (
    BatteryLevel,
    BloodPressureFeature,
    ControlSolution,
    CurrentTime,
    DateTimeValue,
    DeviceInfoString,
    GattResult,
    GlucoseContext,
    IntermediateCuffPressure,
    Measurement,
    PlxFeatures,
    PnpId,
    RacpNumberOfRecords,
    RacpRequest,
    RacpResponse,
    SystemId,
    TemperatureType,
    WeightScaleFeature,
)
from .time_service import encode_current_time, encode_date_time

__all__ = [
    "DECODERS",
    "MEASUREMENT_CHARACTERISTICS",
    "SUPPORTED_CHARACTERISTICS",
    "BatteryLevel",
    "BloodPressureFeature",
    "ControlSolution",
    "CurrentTime",
    "DateTimeValue",
    "DeviceInfoString",
    "GattParseError",
    "GattResult",
    "GlucoseContext",
    "IntermediateCuffPressure",
    "Measurement",
    "PlxFeatures",
    "PnpId",
    "RacpNumberOfRecords",
    "RacpRequest",
    "RacpResponse",
    "SpecialValue",
    "SystemId",
    "TemperatureType",
    "WeightScaleFeature",
    "abort_operation",
    "decode",
    "decode_float",
    "decode_sfloat",
    "encode_current_time",
    "encode_date_time",
    "report_all_records",
    "report_last_record",
    "report_number_of_records",
    "report_number_of_records_from",
    "report_records_from",
]
