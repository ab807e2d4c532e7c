"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017).

Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2:
Standardising the assessment of acute-illness severity in the NHS*, updated
report of a working party, London: RCP, 2017 (ISBN 978-1-86016-682-2),
Chart 1 (the scoring bands) and Charts 2 and 4 (thresholds and clinical
response).  Transcribed in ../shared/reference/clinical.md section 4.1-4.2.

Chart precision: every band is in whole units except temperature (0.1 °C),
so values are rounded half-up to the chart's precision before banding
(e.g. respiratory rate 20.5 -> 21 -> 2 points; 38.04 °C -> 38.0 -> 0 points).

NEWS2 is for adults (>= 16 years), not for pregnancy, and is not validated
for self-measurement at home; a score missing parameters (home kits rarely
have respiratory rate or consciousness) is flagged ``partial`` and is not
NEWS2 proper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

#: Parameters of the chart, in chart order.
PARAMETERS = ("respiratory_rate", "spo2", "air_or_oxygen", "systolic", "pulse_rate",
              "consciousness", "temperature")

# Each table: (upper bound inclusive, points), in ascending order; the last
# bound is None (no upper limit).  RCP 2017 Chart 1.
_RESPIRATORY_RATE = ((8, 3), (11, 1), (20, 0), (24, 2), (None, 3))
_SPO2_SCALE_1 = ((91, 3), (93, 2), (95, 1), (None, 0))
_SPO2_SCALE_2_LOW = ((83, 3), (85, 2), (87, 1), (92, 0))   # up to 92 %, on air or oxygen
_SPO2_SCALE_2_ON_OXYGEN = ((94, 1), (96, 2), (None, 3))   # >= 93 % on oxygen
_SYSTOLIC = ((90, 3), (100, 2), (110, 1), (219, 0), (None, 3))
_PULSE = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (None, 3))
_TEMPERATURE = ((Decimal("35.0"), 3), (Decimal("36.0"), 1), (Decimal("38.0"), 0),
                (Decimal("39.0"), 1), (None, 2))   # the highest band scores 2, not 3
_CONSCIOUSNESS = {"A": 0, "C": 3, "V": 3, "P": 3, "U": 3}

RESPONSES = ("low", "low-medium", "medium", "high")


@dataclass(frozen=True, slots=True)
class News2Score:
    total: int
    parameters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    partial: bool = False
    response: str = "low"
    missing: tuple[str, ...] = ()

    @property
    def red_score(self) -> bool:
        """A single parameter scored 3 (RCP: "urgent ward-based response")."""
        return any(v == 3 for v in self.parameters.values())


def _round(value: float, places: int) -> Decimal:
    if isinstance(value, int) or value.is_integer():  # already at the chart's precision
        return Decimal(int(value))
    quantum = Decimal(1).scaleb(-places)
    return Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP)


def _band(value: Decimal, table: tuple[tuple[int | Decimal | None, int], ...]) -> int:
    for upper, points in table:
        if upper is None or value <= upper:  # exact: Decimal compares with int and Decimal
            return points
    raise AssertionError("tables end with an open band")


def response_for(total: int, parameters: Mapping[str, int]) -> str:
    """RCP Chart 2/4: aggregate >= 7 high; 5-6 medium; any single 3 low-medium; else low."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if any(v == 3 for v in parameters.values()):
        return "low-medium"
    return "low"


def score(respiratory_rate: float | None = None, spo2: float | None = None,
          spo2_scale: int = 1, on_oxygen: bool = False, systolic: float | None = None,
          pulse_rate: float | None = None, consciousness: str | None = "A",
          temperature: float | None = None) -> News2Score:
    """Score the parameters given; missing ones (None) make the score ``partial``.

    ``spo2_scale`` 2 is for patients with a prescribed target of 88-92 %
    (e.g. hypercapnic respiratory failure), only under clinical direction.
    ``consciousness`` is ACVPU: A alert; C new confusion, V voice, P pain,
    U unresponsive.
    """
    if spo2_scale not in (1, 2):
        raise ValueError(f"spo2_scale must be 1 or 2, not {spo2_scale!r}")
    points: dict[str, int] = {}
    missing: list[str] = []
    if respiratory_rate is not None:
        points["respiratory_rate"] = _band(_round(respiratory_rate, 0), _RESPIRATORY_RATE)
    else:
        missing.append("respiratory_rate")
    if spo2 is not None:
        s = _round(spo2, 0)
        if spo2_scale == 1:
            points["spo2"] = _band(s, _SPO2_SCALE_1)
        elif s <= 92 or not on_oxygen:   # Scale 2: >= 93 % on air scores 0
            points["spo2"] = _band(min(s, Decimal(92)), _SPO2_SCALE_2_LOW)
        else:
            points["spo2"] = _band(s, _SPO2_SCALE_2_ON_OXYGEN)
    else:
        missing.append("spo2")
    points["air_or_oxygen"] = 2 if on_oxygen else 0
    if systolic is not None:
        points["systolic"] = _band(_round(systolic, 0), _SYSTOLIC)
    else:
        missing.append("systolic")
    if pulse_rate is not None:
        points["pulse_rate"] = _band(_round(pulse_rate, 0), _PULSE)
    else:
        missing.append("pulse_rate")
    if consciousness is not None:
        level = consciousness.strip().upper()
        if level not in _CONSCIOUSNESS:
            raise ValueError(f"consciousness must be one of A, C, V, P, U; not {consciousness!r}")
        points["consciousness"] = _CONSCIOUSNESS[level]
    else:
        missing.append("consciousness")
    if temperature is not None:
        points["temperature"] = _band(_round(temperature, 1), _TEMPERATURE)
    else:
        missing.append("temperature")
    total = sum(points.values())
    return News2Score(total=total, parameters=MappingProxyType(points), partial=bool(missing),
                      response=response_for(total, points), missing=tuple(missing))
