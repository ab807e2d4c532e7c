"""IEEE 11073-20601 SFLOAT/FLOAT against the worked examples of ble-gatt.md section 2.

The expected numbers come from the reference (HL7 PHD IG FLOATS.md examples,
re-derived there), never from an encoder of ours.
"""

from __future__ import annotations

import pytest

from edge.gatt import SpecialValue, decode_float, decode_sfloat
from edge.gatt.ieee11073 import SFLOAT_SPECIAL, SFLOAT_VALUES, sfloat_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(0x0002, 2.0, id="0x0002=2"),
        pytest.param(0xF014, 2.0, id="0xF014=2.0"),
        pytest.param(0xE0C8, 2.0, id="0xE0C8=2.00"),
        pytest.param(0x1002, 20.0, id="0x1002=20"),
        pytest.param(0x2002, 200.0, id="0x2002=200"),
        pytest.param(0x04D2, 1234.0, id="0x04D2=1234"),
        pytest.param(0x0B2E, -1234.0, id="0x0B2E=-1234"),
        pytest.param(0xF16F, 36.7, id="0xF16F=36.7"),  # bytes 6F F1
        pytest.param(0x0078, 120.0, id="0x0078=120 (V1 systolic)"),
        # exponent -8, mantissa 2047: an ordinary number, not NaN (exponent is two's complement)
        pytest.param(0x87FF, 2047e-8, id="0x87FF=2047e-8 not NaN"),
        pytest.param(0x7001, 1e7, id="0x7001=1e7 (largest exponent)"),
        pytest.param(0x8001, 1e-8, id="0x8001=1e-8 (smallest exponent)"),
    ],
)
def test_sfloat_worked_examples(raw: int, expected: float) -> None:
    assert decode_sfloat(raw) == expected
    assert SFLOAT_VALUES[raw] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(0xFF000014, 2.0, id="0xFF000014=2.0"),
        pytest.param(0x00FFFB2E, -1234.0, id="0x00FFFB2E=-1234"),
        pytest.param(0xFF00016F, 36.7, id="0xFF00016F=36.7"),  # bytes 6F 01 00 FF (V11)
        pytest.param(0x7F000001, 1e127, id="exponent +127"),
        # 10**128 is not exact in binary: one ulp of slack at the extreme exponent
        pytest.param(0x80000001, pytest.approx(1e-128, rel=1e-15), id="exponent -128"),
    ],
)
def test_float_worked_examples(raw: int, expected: object) -> None:
    assert decode_float(raw) == expected


@pytest.mark.parametrize(
    ("raw_sfloat", "raw_float", "special", "data_absent_reason"),
    [
        (0x07FF, 0x007FFFFF, SpecialValue.NAN, "not-a-number"),
        (0x0800, 0x00800000, SpecialValue.NRES, "error"),
        (0x07FE, 0x007FFFFE, SpecialValue.POSITIVE_INFINITY, "positive-infinity"),
        (0x0802, 0x00800002, SpecialValue.NEGATIVE_INFINITY, "negative-infinity"),
        (0x0801, 0x00800001, SpecialValue.RESERVED, "error"),
    ],
    ids=["NaN", "NRes", "+INF", "-INF", "reserved"],
)
def test_special_values_give_no_number_and_the_reason(
    raw_sfloat: int, raw_float: int, special: SpecialValue, data_absent_reason: str
) -> None:
    assert decode_sfloat(raw_sfloat) is special
    assert decode_float(raw_float) is special
    assert SFLOAT_VALUES[raw_sfloat] is None
    assert special.data_absent_reason == data_absent_reason


def test_the_sfloat_table_matches_the_arithmetic_for_every_raw_value() -> None:
    for raw in range(0x10000):
        expected = None if raw in SFLOAT_SPECIAL else sfloat_number(raw)
        assert SFLOAT_VALUES[raw] == expected, hex(raw)


@pytest.mark.hazard("H-004")
def test_a_biased_exponent_decoder_would_fail_here() -> None:
    """bluetooth-sig 0.6.0 subtracts a bias of 8: 0x0078 would become 1.2e-06 (ble-gatt.md 2)."""
    assert decode_sfloat(0x0078) == 120.0
    assert decode_sfloat(0x8078) == pytest.approx(1.2e-6)  # what the biased form means here
