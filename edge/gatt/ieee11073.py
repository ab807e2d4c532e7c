"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) numbers.

Layout after little-endian assembly: SFLOAT = 4-bit exponent | 12-bit
mantissa, FLOAT = 8-bit exponent | 24-bit mantissa; value = mantissa x
10^exponent.  Both fields are TWO'S COMPLEMENT -- the exponent is *not*
biased (ble-gatt.md section 2; HL7 PHD IG FLOATS.md; the bluetooth-sig
package subtracts a bias of 8/128 and decodes 120 mmHg as 1.2e-06).

Special values exist only with exponent 0 and are checked before the
arithmetic: NaN, NRes (not at this resolution), +INF, -INF and one reserved
code.  A raw such as 0x87FF (exponent -8, mantissa 2047) is an ordinary number.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class SpecialValue(StrEnum):
    """An IEEE 11073 special value: the device sent no number, and why."""

    NAN = "not-a-number"
    NRES = "not-at-this-resolution"
    POSITIVE_INFINITY = "positive-infinity"
    NEGATIVE_INFINITY = "negative-infinity"
    RESERVED = "reserved"

    @property
    def data_absent_reason(self) -> str:
        """FHIR dataAbsentReason code per the HL7 PHD IG (NRes and reserved map to ``error``)."""
        return _DATA_ABSENT_REASON[self]


_DATA_ABSENT_REASON: Final = {
    SpecialValue.NAN: "not-a-number",
    SpecialValue.NRES: "error",
    SpecialValue.POSITIVE_INFINITY: "positive-infinity",
    SpecialValue.NEGATIVE_INFINITY: "negative-infinity",
    SpecialValue.RESERVED: "error",
}

#: raw SFLOAT -> special value (ble-gatt.md section 2 table).
SFLOAT_SPECIAL: Final[dict[int, SpecialValue]] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
#: raw FLOAT -> special value.
FLOAT_SPECIAL: Final[dict[int, SpecialValue]] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}


def _scales(bits: int) -> tuple[tuple[float, float], ...]:
    """(multiplier, divisor) per raw exponent field value, sign-extended.

    Negative exponents divide by an exact power of ten so that e.g. 367e-1
    gives the double nearest 36.7 (367 * 0.1 would give 36.7000...03).
    """
    half = 1 << (bits - 1)
    table = []
    for field in range(1 << bits):
        exponent = field - (1 << bits) if field >= half else field
        table.append((10.0**exponent, 1.0) if exponent >= 0 else (1.0, 10.0**-exponent))
    return tuple(table)


_SFLOAT_SCALE: Final = _scales(4)
_FLOAT_SCALE: Final = _scales(8)


def sfloat_number(raw: int) -> float:
    """The number in an SFLOAT that is known not to be a special value."""
    mantissa = raw & 0x0FFF
    if mantissa >= 0x0800:
        mantissa -= 0x1000
    mul, div = _SFLOAT_SCALE[raw >> 12]
    return mantissa * mul / div


def float_number(raw: int) -> float:
    """The number in a FLOAT that is known not to be a special value."""
    mantissa = raw & 0x00FFFFFF
    if mantissa >= 0x00800000:
        mantissa -= 0x01000000
    mul, div = _FLOAT_SCALE[raw >> 24]
    return mantissa * mul / div


def _sfloat_values() -> list[float | None]:
    values: list[float | None] = [sfloat_number(raw) for raw in range(0x10000)]
    for raw in SFLOAT_SPECIAL:
        values[raw] = None
    return values


#: Every SFLOAT decoded once (65,536 entries, ~2 MB, ~40 ms at import): ``None`` marks a
#: special value (look it up in SFLOAT_SPECIAL).  One list index replaces a dict lookup
#: and the arithmetic on the decode hot path.
SFLOAT_VALUES: Final[list[float | None]] = _sfloat_values()


def decode_sfloat(raw: int) -> float | SpecialValue:
    """SFLOAT (uint16 as read little-endian) to a number, or the special value it encodes."""
    special = SFLOAT_SPECIAL.get(raw)
    return special if special is not None else sfloat_number(raw & 0xFFFF)


def decode_float(raw: int) -> float | SpecialValue:
    """FLOAT (uint32 as read little-endian) to a number, or the special value it encodes."""
    special = FLOAT_SPECIAL.get(raw)
    return special if special is not None else float_number(raw & 0xFFFFFFFF)

