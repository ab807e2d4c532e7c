"""A simulated virtual ward: a seeded cohort of patients, their readings, labelled deteriorations.

``generate(CohortSpec(patients=500, days=30, seed=7))`` draws each patient's condition,
baseline physiology (:mod:`device_sim.physiology`, with its sources), care-plan
schedule, adherence and device faults, then every reading they take over the period:
circadian variation, day-to-day biological variation, device error, missed, late and
repeated readings, and the scripted deteriorations with their ground truth (onset, the
time harm follows if nobody acts, the end of the episode).

The same spec gives the same cohort, value for value: one ``random.Random`` per patient,
seeded from the spec's seed and the patient's number, so a cohort of 20 is the first 20
patients of a cohort of 500.  Values are already at the device's display resolution, so
a reading inserted straight into the database (the fast run) equals the one a virtual
device encodes and the edge decodes (the live run).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]

from device_sim import physiology as phys
from device_sim.scenarios import device_values
from homeward.kinds import Kind

ZONE = ZoneInfo("Europe/London")
#: A Monday: the default cohort starts at its local midnight.
DEFAULT_START = date(2026, 11, 2)

#: Metrics each device kind reports (what the GATT profile carries).
DEVICE_METRICS: dict[Kind, tuple[str, ...]] = {
    Kind.BLOOD_PRESSURE: ("systolic", "diastolic", "pulse_rate"),
    Kind.SPO2: ("spo2", "pulse_rate"),
    Kind.TEMPERATURE: ("body_temperature",),
    Kind.WEIGHT: ("body_weight",),
    Kind.GLUCOSE: ("blood_glucose",),
}

#: A wrong device clock: drifted by a minute and a half.  The edge measures the offset
#: at each connection and corrects the readings' times with it.  (A clock out by more
#: than the edge's 2-minute tolerance is set by the hub instead, and the offset measured
#: before the setting then applies to the readings taken after it within the same
#: connection: docs/clinical-evaluation.md, "What the simulation found".)
WRONG_CLOCK_S = 95.0

#: The care-team kinds each condition's patients have, lead team first.
CARE_TEAMS: dict[str, tuple[str, ...]] = {
    "copd": ("copd", "district_nursing"),
    "heart_failure": ("heart_failure", "district_nursing"),
    "hypertension": ("gp_practice",),
    "diabetes": ("district_nursing", "gp_practice"),
    "post_discharge": ("district_nursing",),
}


@dataclass(frozen=True, slots=True)
class Deterioration:
    """A scripted deterioration: how the physiology moves, and over how long.

    ``shift`` is the change of each metric at the end of the ramp (drawn uniformly
    between the pair); the change grows linearly from onset, holds until harm, then
    recovers over ``recovery``.  ``harm_after`` is how long after the ramp's end harm
    follows if nobody acts: an alert counts as in time only before it.
    """

    name: str
    condition: str
    ramp_hours: tuple[float, float]
    harm_after: timedelta
    shift: Mapping[str, tuple[float, float]]
    recovery: timedelta = timedelta(days=1)
    #: Hypoglycaemia is episodic, not a drift: this share of glucose readings between
    #: onset and harm are lows, drawn uniformly between the pair (mmol/L).
    lows: tuple[float, float, float] | None = None


#: Sources: COPD exacerbation (BTS oxygen guideline 2017; NICE NG115 1.3: increased
#: breathlessness, SpO2 falling from the patient's baseline, tachycardia); heart-failure
#: decompensation (ESC HFA: > 2 kg in 3 days); sepsis-like (NICE NG51: temperature,
#: heart rate and falling systolic pressure; NEWS2 >= 5); hypertensive urgency (NICE
#: NG136 1.5: >= 180/120 mmHg); hypoglycaemia (NICE NG17: < 4.0 mmol/L).
DETERIORATIONS: dict[str, Deterioration] = {d.name: d for d in (
    Deterioration("copd_exacerbation", "copd", (48, 96), timedelta(hours=12),
                  {"spo2": (-7.0, -5.0), "pulse_rate": (15.0, 25.0),
                   "body_temperature": (0.2, 0.6)}),
    Deterioration("hf_decompensation", "heart_failure", (60, 84), timedelta(days=1),
                  {"body_weight": (2.8, 3.6), "pulse_rate": (6.0, 12.0),
                   "spo2": (-2.0, -1.0), "systolic": (-8.0, 0.0)}),
    Deterioration("sepsis", "post_discharge", (24, 36), timedelta(hours=12),
                  {"body_temperature": (2.2, 2.7), "pulse_rate": (35.0, 45.0),
                   "systolic": (-40.0, -30.0), "diastolic": (-15.0, -10.0),
                   "spo2": (-4.0, -3.0)}),
    Deterioration("hypertensive_urgency", "hypertension", (24, 72), timedelta(days=1),
                  {"systolic": (52.0, 65.0), "diastolic": (18.0, 28.0)}),
    Deterioration("hypoglycaemia", "diabetes", (0, 0), timedelta(days=2), {},
                  recovery=timedelta(0), lows=(2.6, 3.8, 0.6)),
)}


@dataclass(frozen=True)
class CohortSpec:
    patients: int = 500
    days: int = 30
    seed: int = 7
    start: date = DEFAULT_START
    #: The share of patients who deteriorate once in the period (the rest are stable).
    deterioration_share: float = 0.3
    #: Overrides: condition mix (shares), and adherence fixed for everyone (1.0 = never
    #: miss, late or repeat a reading) instead of drawn.
    conditions: Mapping[str, float] = field(default_factory=lambda: dict(phys.CONDITION_MIX))
    adherence: float | None = None
    #: Device faults: the share of patients with a device whose clock is an hour out
    #: (never changed for summer time), whose battery is low, or that now and then
    #: sends a malformed packet.
    wrong_clock_share: float = 0.03
    low_battery_share: float = 0.04
    malformed_share: float = 0.02
    #: Whether patients have care plans: per-patient rule settings (a COPD patient's
    #: oximetry schedule and own SpO2 limits, see stack.ward_world).
    care_plans: bool = True

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(0), ZONE).astimezone(UTC)

    @property
    def end_at(self) -> datetime:
        end = self.start + timedelta(days=self.days)
        return datetime.combine(end, time(0), ZONE).astimezone(UTC)


@dataclass(frozen=True)
class SimPatient:
    key: str                              # "ward-001"
    number: int
    condition: str
    care_teams: tuple[str, ...]           # team kinds, lead first
    baseline: Mapping[str, float]
    schedule: Mapping[Kind, tuple[str, ...]]
    adherence: float
    #: Per device kind: "wrong_clock", "low_battery" or "malformed".
    faults: Mapping[Kind, str]
    #: How far the wrong clock is out (seconds).
    clock_offset_s: float = 0.0

    @property
    def devices(self) -> tuple[Kind, ...]:
        return tuple(self.schedule)


@dataclass(frozen=True)
class Episode:
    patient: str
    scenario: str
    onset: datetime
    peak: datetime                        # the ramp's end: the full shift from here
    harm: datetime
    end: datetime


@dataclass(frozen=True)
class SimReading:
    patient: str
    kind: Kind
    taken_at: datetime                    # true UTC time, whole seconds
    values: Mapping[str, float]
    #: "scheduled", "late", "repeat"
    why: str = "scheduled"
    #: The device sends garbage for this one: it is lost at the edge, by design.
    malformed: bool = False


@dataclass
class Cohort:
    spec: CohortSpec
    patients: list[SimPatient]
    episodes: list[Episode]
    readings: list[SimReading]

    def patient(self, key: str) -> SimPatient:
        return next(p for p in self.patients if p.key == key)

    def readings_frame(self) -> pd.DataFrame:
        """One row per reading, a column per metric."""
        rows = [{"patient": r.patient, "kind": str(r.kind), "taken_at": r.taken_at,
                 "why": r.why, "malformed": r.malformed, **r.values} for r in self.readings]
        return pd.DataFrame(rows)

    def episodes_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars_of(e) for e in self.episodes],
                            columns=["patient", "scenario", "onset", "peak", "harm", "end"])

    def patients_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "patient": p.key, "condition": p.condition, "care_teams": ",".join(p.care_teams),
            "adherence": round(p.adherence, 3),
            "devices": ",".join(str(k) for k in p.devices),
            "faults": ",".join(f"{k}:{v}" for k, v in p.faults.items()),
            **{f"baseline_{m}": v for m, v in p.baseline.items()}} for p in self.patients])

    def write(self, folder: Path, *, fmt: str = "csv") -> list[Path]:
        """``readings``, ``episodes`` and ``patients`` as CSV or Parquet files in ``folder``."""
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"unknown format {fmt!r}: use csv or parquet")
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name, frame in (("readings", self.readings_frame()),
                            ("episodes", self.episodes_frame()),
                            ("patients", self.patients_frame())):
            path = folder / f"{name}.{fmt}"
            if fmt == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
            out.append(path)
        return out


def vars_of(episode: Episode) -> dict[str, Any]:
    return {"patient": episode.patient, "scenario": episode.scenario, "onset": episode.onset,
            "peak": episode.peak, "harm": episode.harm, "end": episode.end}


def generate(spec: CohortSpec) -> Cohort:
    if spec.patients < 1 or spec.days < 1:
        raise ValueError("a cohort needs at least one patient and one day")
    conditions = _condition_sequence(spec)
    patients: list[SimPatient] = []
    episodes: list[Episode] = []
    readings: list[SimReading] = []
    for number in range(1, spec.patients + 1):
        rng = random.Random(f"{spec.seed}:{number}")  # noqa: S311 -- reproducible, not secret
        patient = _draw_patient(rng, spec, number, conditions[number - 1])
        episode = _draw_episode(rng, spec, patient)
        patients.append(patient)
        if episode is not None:
            episodes.append(episode)
        readings.extend(_readings(rng, spec, patient, episode))
    readings.sort(key=lambda r: (r.taken_at, r.patient, str(r.kind)))
    return Cohort(spec, patients, episodes, readings)


def _condition_sequence(spec: CohortSpec) -> list[str]:
    """Each patient's condition, cycling through the mix in proportion (a largest-remainder
    sequence), so that any prefix of the cohort has the mix too."""
    mix = {c: s for c, s in spec.conditions.items() if s > 0}
    unknown = set(mix) - set(phys.SCHEDULES)
    if unknown:
        raise ValueError(f"unknown condition(s) {sorted(unknown)}: use {sorted(phys.SCHEDULES)}")
    total = sum(mix.values())
    counts = dict.fromkeys(mix, 0)
    out = []
    for n in range(1, spec.patients + 1):
        pick = max(mix, key=lambda c: (mix[c] / total * n - counts[c], -list(mix).index(c)))
        counts[pick] += 1
        out.append(pick)
    return out


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, value))


def _draw_patient(rng: random.Random, spec: CohortSpec, number: int,
                  condition: str) -> SimPatient:
    baseline = {m: round(_clamp(rng.gauss(d.mean, d.sd), d.lo, d.hi), 2)
                for m, d in phys.BASELINE[condition].items()}
    if baseline["diastolic"] > baseline["systolic"] - 25:
        baseline["diastolic"] = baseline["systolic"] - 25
    schedule = phys.SCHEDULES[condition]
    adherence = spec.adherence if spec.adherence is not None else rng.betavariate(
        *phys.ADHERENCE_BETA)
    faults: dict[Kind, str] = {}
    for fault, share in (("wrong_clock", spec.wrong_clock_share),
                         ("low_battery", spec.low_battery_share),
                         ("malformed", spec.malformed_share)):
        if rng.random() < share:
            faults.setdefault(rng.choice(list(schedule)), fault)
    return SimPatient(f"ward-{number:03d}", number, condition, CARE_TEAMS[condition],
                      baseline, schedule, adherence, faults,
                      WRONG_CLOCK_S if "wrong_clock" in faults.values() else 0.0)


def _draw_episode(rng: random.Random, spec: CohortSpec, patient: SimPatient) -> Episode | None:
    scripted = [d for d in DETERIORATIONS.values() if d.condition == patient.condition]
    if not scripted or rng.random() >= spec.deterioration_share:
        return None
    det = scripted[0]
    period = spec.end_at - spec.start_at
    earliest = spec.start_at + min(timedelta(days=1), period * 0.15)
    latest_harm = spec.end_at - timedelta(hours=1)
    ramp = timedelta(hours=rng.uniform(*det.ramp_hours))
    harm_after = det.harm_after
    room = latest_harm - earliest
    if ramp + harm_after > room * 0.9:  # a short cohort: compress the episode to fit
        factor = room * 0.9 / (ramp + harm_after)
        ramp, harm_after = ramp * factor, harm_after * factor
    slack = room - ramp - harm_after
    onset = earliest + slack * rng.random()
    onset = onset.replace(microsecond=0)
    peak = (onset + ramp).replace(microsecond=0)
    harm = (peak + harm_after).replace(microsecond=0)
    return Episode(patient.key, det.name, onset, peak, harm, harm + det.recovery)


def _progress(episode: Episode | None, det: Deterioration | None, at: datetime) -> float:
    """How far into the deterioration's shift the patient is at ``at`` (0..1)."""
    if episode is None or det is None or at < episode.onset or at >= episode.end:
        return 0.0
    if at < episode.peak:
        return (at - episode.onset) / (episode.peak - episode.onset)
    if at < episode.harm:
        return 1.0
    return 1.0 - (at - episode.harm) / (episode.end - episode.harm)


def _slots(spec: CohortSpec, patient: SimPatient) -> Iterator[tuple[Kind, datetime]]:
    for day in range(spec.days):
        local_day = spec.start + timedelta(days=day)
        for kind, times in patient.schedule.items():
            for hhmm in times:
                h, m = (int(x) for x in hhmm.split(":"))
                yield kind, datetime.combine(local_day, time(h, m), ZONE).astimezone(UTC)


def _readings(rng: random.Random, spec: CohortSpec, patient: SimPatient,
              episode: Episode | None) -> list[SimReading]:
    det = DETERIORATIONS[episode.scenario] if episode is not None else None
    shift = {m: rng.uniform(*pair) for m, pair in det.shift.items()} if det else {}
    fixed = spec.adherence is not None and spec.adherence >= 1.0
    out: list[SimReading] = []
    first_low = True
    for kind, slot in _slots(spec, patient):
        if rng.random() >= patient.adherence:
            continue  # missed
        offset = timedelta(minutes=_clamp(rng.gauss(0, 10), -25, 25))
        why = "scheduled"
        if not fixed and rng.random() < phys.LATE_SHARE:
            offset, why = timedelta(minutes=rng.uniform(30, 180)), "late"
        at = (slot + offset).replace(microsecond=0)
        if not spec.start_at <= at < spec.end_at:
            continue
        takes = [(at, why)]
        if not fixed and rng.random() < phys.REPEAT_SHARE:
            takes.append(((at + timedelta(minutes=rng.uniform(2, 6))).replace(microsecond=0),
                          "repeat"))
        for when, reason in takes:
            values = _values(rng, patient, kind, when, episode, det, shift)
            if det is not None and det.lows is not None and kind is Kind.GLUCOSE and \
                    episode is not None and episode.onset <= when < episode.harm and \
                    (first_low or rng.random() < det.lows[2]):
                values["blood_glucose"] = round(rng.uniform(det.lows[0], det.lows[1]), 1)
                first_low = False
            malformed = patient.faults.get(kind) == "malformed" and rng.random() < 0.05
            out.append(SimReading(patient.key, kind, when, device_values(kind, values), reason,
                                  malformed))
    return out


def _values(rng: random.Random, patient: SimPatient, kind: Kind, at: datetime,
            episode: Episode | None, det: Deterioration | None,
            shift: Mapping[str, float]) -> dict[str, float]:
    progress = _progress(episode, det, at)
    hour = at.astimezone(ZONE).hour + at.astimezone(ZONE).minute / 60
    values: dict[str, float] = {}
    for metric in DEVICE_METRICS[kind]:
        value = patient.baseline[metric]
        amplitude, peak = phys.CIRCADIAN.get(metric, (0.0, 0.0))
        value += amplitude * math.cos((hour - peak) / 24 * 2 * math.pi)
        value += shift.get(metric, 0.0) * progress
        value += rng.gauss(0, phys.BIOLOGICAL_SD[metric])
        error = phys.DEVICE_SD[metric]
        if metric == "blood_glucose":
            error = max(error, value * phys.GLUCOSE_DEVICE_RELATIVE_SD)
        values[metric] = value + rng.gauss(0, error)
    if "spo2" in values:
        values["spo2"] = min(100.0, values["spo2"])
    if kind is Kind.BLOOD_PRESSURE and values["diastolic"] >= values["systolic"] - 10:
        values["diastolic"] = values["systolic"] - 10
    return values
