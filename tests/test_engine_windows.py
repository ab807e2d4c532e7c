"""The engine's windows are views of each kind's readings (issue 12: a rule's cost does not
grow with its window, so a day of 1 Hz oximetry costs what a few readings do), and every
shipped rule judges them exactly as it judges the plain window they stand for: all the
readings of the rule's kinds from the window's start to the judged reading, in taken_at
order, the judged one last among those stamped the same instant."""

from __future__ import annotations

import bisect
import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts import worker
from alerts.evaluators import registry
from alerts.model import WindowReading
from alerts.patient_windows import PatientReadings
from alerts.ruleset import load_ruleset
from alerts.window import SliceView, Window
from alerts.worker import QueueItem, rule_window
from tests.test_evaluators_firing_only import _values

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
KINDS = ("blood_pressure", "spo2", "temperature", "respiratory_rate", "weight")
RULES = [r for r in load_ruleset().rules if r.kind not in ("missed_reading", "hub_offline",
                                                           "battery_low")]


def reference(rows: list[WindowReading], kinds: tuple[str, ...], start: datetime,
              judged: WindowReading) -> Window:
    """The plain window: every reading of ``kinds`` from ``start`` up to the judged one's
    instant, sorted by (taken_at, id), the judged one moved last."""
    stamps = [r.taken_at for r in rows]
    upto = bisect.bisect_right(stamps, judged.taken_at)
    within = [r for r in rows[:upto] if r.taken_at >= start and r.kind in kinds]
    return Window((*(r for r in within if r.id != judged.id),
                   *(r for r in within if r.id == judged.id)))


def history(rng: random.Random) -> list[WindowReading]:
    readings = []
    for n in range(rng.randint(1, 60)):
        kind = rng.choice(KINDS)
        # whole seconds, often the same one: ties in taken_at are the case to get right
        taken = NOW - timedelta(seconds=rng.choice([0, 1, 2, 60, 3600]) * rng.randint(0, 40))
        flags = ("on_oxygen",) if kind == "spo2" and rng.random() < 0.2 else ()
        readings.append(WindowReading(f"r{rng.randint(0, 10**6):07d}-{n}", kind, taken,
                                      _values(kind, rng), flags))
    return sorted(readings, key=lambda r: (r.taken_at, r.id))


@pytest.mark.parametrize("short", [0, worker.SHORT_WINDOW], ids=["views", "short-copies"])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_every_shipped_rule_judges_the_views_as_the_plain_window(
        rule, short: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways a window is built: views of each kind's list (NEWS2 walking back per
    kind), and, below ``SHORT_WINDOW`` readings, copies."""
    monkeypatch.setattr(worker, "SHORT_WINDOW", short)
    rng = random.Random(rule.id)
    judge = registry()[rule.kind]
    compared = 0
    for _ in range(150):
        rows = history(rng)
        cached = PatientReadings(since={})
        for r in rng.sample(rows, len(rows)):  # claimed in any order
            cached.add(r)
        for judged in rng.sample(rows, min(len(rows), 8)):
            item = QueueItem(0, judged.id, judged.taken_at, 1, judged.kind, judged.values,
                             judged.flags)
            start = judged.taken_at - rule.window
            view = rule_window(cached, rule.reading_kinds, start, item)
            plain = reference(rows, rule.reading_kinds, start, judged)
            assert tuple(view.readings) == plain.readings
            assert judge.evaluate(rule, view, judged.taken_at) == judge.evaluate(
                rule, plain, judged.taken_at), (rule.id, judged)
            if judge.firing is not None:
                assert judge.firing(rule, view, judged.taken_at) == judge.firing(
                    rule, plain, judged.taken_at)
            compared += 1
    assert compared > 300


def test_a_slice_view_is_the_slice_without_copying() -> None:
    rows = [WindowReading(f"r{n}", "spo2", NOW + timedelta(seconds=n), {"spo2": 90 + n})
            for n in range(10)]
    view = SliceView(rows, 2, 7)
    assert len(view) == 5 and list(view) == rows[2:7] and list(reversed(view)) == rows[6:1:-1]
    assert view[0] == rows[2] and view[-1] == rows[6] and view[1:3] == tuple(rows[3:5])
    assert view[-2:] == tuple(rows[5:7]) and view[::2] == tuple(rows[2:7:2])
    with pytest.raises(IndexError):
        view[5]
    assert view == tuple(rows[2:7]) and SliceView(rows, 3, 3) == ()
