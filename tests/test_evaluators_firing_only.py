"""An evaluator's ``firing`` variant (what the engine calls when no alert is active to clear)
gives exactly ``evaluate``'s firing finding, and None where ``evaluate`` clears or abstains."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts.evaluators import registry
from alerts.model import WindowReading
from alerts.ruleset import load_ruleset
from alerts.window import Window

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
RULES = [r for r in load_ruleset().rules if registry()[r.kind].firing is not None]


def _values(kind: str, rng: random.Random) -> dict[str, float]:
    """Values either side of every shipped threshold (so firing, clearing and neither occur)."""
    if kind == "blood_pressure":
        return {"systolic": rng.choice([85, 95, 105, 115, 128, 138, 150, 185]),
                "diastolic": rng.choice([70, 80, 86, 95, 125]), "pulse_rate": rng.randint(38, 135)}
    if kind == "spo2":
        return {"spo2": rng.choice([88, 91, 92, 93, 94, 95, 96, 98]),
                "pulse_rate": rng.randint(38, 135)}
    if kind == "temperature":
        return {"body_temperature": rng.choice([34.9, 35.5, 36.8, 38.4, 39.2])}
    if kind == "respiratory_rate":
        return {"respiratory_rate": rng.choice([7, 10, 16, 22, 26])}
    if kind == "glucose":
        return {"blood_glucose": rng.choice([2.6, 3.4, 3.9, 4.0, 5.5, 8.0])}
    return {"body_weight": round(rng.uniform(68.0, 73.0), 1)}


def _window(rule_kinds: tuple[str, ...], rng: random.Random) -> Window:
    readings = []
    for n in range(rng.randint(0, 25)):
        kind = rng.choice(rule_kinds)
        taken = NOW - timedelta(hours=rng.uniform(0, 24 * 8))
        flags = ("on_oxygen",) if kind == "spo2" and rng.random() < 0.2 else ()
        readings.append(WindowReading(f"r{n}", kind, taken, _values(kind, rng), flags))
    readings.sort(key=lambda r: r.taken_at)
    return Window(tuple(readings))


def test_every_windowed_rule_kind_of_the_shipped_rules_has_a_firing_variant() -> None:
    assert {r.kind for r in RULES} == {"threshold", "news2", "average"}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_firing_is_evaluate_without_its_clearing_findings(rule) -> None:
    rng = random.Random(rule.id)
    judge = registry()[rule.kind]
    assert judge.firing is not None
    seen = {True: 0, False: 0, None: 0}
    for _ in range(400):
        window = _window(rule.reading_kinds, rng)
        full = judge.evaluate(rule, window, NOW)
        seen[None if full is None else full.firing] += 1
        assert judge.firing(rule, window, NOW) == (full if full is not None and full.firing
                                                   else None)
    assert seen[True] and seen[False], seen  # both outcomes were exercised
