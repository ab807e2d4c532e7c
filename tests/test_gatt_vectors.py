"""GATT characteristic vectors: bytes in, the whole decoded object out.

Sources of the vectors (cited in each test id):
- V1..V25, M2..M17: shared/reference/ble-gatt.md section 3 (all of them).
- NORDIC-*: published vectors from Nordic's Android-BLE-Common-Library unit
  tests (github.com/NordicSemiconductor/Android-BLE-Common-Library, ble-common/
  src/test/..., BloodPressureMeasurementDataCallbackTest, TemperatureMeasurement-
  DataCallbackTest, GlucoseMeasurementDataCallbackTest).
- H-*: hand-encoded here from the SIG XML layouts (ble-gatt.md section 1); the
  byte-by-byte meaning is in the comment beside each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from edge.gatt import (
    SUPPORTED_CHARACTERISTICS,
    BatteryLevel,
    BloodPressureFeature,
    ControlSolution,
    CurrentTime,
    DateTimeValue,
    DeviceInfoString,
    GattParseError,
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
    decode,
)
from edge.gatt import const as c
from homeward.kinds import Kind

T = datetime(2024, 3, 15, 8, 30, 5)  # E8 07 03 0F 08 1E 05


def bp(values: dict[str, float], **kw: object) -> Measurement:
    return Measurement(kind=Kind.BLOOD_PRESSURE, values=values, **kw)  # type: ignore[arg-type]


def spo2(values: dict[str, float], **kw: object) -> Measurement:
    return Measurement(kind=Kind.SPO2, values=values, **kw)  # type: ignore[arg-type]


def temp(celsius: float, **kw: object) -> Measurement:
    return Measurement(kind=Kind.TEMPERATURE, values={"body_temperature": celsius},
                       **kw)  # type: ignore[arg-type]


def weight(kg: float, **kw: object) -> Measurement:
    return Measurement(kind=Kind.WEIGHT, values={"body_weight": kg}, **kw)  # type: ignore[arg-type]


def glucose(mmol: float, **kw: object) -> Measurement:
    return Measurement(kind=Kind.GLUCOSE, values={"blood_glucose": mmol},
                       **kw)  # type: ignore[arg-type]


BP_120_80_93 = {"systolic": 120.0, "diastolic": 80.0, "mean_arterial": 93.0}
BP_KPA_V3 = {"systolic": 120.0, "diastolic": 80.3, "mean_arterial": 93.0}

VALID = [
    # --- Blood Pressure Measurement 0x2A35 ------------------------------------------------
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 78 00 50 00 5D 00", bp(BP_120_80_93),
                 id="V1-bpm-mmhg-minimal"),
    # 16.0/10.7/12.4 kPa / 0.133322 = 120.0/80.3/93.0 mmHg
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "01 A0 F0 6B F0 7C F0", bp(BP_KPA_V3),
                 id="V3-bpm-kpa-minimal"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "07 A0 F0 6B F0 7C F0 E8 07 03 0F 08 1E 05 3C 00",
                 bp({**BP_KPA_V3, "pulse_rate": 60.0}, taken_at=T), id="V4-bpm-kpa-time-pulse"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "10 82 00 52 00 62 00 32 00",
                 bp({"systolic": 130.0, "diastolic": 82.0, "mean_arterial": 98.0},
                    measurement_status=0x0032,
                    flags=("cuff_too_loose", "improper_position", "pulse_rate_out_of_range",
                           "pulse_rate_below_range")),
                 id="V5-bpm-status-cuff-loose-pulse-low-position"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "08 8C 00 5A 00 69 00 FF",
                 bp({"systolic": 140.0, "diastolic": 90.0, "mean_arterial": 105.0},
                    user_id=None, flags=("user_unknown",)),
                 id="V6-bpm-unknown-user-not-attributed"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "04 82 00 52 00 62 00 00 08",
                 bp({"systolic": 130.0, "diastolic": 82.0, "mean_arterial": 98.0},
                    unavailable={"pulse_rate": "not-at-this-resolution"},
                    flags=("pulse_rate_unavailable",)),
                 id="M2-bpm-pulse-NRes-keeps-bp"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "E0 78 00 50 00 5D 00 AA", bp(BP_120_80_93),
                 id="M7-bpm-rfu-flags-and-trailing-byte-ignored"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "02 78 00 50 00 5D 00 E8 07 0D 0F 08 1E 05",
                 bp(BP_120_80_93, flags=("device_time_invalid",)),
                 id="M15-bpm-month-13-keeps-values-time-invalid"),
    # NORDIC full: flags 1E; 138/88/120 mmHg; time with year 0 (= M17 "N1"); pulse 60;
    # user 1; status 0x27 = body movement, cuff loose, irregular pulse, improper position
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT,
                 "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00",
                 bp({"systolic": 138.0, "diastolic": 88.0, "mean_arterial": 120.0,
                     "pulse_rate": 60.0},
                    user_id=1, measurement_status=0x27,
                    flags=("body_movement", "cuff_too_loose", "irregular_pulse",
                           "improper_position", "device_time_unknown")),
                 id="M17-NORDIC-bpm-full-year-0-unknown-time"),
    # NORDIC some: flags 15 = kPa, pulse, status; 18.9/11/15.9 kPa; pulse 60; status 0x12
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "15 BD F0 0B 00 9F F0 3C 00 12 00",
                 bp({"systolic": 141.8, "diastolic": 82.5, "mean_arterial": 119.3,
                     "pulse_rate": 60.0},
                    measurement_status=0x12,
                    flags=("cuff_too_loose", "pulse_rate_out_of_range", "pulse_rate_below_range")),
                 id="NORDIC-bpm-kpa-pulse-status"),
    # H: MAP NaN is optional -> kept without MAP; irregular pulse; pulse above range (status 0x0C)
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "14 78 00 50 00 FF 07 48 00 0C 00",
                 bp({"systolic": 120.0, "diastolic": 80.0, "pulse_rate": 72.0},
                    unavailable={"mean_arterial": "not-a-number"}, measurement_status=0x0C,
                    flags=("irregular_pulse", "pulse_rate_out_of_range", "pulse_rate_above_range",
                           "mean_arterial_unavailable")),
                 id="H-bpm-map-nan-irregular-pulse-high"),
    # --- Intermediate Cuff Pressure 0x2A36 -------------------------------------------------
    pytest.param(c.INTERMEDIATE_CUFF_PRESSURE, "00 64 00 FF 07 FF 07",
                 IntermediateCuffPressure(cuff_pressure=100.0), id="V7-icp-not-a-bp-reading"),
    # H: 1.0 kPa (F00A) = 7.5 mmHg, body movement status
    pytest.param(c.INTERMEDIATE_CUFF_PRESSURE, "11 0A F0 FF 07 FF 07 01 00",
                 IntermediateCuffPressure(cuff_pressure=7.5, measurement_status=1,
                                          flags=("body_movement",)),
                 id="H-icp-kpa-status"),
    # --- Blood Pressure Feature 0x2A49 -----------------------------------------------------
    pytest.param(c.BLOOD_PRESSURE_FEATURE, "05 00",
                 BloodPressureFeature(raw=5, features=("body_movement_detection",
                                                       "irregular_pulse_detection")),
                 id="H-bp-feature"),
    # --- PLX Spot-Check 0x2A5E ---------------------------------------------------------------
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "00 61 00 48 00",
                 spo2({"spo2": 97.0, "pulse_rate": 72.0}), id="V8-plx-spot-minimal"),
    # H: all fields: time T; status 0x0200 (from storage); DSS 0x000020 (low perfusion); PAI 5.2
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT,
                 "0F 61 00 48 00 E8 07 03 0F 08 1E 05 00 02 20 00 00 34 F0",
                 spo2({"spo2": 97.0, "pulse_rate": 72.0, "perfusion_index": 5.2}, taken_at=T,
                      measurement_status=0x0200, sensor_status=0x20,
                      flags=("from_storage", "low_perfusion")),
                 id="H-plx-spot-full-from-storage"),
    # H: flags 0x11: time stamp present but "device clock is not set" -> no taken_at
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "11 62 00 50 00 D0 07 01 01 00 00 00",
                 spo2({"spo2": 98.0, "pulse_rate": 80.0}, flags=("device_clock_not_set",)),
                 id="H-plx-spot-clock-not-set"),
    # H: pulse rate NaN is optional -> SpO2 kept
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "00 60 00 FF 07",
                 spo2({"spo2": 96.0}, unavailable={"pulse_rate": "not-a-number"},
                      flags=("pulse_rate_unavailable",)),
                 id="H-plx-spot-pulse-nan"),
    # --- PLX Continuous 0x2A5F ---------------------------------------------------------------
    # H: flags 1C: status 0, device & sensor status 0, PAI 5.2 (the bench vector)
    pytest.param(c.PLX_CONTINUOUS_MEASUREMENT, "1C 61 00 48 00 00 00 00 00 00 34 F0",
                 spo2({"spo2": 97.0, "pulse_rate": 72.0, "perfusion_index": 5.2},
                      measurement_status=0, sensor_status=0),
                 id="H-plx-continuous-status-pai"),
    # H: flags 03: fast 96/74, slow 97/NaN
    pytest.param(c.PLX_CONTINUOUS_MEASUREMENT, "03 61 00 48 00 60 00 4A 00 61 00 FF 07",
                 spo2({"spo2": 97.0, "pulse_rate": 72.0},
                      extras={"spo2_fast": 96.0, "pulse_rate_fast": 74.0, "spo2_slow": 97.0}),
                 id="H-plx-continuous-fast-slow"),
    # --- PLX Features 0x2A60 -----------------------------------------------------------------
    pytest.param(c.PLX_FEATURES, "03 00 E0 FF FF FF 00",
                 PlxFeatures(raw=3, features=("measurement_status", "device_sensor_status"),
                             measurement_status_support=0xFFE0,
                             device_sensor_status_support=0xFFFF),
                 id="H-plx-features-with-supports"),
    pytest.param(c.PLX_FEATURES, "4C 00",
                 PlxFeatures(raw=0x4C, features=("spot_check_storage", "spot_check_timestamp",
                                                 "pulse_amplitude_index")),
                 id="H-plx-features-plain"),
    # --- Temperature Measurement 0x2A1C ------------------------------------------------------
    pytest.param(c.TEMPERATURE_MEASUREMENT, "00 6F 01 00 FF", temp(36.7), id="V11-htm-celsius"),
    # NORDIC: 37.60 degC (FE000EB0), 2012-12-05 11:50:27, finger
    pytest.param(c.TEMPERATURE_MEASUREMENT, "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04",
                 temp(37.6, taken_at=datetime(2012, 12, 5, 11, 50, 27), temperature_site="finger"),
                 id="NORDIC-htm-time-finger"),
    # H: 98.6 degF (FF0003DA) = 37.0 degC
    pytest.param(c.TEMPERATURE_MEASUREMENT, "01 DA 03 00 FF", temp(37.0),
                 id="H-htm-fahrenheit"),
    # H: reserved temperature type 0 -> site unknown, reading kept
    pytest.param(c.TEMPERATURE_MEASUREMENT, "04 6F 01 00 FF 00", temp(36.7),
                 id="H-htm-reserved-site"),
    # --- Temperature Type 0x2A1D -------------------------------------------------------------
    pytest.param(c.TEMPERATURE_TYPE, "06", TemperatureType(code=6, site="mouth"),
                 id="H-temperature-type-mouth"),
    pytest.param(c.TEMPERATURE_TYPE, "0A", TemperatureType(code=10, site=None),
                 id="H-temperature-type-reserved"),
    # --- Weight Measurement 0x2A9D -----------------------------------------------------------
    pytest.param(c.WEIGHT_MEASUREMENT, "00 9A 38", weight(72.45), id="V14-wsm-si"),
    pytest.param(c.WEIGHT_MEASUREMENT, "08 9A 38 EF 00 CC 06",
                 weight(72.45, extras={"bmi": 23.9, "height_m": 1.74}), id="V16-wsm-si-bmi-height"),
    # H: imperial 160.00 lb (3E80) = 72.575 kg; BMI 23.9; height 69.6 in (02B8) = 1.768 m
    pytest.param(c.WEIGHT_MEASUREMENT, "09 80 3E EF 00 B8 02",
                 weight(72.575, extras={"bmi": 23.9, "height_m": 1.768}),
                 id="H-wsm-imperial-bmi-height"),
    # H: time T and user 1
    pytest.param(c.WEIGHT_MEASUREMENT, "06 9A 38 E8 07 03 0F 08 1E 05 01",
                 weight(72.45, taken_at=T, user_id=1), id="H-wsm-time-user"),
    # --- Weight Scale Feature 0x2A9E ---------------------------------------------------------
    # H: time stamp, multiple users, BMI; weight res 4 (0.05 kg); height res 3 (0.001 m)
    pytest.param(c.WEIGHT_SCALE_FEATURE, "A7 01 00 00",
                 WeightScaleFeature(raw=0x1A7, features=("time_stamp", "multiple_users", "bmi"),
                                    weight_resolution_kg=0.05, weight_resolution_lb=0.1,
                                    height_resolution_m=0.001, height_resolution_in=0.1),
                 id="H-wsf-resolutions"),
    pytest.param(c.WEIGHT_SCALE_FEATURE, "00 00 00 00",
                 WeightScaleFeature(raw=0, features=()), id="H-wsf-unspecified"),
    # --- Glucose Measurement 0x2A18 ----------------------------------------------------------
    # H: seq 1, T, offset 0, 99 mg/dL (0.00099 kg/L = B063) capillary whole blood / finger
    pytest.param(c.GLUCOSE_MEASUREMENT, "03 01 00 E8 07 03 0F 08 1E 05 00 00 63 B0 11",
                 glucose(5.5, taken_at=T, sequence_number=1, sample_type="capillary_whole_blood",
                         sample_location="finger"),
                 id="H-glucose-kg-per-l"),
    # H: 0.0055 mol/L (C037) = 5.5 mmol/L, venous plasma (4) / earlobe (3)
    pytest.param(c.GLUCOSE_MEASUREMENT, "06 02 00 E8 07 03 0F 08 1E 05 37 C0 34",
                 glucose(5.5, taken_at=T, sequence_number=2, sample_type="venous_plasma",
                         sample_location="earlobe"),
                 id="H-glucose-mol-per-l"),
    # H: time offset -5 min (FBFF) -> 08:25:05
    pytest.param(c.GLUCOSE_MEASUREMENT, "03 03 00 E8 07 03 0F 08 1E 05 FB FF 63 B0 11",
                 glucose(5.5, taken_at=datetime(2024, 3, 15, 8, 25, 5), sequence_number=3,
                         sample_type="capillary_whole_blood", sample_location="finger"),
                 id="H-glucose-time-offset"),
    # H: sensor status 0x0021 = battery low + result above device range; context follows
    pytest.param(c.GLUCOSE_MEASUREMENT, "1A 05 00 E8 07 03 0F 08 1E 05 63 B0 11 21 00",
                 glucose(5.5, taken_at=T, sequence_number=5, sensor_status=0x21,
                         sample_type="capillary_whole_blood", sample_location="finger",
                         flags=("battery_low", "result_above_device_range", "context_follows")),
                 id="H-glucose-sensor-status"),
    # H: base time unknown (year 0)
    pytest.param(c.GLUCOSE_MEASUREMENT, "02 07 00 00 00 00 00 00 00 00 63 B0 F1",
                 glucose(5.5, sequence_number=7, sample_type="capillary_whole_blood",
                         sample_location="not_available", flags=("device_time_unknown",)),
                 id="H-glucose-time-unknown"),
    # H: control solution (type 10) -> not a Measurement
    pytest.param(c.GLUCOSE_MEASUREMENT, "02 04 00 E8 07 03 0F 08 1E 05 63 B0 1A",
                 ControlSolution(sequence_number=4, blood_glucose=5.5, taken_at=T),
                 id="H-glucose-control-solution-type"),
    # H: control solution (location 4) with a NaN concentration
    pytest.param(c.GLUCOSE_MEASUREMENT, "02 06 00 E8 07 03 0F 08 1E 05 FF 07 41",
                 ControlSolution(sequence_number=6, blood_glucose=None, taken_at=T),
                 id="H-glucose-control-solution-location"),
    # --- Glucose Measurement Context 0x2A34 --------------------------------------------------
    pytest.param(c.GLUCOSE_MEASUREMENT_CONTEXT, "00 01 00", GlucoseContext(sequence_number=1),
                 id="H-glucose-context-empty"),
    # H: carbohydrate breakfast 50; meal preprandial; tester HCP / health minor (0x12); HbA1c 5.8
    pytest.param(c.GLUCOSE_MEASUREMENT_CONTEXT, "47 02 00 01 32 00 01 12 3A F0",
                 GlucoseContext(sequence_number=2, carbohydrate_id=1, carbohydrate=50.0,
                                meal="preprandial", tester="health_care_professional",
                                health="minor_health_issues", hba1c_percent=5.8),
                 id="H-glucose-context-carb-meal-tester-hba1c"),
    # H: extended flags; exercise overrun (FFFF) at 80 %; long-acting insulin 0.010 L (D00A)
    pytest.param(c.GLUCOSE_MEASUREMENT_CONTEXT, "B8 03 00 00 FF FF 50 04 0A D0",
                 GlucoseContext(sequence_number=3, extended_flags=0, exercise_duration_s=None,
                                exercise_intensity_percent=80, medication_id=4, medication=0.01,
                                medication_unit="L"),
                 id="H-glucose-context-exercise-medication"),
    # --- Record Access Control Point 0x2A52 --------------------------------------------------
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "05 00 0A 00", RacpNumberOfRecords(count=10),
                 id="V20-racp-number-of-records"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "06 00 01 01",
                 RacpResponse(request_op_code=1, response_code=1, response_name="success"),
                 id="V21-racp-response-success"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "06 00 01 06",
                 RacpResponse(request_op_code=1, response_code=6,
                              response_name="no_records_found"),
                 id="V22-racp-response-no-records"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 01",
                 RacpRequest(op_code=1, op_name="report_stored_records", operator=1,
                             operator_name="all_records"),
                 id="V23-racp-report-all"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "04 01",
                 RacpRequest(op_code=4, op_name="report_number_of_stored_records", operator=1,
                             operator_name="all_records"),
                 id="V23-racp-count-all"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 03 01 05 00",
                 RacpRequest(op_code=1, op_name="report_stored_records", operator=3,
                             operator_name="greater_than_or_equal_to", filter_type=1,
                             operand=(5,)),
                 id="V23-racp-report-seq-ge-5"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "03 00",
                 RacpRequest(op_code=3, op_name="abort_operation", operator=0,
                             operator_name="null"),
                 id="V23-racp-abort"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 04 01 05 00 09 00",
                 RacpRequest(op_code=1, op_name="report_stored_records", operator=4,
                             operator_name="within_range", filter_type=1, operand=(5, 9)),
                 id="H-racp-report-seq-range"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "04 02 02 E8 07 03 0F 08 1E 05",
                 RacpRequest(op_code=4, op_name="report_number_of_stored_records", operator=2,
                             operator_name="less_than_or_equal_to", filter_type=2, operand=(T,)),
                 id="H-racp-count-time-le"),
    # --- Current Time 0x2A2B / Date Time 0x2A08 ----------------------------------------------
    pytest.param(c.CURRENT_TIME, "E8 07 03 0F 08 1E 05 05 00 01",
                 CurrentTime(value=T, day_of_week=5, fractions256=0, adjust_reason=1,
                             adjust_reasons=("manual_time_update",)),
                 id="V19-current-time-friday-manual"),
    pytest.param(c.CURRENT_TIME, "E8 07 03 0F 08 1E 05 05 80 0C",
                 CurrentTime(value=T.replace(microsecond=500000), day_of_week=5,
                             fractions256=128, adjust_reason=0x0C,
                             adjust_reasons=("time_zone_change", "dst_change")),
                 id="H-current-time-fraction-dst"),
    pytest.param(c.DATE_TIME, "E8 07 03 0F 08 1E 05", DateTimeValue(value=T), id="V24-date-time"),
    pytest.param(c.DATE_TIME, "00 00 00 00 00 00 00",
                 DateTimeValue(value=None, flags=("device_time_unknown",)),
                 id="M17-date-time-all-unknown"),
    pytest.param(c.DATE_TIME, "E8 07 02 1E 08 1E 05",
                 DateTimeValue(value=None, flags=("device_time_invalid",)),
                 id="H-date-time-30-february"),
    # --- Battery Level 0x2A19 ----------------------------------------------------------------
    pytest.param(c.BATTERY_LEVEL, "55", BatteryLevel(percent=85), id="V25-battery-85"),
    pytest.param(c.BATTERY_LEVEL, "64", BatteryLevel(percent=100), id="H-battery-100"),
    # --- Device Information ------------------------------------------------------------------
    pytest.param(c.MANUFACTURER_NAME_STRING, b"OMRON HEALTHCARE".hex(),
                 DeviceInfoString(c.MANUFACTURER_NAME_STRING, "manufacturer_name",
                                  "OMRON HEALTHCARE"), id="H-dis-manufacturer"),
    pytest.param(c.MODEL_NUMBER_STRING, b"HEM-7600T\x00\x00".hex(),
                 DeviceInfoString(c.MODEL_NUMBER_STRING, "model_number", "HEM-7600T"),
                 id="H-dis-model-nul-padded"),
    pytest.param(c.SERIAL_NUMBER_STRING, "", DeviceInfoString(c.SERIAL_NUMBER_STRING,
                                                              "serial_number", ""),
                 id="H-dis-serial-empty"),
    pytest.param(c.HARDWARE_REVISION_STRING, b"1.0".hex(),
                 DeviceInfoString(c.HARDWARE_REVISION_STRING, "hardware_revision", "1.0"),
                 id="H-dis-hardware"),
    pytest.param(c.FIRMWARE_REVISION_STRING, "322e312e33c3a9",  # "2.1.3é" in UTF-8
                 DeviceInfoString(c.FIRMWARE_REVISION_STRING, "firmware_revision", "2.1.3é"),
                 id="H-dis-firmware-utf8"),
    pytest.param(c.SOFTWARE_REVISION_STRING, b"sw 7".hex(),
                 DeviceInfoString(c.SOFTWARE_REVISION_STRING, "software_revision", "sw 7"),
                 id="H-dis-software"),
    pytest.param(c.SYSTEM_ID, "01 02 03 04 05 06 07 08",
                 SystemId(manufacturer_identifier=0x0504030201,
                          organizationally_unique_identifier=0x080706),
                 id="H-dis-system-id"),
    pytest.param(c.PNP_ID, "01 0D 00 34 12 00 01",
                 PnpId(vendor_id_source="bluetooth_sig", vendor_id=0x000D, product_id=0x1234,
                       product_version=0x0100),
                 id="H-dis-pnp-id"),
]

CORRUPT = [
    # --- 0x2A35 --------------------------------------------------------------------------------
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 FE 07 64 00 FF 07", "systolic is positive-inf",
                 id="M3-bpm-systolic-inf"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 78 00 50 00 5D", "6 bytes, need at least 7",
                 id="M4-bpm-6-bytes"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "01 02 03 04 05 06", "need at least 7",
                 id="NORDIC-bpm-too-short"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "03 02 03 04 05 06 07", "promise 14 bytes",
                 id="NORDIC-bpm-flags-promise-time-stamp"),
    # NORDIC minimal: 18.9/11/15.9 flagged as mmHg -- kPa numbers sent as mmHg
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 BD F0 0B 00 9F F0", "outside plausible",
                 id="NORDIC-bpm-kpa-numbers-as-mmhg-implausible"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 78 00 FF 07 5D 00", "diastolic is not-a-number",
                 id="H-bpm-diastolic-nan"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 50 00 78 00 5D 00", "below systolic",
                 id="H-bpm-diastolic-above-systolic"),
    # 120 mmHg encoded with a biased exponent (78 80), as bluetooth-sig's tests do
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "00 78 80 50 80 5D 80", "outside plausible",
                 id="H-bpm-biased-exponent-encoding"),
    pytest.param(c.BLOOD_PRESSURE_MEASUREMENT, "14 78 00 50 00 5D 00 48", "promise 11 bytes",
                 id="H-bpm-status-flag-without-status"),
    # --- 0x2A36 --------------------------------------------------------------------------------
    pytest.param(c.INTERMEDIATE_CUFF_PRESSURE, "00 64 00 FF 07 FF", "need at least 7",
                 id="H-icp-truncated"),
    pytest.param(c.INTERMEDIATE_CUFF_PRESSURE, "00 FF 07 FF 07 FF 07", "cuff pressure is not-a",
                 id="H-icp-nan"),
    pytest.param(c.INTERMEDIATE_CUFF_PRESSURE, "00 90 01 FF 07 FF 07", "outside plausible",
                 id="H-icp-400-mmhg"),
    pytest.param(c.INTERMEDIATE_CUFF_PRESSURE, "02 64 00 FF 07 FF 07 E8 07", "promise 14",
                 id="H-icp-flags-promise-time"),
    # --- 0x2A49 --------------------------------------------------------------------------------
    pytest.param(c.BLOOD_PRESSURE_FEATURE, "05", "need at least 2", id="H-bp-feature-1-byte"),
    # --- 0x2A5E --------------------------------------------------------------------------------
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "02 01 08 FF 07 00 20", "measurement unavailable",
                 id="M9-plx-spo2-rfu-pr-nan-status-unavailable"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "00 61 00 48", "need at least 5",
                 id="H-plx-spot-truncated"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "01 61 00 48 00", "promise 12 bytes",
                 id="H-plx-spot-flags-promise-time"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "00 FF 07 48 00", "SpO2 is not-a-number",
                 id="H-plx-spot-spo2-nan"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "00 65 00 48 00", "outside plausible",
                 id="H-plx-spot-spo2-101"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "00 61 80 48 00", "outside plausible",
                 id="H-plx-spot-biased-exponent-encoding"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "02 61 00 48 00 20 00", "measurement ongoing",
                 id="H-plx-spot-status-ongoing"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "02 61 00 48 00 00 04", "demonstration",
                 id="H-plx-spot-status-demo"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "02 61 00 48 00 00 08", "testing",
                 id="H-plx-spot-status-test"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "02 61 00 48 00 00 40", "questionable",
                 id="H-plx-spot-status-questionable"),
    pytest.param(c.PLX_SPOT_CHECK_MEASUREMENT, "02 61 00 48 00 00 80", "invalid measurement",
                 id="H-plx-spot-status-invalid"),
    # --- 0x2A5F --------------------------------------------------------------------------------
    pytest.param(c.PLX_CONTINUOUS_MEASUREMENT, "1C 61 00 48 00 00 00 00 00 00 34",
                 "promise 12 bytes", id="H-plx-continuous-truncated-pai"),
    pytest.param(c.PLX_CONTINUOUS_MEASUREMENT, "04 61 00 48 00 00 A0", "measurement unavailable",
                 id="H-plx-continuous-status-unavailable-invalid"),
    pytest.param(c.PLX_CONTINUOUS_MEASUREMENT, "00 02 08 48 00", "SpO2 is negative-infinity",
                 id="H-plx-continuous-spo2-minus-inf"),
    # --- 0x2A60 --------------------------------------------------------------------------------
    pytest.param(c.PLX_FEATURES, "03 00 E0 FF", "promise 7 bytes",
                 id="H-plx-features-promise-dss-support"),
    pytest.param(c.PLX_FEATURES, "01", "need at least 2", id="H-plx-features-1-byte"),
    # --- 0x2A1C --------------------------------------------------------------------------------
    pytest.param(c.TEMPERATURE_MEASUREMENT, "00 FE FF 7F 00", "positive-infinity",
                 id="M11-htm-float-inf"),
    pytest.param(c.TEMPERATURE_MEASUREMENT, "00 6F 01 00", "need at least 5",
                 id="M12-htm-float-3-bytes"),
    pytest.param(c.TEMPERATURE_MEASUREMENT, "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B",
                 "promise 13 bytes", id="NORDIC-htm-type-missing"),
    pytest.param(c.TEMPERATURE_MEASUREMENT, "00 DA 03 00 FF", "outside plausible",
                 id="H-htm-fahrenheit-number-sent-as-celsius"),
    pytest.param(c.TEMPERATURE_MEASUREMENT, "00 6F 01 00 7F", "outside plausible",
                 id="H-htm-biased-exponent-encoding"),
    pytest.param(c.TEMPERATURE_MEASUREMENT, "00 FF FF 7F 00", "not-a-number", id="H-htm-nan"),
    # --- 0x2A1D --------------------------------------------------------------------------------
    pytest.param(c.TEMPERATURE_TYPE, "", "need at least 1", id="H-temperature-type-empty"),
    # --- 0x2A9D --------------------------------------------------------------------------------
    pytest.param(c.WEIGHT_MEASUREMENT, "00 FF FF", "measurement unsuccessful",
                 id="M13-wsm-ffff-unsuccessful"),
    pytest.param(c.WEIGHT_MEASUREMENT, "00 9A", "need at least 3", id="H-wsm-truncated"),
    pytest.param(c.WEIGHT_MEASUREMENT, "08 9A 38", "promise 7 bytes",
                 id="H-wsm-flags-promise-bmi"),
    pytest.param(c.WEIGHT_MEASUREMENT, "00 01 00", "outside plausible", id="H-wsm-5-grams"),
    # --- 0x2A9E --------------------------------------------------------------------------------
    pytest.param(c.WEIGHT_SCALE_FEATURE, "A7 01 00", "need at least 4", id="H-wsf-truncated"),
    # --- 0x2A18 --------------------------------------------------------------------------------
    # NORDIC valid-format vector with "30.0 kg/L" (3,000,000 mg/dL): implausible
    pytest.param(c.GLUCOSE_MEASUREMENT, "1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01",
                 "outside plausible", id="NORDIC-glucose-30-kg-per-l-implausible"),
    pytest.param(c.GLUCOSE_MEASUREMENT, "1B 00 00 E2 07 04 1A 0B 09 1E 1E 00 12 05 01",
                 "promise 17 bytes", id="NORDIC-glucose-time-offset-missing"),
    pytest.param(c.GLUCOSE_MEASUREMENT, "03 01 00 E8", "need at least 10",
                 id="H-glucose-truncated"),
    pytest.param(c.GLUCOSE_MEASUREMENT, "00 01 00 E8 07 03 0F 08 1E 05", "no concentration",
                 id="H-glucose-no-concentration"),
    pytest.param(c.GLUCOSE_MEASUREMENT, "02 01 00 E8 07 03 0F 08 1E 05 FF 07 11", "not-a-number",
                 id="H-glucose-nan"),
    # 99 mg/dL sent in the mol/L unit: 99 mol/L
    pytest.param(c.GLUCOSE_MEASUREMENT, "06 01 00 E8 07 03 0F 08 1E 05 63 00 11",
                 "outside plausible", id="H-glucose-unit-mixup"),
    # --- 0x2A34 --------------------------------------------------------------------------------
    pytest.param(c.GLUCOSE_MEASUREMENT_CONTEXT, "47 02 00 01 32", "promise 10 bytes",
                 id="H-glucose-context-truncated"),
    pytest.param(c.GLUCOSE_MEASUREMENT_CONTEXT, "01", "need at least 3",
                 id="H-glucose-context-1-byte"),
    # --- 0x2A52 --------------------------------------------------------------------------------
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01", "need at least 2", id="H-racp-1-byte"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 03 01 05", "needs 5 bytes",
                 id="H-racp-operand-truncated"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 03", "need at least 3",
                 id="H-racp-filter-missing"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "03 01", "not valid with abort",
                 id="H-racp-abort-with-operator"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 00", "not valid with report",
                 id="H-racp-report-with-null-operator"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "09 00", "reserved op code",
                 id="H-racp-reserved-op"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 07", "reserved operator",
                 id="H-racp-reserved-operator"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 03 05 05 00", "unsupported filter type",
                 id="H-racp-unknown-filter-type"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "01 04 01 09 00 05 00", "is empty",
                 id="H-racp-empty-range"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "05 00 0A", "need at least 4",
                 id="H-racp-count-truncated"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "06 00 01", "need at least 4",
                 id="H-racp-response-truncated"),
    pytest.param(c.RECORD_ACCESS_CONTROL_POINT, "06 00 01 0B", "reserved response code",
                 id="H-racp-reserved-response"),
    # --- 0x2A2B / 0x2A08 -----------------------------------------------------------------------
    pytest.param(c.CURRENT_TIME, "E8 07 03 0F 08 1E 05 05 00", "need at least 10",
                 id="H-current-time-9-bytes"),
    pytest.param(c.CURRENT_TIME, "E8 07 03 0F 08 1E 05 08 00 01", "day of week 8",
                 id="H-current-time-day-of-week-8"),
    pytest.param(c.DATE_TIME, "E8 07 03 0F 08 1E", "need at least 7", id="H-date-time-6-bytes"),
    # --- 0x2A19 --------------------------------------------------------------------------------
    pytest.param(c.BATTERY_LEVEL, "65", "reserved", id="V25-battery-101-reserved"),
    pytest.param(c.BATTERY_LEVEL, "", "need at least 1", id="H-battery-empty"),
    # --- Device Information --------------------------------------------------------------------
    pytest.param(c.MANUFACTURER_NAME_STRING, "FF FE 41", "not UTF-8", id="H-dis-manufacturer-bad"),
    pytest.param(c.MODEL_NUMBER_STRING, "C3", "not UTF-8", id="H-dis-model-cut-utf8"),
    pytest.param(c.SERIAL_NUMBER_STRING, "41" * 513, "at most 512", id="H-dis-serial-too-long"),
    pytest.param(c.HARDWARE_REVISION_STRING, "80", "not UTF-8", id="H-dis-hardware-bad"),
    pytest.param(c.FIRMWARE_REVISION_STRING, "ED A0 80", "not UTF-8",
                 id="H-dis-firmware-surrogate"),
    pytest.param(c.SOFTWARE_REVISION_STRING, "F8 88 80 80 80", "not UTF-8",
                 id="H-dis-software-5-byte-sequence"),
    pytest.param(c.SYSTEM_ID, "01 02 03 04 05 06 07", "need at least 8",
                 id="H-dis-system-id-7-bytes"),
    pytest.param(c.PNP_ID, "01 0D 00 34 12 00", "need at least 7", id="H-dis-pnp-id-6-bytes"),
    pytest.param(c.PNP_ID, "00 0D 00 34 12 00 01", "reserved vendor ID source",
                 id="H-dis-pnp-id-source-0"),
]


@pytest.mark.hazard("H-004")
@pytest.mark.parametrize(("characteristic", "hex_bytes", "expected"), VALID)
def test_valid_vectors_decode_to_the_whole_expected_object(
    characteristic: int, hex_bytes: str, expected: object
) -> None:
    data = bytes.fromhex(hex_bytes)
    assert decode(characteristic, data) == expected
    # bleak hands over a bytearray; a memoryview works too
    assert decode(characteristic, bytearray(data)) == expected
    assert decode(characteristic, memoryview(data)) == expected


@pytest.mark.hazard("H-004", "H-006")
@pytest.mark.parametrize(("characteristic", "hex_bytes", "reason"), CORRUPT)
def test_corrupt_vectors_are_rejected_with_a_reason(
    characteristic: int, hex_bytes: str, reason: str
) -> None:
    with pytest.raises(GattParseError, match=reason) as excinfo:
        decode(characteristic, bytes.fromhex(hex_bytes))
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.reason == str(excinfo.value)


def _characteristics(cases: list[Any]) -> set[int]:
    return {case.values[0] for case in cases}


def test_every_supported_characteristic_has_a_valid_and_a_corrupt_case() -> None:
    assert _characteristics(CORRUPT) >= SUPPORTED_CHARACTERISTICS, sorted(
        hex(u) for u in SUPPORTED_CHARACTERISTICS - _characteristics(CORRUPT))
    assert _characteristics(VALID) >= SUPPORTED_CHARACTERISTICS, sorted(
        hex(u) for u in SUPPORTED_CHARACTERISTICS - _characteristics(VALID))


def test_every_reference_vector_is_in_the_tables() -> None:
    """ble-gatt.md section 3 lists V1, V3-V8, V11, V14, V16, V19-V25, M2-M4, M7, M9, M11-M13, M15,
    M17; each must appear in a test id."""
    ids = " ".join(str(case.id) for case in [*VALID, *CORRUPT])
    wanted = [f"V{n}-" for n in (1, 3, 4, 5, 6, 7, 8, 11, 14, 16, 19, 20, 21, 22, 23, 24, 25)]
    wanted += [f"M{n}-" for n in (2, 3, 4, 7, 9, 11, 12, 13, 15, 17)]
    assert [w for w in wanted if w not in ids] == []


def test_unsupported_characteristic_is_a_parse_error() -> None:
    with pytest.raises(GattParseError, match="unsupported characteristic 0x2A37"):
        decode(0x2A37, b"\x00\x48")


def test_intermediate_cuff_pressure_is_never_a_measurement() -> None:
    result = decode(c.INTERMEDIATE_CUFF_PRESSURE, bytes.fromhex("00 78 00 50 00 5D 00"))
    assert not isinstance(result, Measurement)


def test_measurements_are_frozen() -> None:
    result = decode(c.BLOOD_PRESSURE_MEASUREMENT, bytes.fromhex("00 78 00 50 00 5D 00"))
    with pytest.raises(AttributeError):
        result.kind = Kind.SPO2  # type: ignore[misc,union-attr]
