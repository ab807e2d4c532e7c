"""What the edge writes to devices (RACP requests, Current Time) and the unit conversions.

Expected bytes are the reference vectors (ble-gatt.md V19, V23), not our decoder.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.gatt import (
    CurrentTime,
    GattParseError,
    abort_operation,
    decode,
    encode_current_time,
    encode_date_time,
    report_all_records,
    report_last_record,
    report_number_of_records,
    report_number_of_records_from,
    report_records_from,
)
from edge.gatt import const as c
from edge.gatt.const import uuid16, uuid128
from edge.gatt.fields import check_plausible
from edge.gatt.units import (
    fahrenheit_to_celsius,
    kg_per_l_to_mmol_per_l,
    kpa_to_mmhg,
    lb_to_kg,
    mg_dl_to_mmol_per_l,
    mol_per_l_to_mmol_per_l,
)
from homeward.kinds import METRICS, Kind, check_values


@pytest.mark.parametrize(
    ("built", "expected_hex"),
    [
        pytest.param(report_all_records(), "01 01", id="V23-report-all"),
        pytest.param(report_number_of_records(), "04 01", id="V23-count-all"),
        pytest.param(report_records_from(5), "01 03 01 05 00", id="V23-report-seq-ge-5"),
        pytest.param(abort_operation(), "03 00", id="V23-abort"),
        pytest.param(report_records_from(0x1234), "01 03 01 34 12", id="report-seq-ge-0x1234"),
        pytest.param(report_number_of_records_from(7), "04 03 01 07 00", id="count-seq-ge-7"),
        pytest.param(report_last_record(), "01 06", id="report-last"),
    ],
)
def test_racp_builders_write_the_reference_bytes(built: bytes, expected_hex: str) -> None:
    assert built == bytes.fromhex(expected_hex)
    decode(c.RECORD_ACCESS_CONTROL_POINT, built)  # and they are valid requests


@pytest.mark.parametrize("bad", [-1, 0x10000])
def test_racp_builders_refuse_a_sequence_number_that_is_not_uint16(bad: int) -> None:
    with pytest.raises(ValueError, match="uint16"):
        report_records_from(bad)


def test_current_time_encoder_writes_v19() -> None:
    # V19: 2024-03-15 08:30:05, Friday, fractions 0, adjust reason manual
    assert encode_current_time(datetime(2024, 3, 15, 8, 30, 5)) == bytes.fromhex(
        "E8 07 03 0F 08 1E 05 05 00 01")


def test_current_time_encoder_fractions_and_reason() -> None:
    # 0.5 s = 128/256; Sunday 2024-03-17 = 7; external reference + DST change = 0x0A
    assert encode_current_time(datetime(2024, 3, 17, 23, 59, 59, 500000), 0x0A) == bytes.fromhex(
        "E8 07 03 11 17 3B 3B 07 80 0A")


def test_date_time_encoder_writes_v24() -> None:
    assert encode_date_time(datetime(2024, 3, 15, 8, 30, 5)) == bytes.fromhex(
        "E8 07 03 0F 08 1E 05")


@pytest.mark.parametrize(
    ("value", "reason", "match"),
    [
        (datetime(2024, 3, 15, 8, 30, 5, tzinfo=UTC), 1, "naive"),
        (datetime(1500, 1, 1), 1, "year 1500"),
        (datetime(2024, 3, 15), 0x10, "reserved bits"),
    ],
)
def test_current_time_encoder_refuses_what_the_device_cannot_hold(
    value: datetime, reason: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        encode_current_time(value, reason)


@given(st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)))
@settings(max_examples=200, deadline=None)
def test_current_time_written_is_read_back_to_the_1_256_second(value: datetime) -> None:
    decoded = decode(c.CURRENT_TIME, encode_current_time(value))
    assert isinstance(decoded, CurrentTime)
    assert decoded.value is not None
    assert abs((decoded.value - value).total_seconds()) < 1 / 256
    assert decoded.day_of_week == value.isoweekday()


@pytest.mark.parametrize(
    ("convert", "value", "expected"),
    [
        pytest.param(kpa_to_mmhg, 16.0, 120.0, id="16.0 kPa=120.0 mmHg (V3)"),
        pytest.param(kpa_to_mmhg, 10.7, 80.3, id="10.7 kPa=80.3 mmHg (V3)"),
        pytest.param(kpa_to_mmhg, 13.3322, 100.0, id="13.3322 kPa=100 mmHg"),
        pytest.param(fahrenheit_to_celsius, 98.6, 37.0, id="98.6 F=37.0 C"),
        pytest.param(fahrenheit_to_celsius, 104.0, 40.0, id="104 F=40 C"),
        pytest.param(lb_to_kg, 100.0, 45.359, id="100 lb=45.359 kg"),
        pytest.param(mg_dl_to_mmol_per_l, 180.156, 10.0, id="180.156 mg/dL=10 mmol/L"),
        pytest.param(mg_dl_to_mmol_per_l, 99.0, 5.5, id="99 mg/dL=5.50 mmol/L"),
        pytest.param(kg_per_l_to_mmol_per_l, 0.00099, 5.5, id="0.00099 kg/L=99 mg/dL=5.50"),
        pytest.param(mol_per_l_to_mmol_per_l, 0.0055, 5.5, id="0.0055 mol/L=5.5 mmol/L"),
    ],
)
def test_unit_conversions(convert: object, value: float, expected: float) -> None:
    assert convert(value) == expected  # type: ignore[operator]


def test_uuid_forms() -> None:
    assert uuid128(c.BLOOD_PRESSURE_MEASUREMENT) == "00002a35-0000-1000-8000-00805f9b34fb"
    assert uuid16("00002A35-0000-1000-8000-00805F9B34FB") == 0x2A35
    assert uuid16("6e400001-b5a3-f393-e0a9-e50e24dcca9e") is None
    with pytest.raises(ValueError):
        uuid128(0x10000)


_PARSER_METRICS = {
    Kind.BLOOD_PRESSURE: ("systolic", "diastolic", "mean_arterial", "pulse_rate"),
    Kind.SPO2: ("spo2", "pulse_rate", "perfusion_index"),
    Kind.TEMPERATURE: ("body_temperature",),
    Kind.WEIGHT: ("body_weight",),
    Kind.GLUCOSE: ("blood_glucose",),
}


@st.composite
def _values_near_the_limits(draw: st.DrawFn) -> tuple[Kind, dict[str, float]]:
    kind = draw(st.sampled_from(sorted(_PARSER_METRICS)))
    limits = {m.name: m for m in METRICS[kind]}
    values = {}
    for name in _PARSER_METRICS[kind]:
        metric = limits[name]
        if metric.required or draw(st.booleans()):
            values[name] = draw(st.sampled_from([metric.minimum, metric.maximum])
                                | st.floats(metric.minimum - 10, metric.maximum + 10))
    return kind, values


@given(_values_near_the_limits())
@settings(max_examples=500, deadline=None)
def test_the_fast_plausibility_check_agrees_with_homeward_kinds(
    case: tuple[Kind, dict[str, float]]
) -> None:
    kind, values = case
    reason = check_values(kind, values)
    try:
        check_plausible(kind, values, "x")
    except GattParseError as err:
        assert reason is not None
        assert str(err) == f"x: {reason}"
    else:
        assert reason is None
