"""Physiological value generators: small, deterministic for a given seed.

``Steady`` wobbles around a baseline; ``Deteriorating`` drifts linearly from
the baseline to a worse target over ``readings`` readings (then stays there),
e.g. a blood-pressure cuff whose systolic climbs from 128 to 190 mmHg, past
the 180 mmHg threshold of NICE NG136 (severe hypertension, see
/work/shared/reference/clinical.md).  Values are rounded to what the device
would display.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from homeward.kinds import Kind

# What a stable adult patient at home reads.
BASELINES: dict[Kind, dict[str, float]] = {
    Kind.BLOOD_PRESSURE: {"systolic": 128.0, "diastolic": 82.0, "pulse_rate": 70.0},
    Kind.SPO2: {"spo2": 97.0, "pulse_rate": 72.0},
    Kind.TEMPERATURE: {"body_temperature": 36.8},
    Kind.WEIGHT: {"body_weight": 82.0},
    Kind.GLUCOSE: {"blood_glucose": 6.2},
}

# Where a deteriorating patient ends up: severe hypertension (systolic >= 180),
# hypoxia (SpO2 <= 91 % scores 3 on NEWS2 scale 1), fever, heart-failure fluid
# gain (+3 kg), hyperglycaemia.
DETERIORATED: dict[Kind, dict[str, float]] = {
    Kind.BLOOD_PRESSURE: {"systolic": 190.0, "diastolic": 108.0, "pulse_rate": 96.0},
    Kind.SPO2: {"spo2": 88.0, "pulse_rate": 112.0},
    Kind.TEMPERATURE: {"body_temperature": 39.1},
    Kind.WEIGHT: {"body_weight": 85.0},
    Kind.GLUCOSE: {"blood_glucose": 19.5},
}

# Reading-to-reading noise (one standard deviation) per metric.
NOISE: dict[str, float] = {
    "systolic": 4.0,
    "diastolic": 3.0,
    "pulse_rate": 3.0,
    "spo2": 0.7,
    "body_temperature": 0.1,
    "body_weight": 0.15,
    "blood_glucose": 0.3,
}

# Display resolution per metric.
STEP: dict[str, float] = {
    "systolic": 1.0,
    "diastolic": 1.0,
    "pulse_rate": 1.0,
    "spo2": 1.0,
    "body_temperature": 0.1,
    "body_weight": 0.05,
    "blood_glucose": 0.1,
}

_CEILING: dict[str, float] = {"spo2": 100.0}


class Scenario(Protocol):
    kind: Kind

    def next_values(self) -> dict[str, float]:
        """The next reading's values in canonical units (homeward.kinds)."""
        ...


def device_values(kind: Kind, values: dict[str, float]) -> dict[str, float]:
    """``values`` as the device would report them: at its display resolution (and a cuff's
    mean arterial pressure derived from systolic and diastolic)."""
    out: dict[str, float] = {}
    for name, value in values.items():
        step = STEP[name]
        value = round(round(value / step) * step, 3)
        out[name] = min(value, _CEILING.get(name, value))
    if kind is Kind.BLOOD_PRESSURE:
        # MAP ~ diastolic + (systolic - diastolic) / 3, the cuffs' usual estimate
        pulse_pressure = out["systolic"] - out["diastolic"]
        out["mean_arterial"] = float(round(out["diastolic"] + pulse_pressure / 3))
    return out


@dataclass
class Steady:
    kind: Kind
    seed: int = 0
    baseline: dict[str, float] | None = None
    noise_scale: float = 1.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 -- reproducible, not secret

    def next_values(self) -> dict[str, float]:
        base = self.baseline or BASELINES[self.kind]
        noisy = {k: v + self._rng.gauss(0.0, NOISE[k] * self.noise_scale) for k, v in base.items()}
        return device_values(self.kind, noisy)


@dataclass
class Deteriorating:
    kind: Kind
    seed: int = 0
    readings: int = 10
    start: dict[str, float] | None = None
    end: dict[str, float] | None = None
    noise_scale: float = 0.5
    _rng: random.Random = field(init=False, repr=False)
    _taken: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 -- reproducible, not secret

    def next_values(self) -> dict[str, float]:
        start = self.start or BASELINES[self.kind]
        end = self.end or DETERIORATED[self.kind]
        progress = min(1.0, self._taken / max(1, self.readings - 1))
        self._taken += 1
        values = {
            k: start[k] + (end[k] - start[k]) * progress
            + self._rng.gauss(0.0, NOISE[k] * self.noise_scale)
            for k in start
        }
        if progress >= 1.0:  # the target is reached and held: no noise below it
            values = {k: max(v, end[k]) if end[k] >= start[k] else min(v, end[k])
                      for k, v in values.items()}
        return device_values(self.kind, values)
