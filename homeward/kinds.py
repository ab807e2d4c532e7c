"""Measurement kinds, their metrics and canonical units (DESIGN.md, "The wire format").

Every value that crosses the wire is in the canonical unit given here; the edge
converts device units before a reading leaves the home.  The plausibility
limits are wide physiological bounds: a value outside them cannot come from a
living patient and is treated as corruption (quarantined), never clamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    SPO2 = "spo2"
    TEMPERATURE = "temperature"
    WEIGHT = "weight"
    GLUCOSE = "glucose"
    RESPIRATORY_RATE = "respiratory_rate"


@dataclass(frozen=True, slots=True)
class Metric:
    """One number a reading carries.

    ``unit`` is the display unit, ``ucum`` its UCUM code (FHIR), ``loinc`` the
    LOINC code used in FHIR export (../shared/reference/fhir.md section 5.1).
    """

    name: str
    unit: str
    ucum: str
    loinc: str | None
    minimum: float
    maximum: float
    required: bool = True


# Plausibility limits.  Each pair is "no living adult at home can read this";
# the point is to catch corrupt bytes, unit mix-ups (kPa sent as mmHg, °F as
# °C, lb as kg, mg/dL as mmol/L) and zero/NaN placeholders, not to judge
# clinical normality, which is the alert engine's job.
MAX_PLAUSIBLE_SYSTOLIC_MMHG = 300.0  # cuffs top out at 280-300 mmHg
MIN_PLAUSIBLE_SYSTOLIC_MMHG = 40.0  # below this a cuff reports an error, not a number
MAX_PLAUSIBLE_DIASTOLIC_MMHG = 250.0
MIN_PLAUSIBLE_DIASTOLIC_MMHG = 15.0
MAX_PLAUSIBLE_PULSE_PER_MIN = 300.0  # above any sustained human rate; catches byte swaps
MIN_PLAUSIBLE_PULSE_PER_MIN = 20.0
MIN_PLAUSIBLE_SPO2_PERCENT = 40.0  # oximeters do not report below ~50-70 %
MAX_PLAUSIBLE_SPO2_PERCENT = 100.0
MIN_PLAUSIBLE_BODY_TEMP_C = 25.0  # catches a °F value sent as °C the other way round
MAX_PLAUSIBLE_BODY_TEMP_C = 45.0  # catches °F sent as °C (98.6 "°C")
MIN_PLAUSIBLE_WEIGHT_KG = 2.0
MAX_PLAUSIBLE_WEIGHT_KG = 400.0  # catches lb sent as kg for heavy patients, and 0xFFFF raw
MIN_PLAUSIBLE_GLUCOSE_MMOL_L = 0.5
MAX_PLAUSIBLE_GLUCOSE_MMOL_L = 60.0  # catches mg/dL sent as mmol/L (e.g. 99)
MIN_PLAUSIBLE_RESP_RATE_PER_MIN = 2.0
MAX_PLAUSIBLE_RESP_RATE_PER_MIN = 80.0


METRICS: dict[Kind, tuple[Metric, ...]] = {
    Kind.BLOOD_PRESSURE: (
        Metric("systolic", "mmHg", "mm[Hg]", "8480-6",
               MIN_PLAUSIBLE_SYSTOLIC_MMHG, MAX_PLAUSIBLE_SYSTOLIC_MMHG),
        Metric("diastolic", "mmHg", "mm[Hg]", "8462-4",
               MIN_PLAUSIBLE_DIASTOLIC_MMHG, MAX_PLAUSIBLE_DIASTOLIC_MMHG),
        Metric("mean_arterial", "mmHg", "mm[Hg]", "8478-0",
               MIN_PLAUSIBLE_DIASTOLIC_MMHG, MAX_PLAUSIBLE_SYSTOLIC_MMHG, required=False),
        Metric("pulse_rate", "/min", "/min", "8867-4",
               MIN_PLAUSIBLE_PULSE_PER_MIN, MAX_PLAUSIBLE_PULSE_PER_MIN, required=False),
    ),
    Kind.SPO2: (
        Metric("spo2", "%", "%", "59408-5", MIN_PLAUSIBLE_SPO2_PERCENT, MAX_PLAUSIBLE_SPO2_PERCENT),
        Metric("pulse_rate", "/min", "/min", "8867-4",
               MIN_PLAUSIBLE_PULSE_PER_MIN, MAX_PLAUSIBLE_PULSE_PER_MIN, required=False),
        Metric("perfusion_index", "%", "%", None, 0.0, 100.0, required=False),
    ),
    Kind.TEMPERATURE: (
        Metric("body_temperature", "°C", "Cel", "8310-5",
               MIN_PLAUSIBLE_BODY_TEMP_C, MAX_PLAUSIBLE_BODY_TEMP_C),
    ),
    Kind.WEIGHT: (
        Metric("body_weight", "kg", "kg", "29463-7",
               MIN_PLAUSIBLE_WEIGHT_KG, MAX_PLAUSIBLE_WEIGHT_KG),
    ),
    Kind.GLUCOSE: (
        Metric("blood_glucose", "mmol/L", "mmol/L", "14743-9",
               MIN_PLAUSIBLE_GLUCOSE_MMOL_L, MAX_PLAUSIBLE_GLUCOSE_MMOL_L),
    ),
    Kind.RESPIRATORY_RATE: (
        Metric("respiratory_rate", "/min", "/min", "9279-1",
               MIN_PLAUSIBLE_RESP_RATE_PER_MIN, MAX_PLAUSIBLE_RESP_RATE_PER_MIN),
    ),
}

METRIC_BY_NAME: dict[Kind, dict[str, Metric]] = {
    kind: {m.name: m for m in metrics} for kind, metrics in METRICS.items()
}


def check_values(kind: Kind, values: dict[str, float]) -> str | None:
    """Return why ``values`` cannot be a reading of ``kind``, or None when they can.

    Pure and cheap: it runs on the ingest hot path for every reading.
    """
    known = METRIC_BY_NAME[kind]
    for name, value in values.items():
        metric = known.get(name)
        if metric is None:
            return f"unknown metric {name!r} for kind {kind.value!r}"
        if value != value or not (metric.minimum <= value <= metric.maximum):  # NaN-safe
            return (
                f"{name}={value} {metric.unit} outside plausible range "
                f"{metric.minimum:g}..{metric.maximum:g}"
            )
    for metric in METRICS[kind]:
        if metric.required and metric.name not in values:
            return f"missing required metric {metric.name!r} for kind {kind.value!r}"
    if kind is Kind.BLOOD_PRESSURE and values["diastolic"] >= values["systolic"]:
        return "diastolic must be below systolic"
    return None
