"""Evaluators are pure functions (rule, window, now) -> finding | None: tables of windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.errors import RuleError
from alerts.evaluators import evaluate
from alerts.model import Severity, WindowReading
from alerts.ruleset import load_ruleset, parse_ruleset
from alerts.window import DeviceView, Window

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, 09:00 in London (GMT)
DEFAULT = load_ruleset().by_id()
_n = iter(range(10**9))


def rd(kind, minutes=0, flags=(), **values):
    return WindowReading(f"r{next(_n)}", kind, T0 + timedelta(minutes=minutes), values,
                         tuple(flags))


def W(*readings, **ctx):
    return Window(tuple(sorted(readings, key=lambda r: r.taken_at)), **ctx)


def verdict(finding):
    if finding is None:
        return None
    return str(finding.severity) if finding.firing else "clear"


def rule_from(yaml_params, kind="threshold", severity="amber", reading_kinds="[spo2]",
              extra=""):
    text = f"""
rules:
  - id: r
    kind: {kind}
    title: T
    severity: {severity}
    source: test
    reading_kinds: {reading_kinds}
{extra}    params: {yaml_params}
"""
    return parse_ruleset(text, source="t.yaml").rules[0]


# --- threshold -------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "expected"), [
    ({"systolic": 180, "diastolic": 90}, "red"),      # edge: >= 180
    ({"systolic": 179, "diastolic": 119}, "clear"),
    ({"systolic": 140, "diastolic": 120}, "red"),     # edge: >= 120
    ({"pulse_rate": 70}, None),                        # no metric the rule reads
])
def test_bp_severe_edges(values, expected):
    rule = DEFAULT["bp_severe"]
    assert verdict(evaluate(rule, W(rd("blood_pressure", **values)), T0)) == expected


@pytest.mark.hazard("H-010")
@pytest.mark.parametrize(("spo2s", "expected"), [
    ([97], None),                         # one good reading: clear_count 2 not reached
    ([96, 97], "clear"),
    ([94], "amber"),                      # CO@home 93-94: urgent advice
    ([95, 93], "amber"),
    ([92], "red"),                        # <= 92: emergency
    ([94, 95], None),                     # hysteresis: 95 is not yet two clear readings
    ([94, 95, 95], "clear"),
])
def test_spo2_levels_and_hysteresis(spo2s, expected):
    rule = DEFAULT["spo2_low"]
    window = W(*[rd("spo2", i, spo2=v) for i, v in enumerate(spo2s)])
    assert verdict(evaluate(rule, window, T0 + timedelta(hours=1))) == expected


def test_threshold_with_duration_needs_the_condition_held_that_long():
    rule = rule_from('{when: {metric: spo2, op: "<", value: 92}, for: 10m}')
    readings = [rd("spo2", m, spo2=90) for m in (0, 4, 8)]
    assert verdict(evaluate(rule, W(*readings), T0 + timedelta(minutes=8))) is None
    assert verdict(evaluate(rule, W(*readings), T0 + timedelta(minutes=10))) == "amber"
    broken = [rd("spo2", 0, spo2=90), rd("spo2", 4, spo2=95), rd("spo2", 8, spo2=90)]
    assert verdict(evaluate(rule, W(*broken), T0 + timedelta(minutes=12))) is None


@pytest.mark.parametrize(("spo2s", "expected"), [
    ([90, 96, 96], None),        # 1 of 3
    ([90, 96, 90], "amber"),     # 2 of 3
    ([90, 90, 96, 96, 96], None),  # old hits fall out of the last 3; not clear (needs >= 97)
    ([96, 97], "clear"),
])
def test_n_of_m_with_separate_clear_condition(spo2s, expected):
    rule = rule_from('{when: {metric: spo2, op: "<", value: 92}, n_of_m: [2, 3],'
                     ' clear: {metric: spo2, op: ">=", value: 97}}')
    window = W(*[rd("spo2", i, spo2=v) for i, v in enumerate(spo2s)])
    assert verdict(evaluate(rule, window, T0 + timedelta(hours=1))) == expected


# --- NEWS2 rule ------------------------------------------------------------------------

@pytest.mark.hazard("H-022")
def test_news2_rule_uses_newest_value_of_each_parameter_and_flags_partial():
    rule = DEFAULT["news2"]
    window = W(rd("spo2", 0, spo2=95, pulse_rate=95),            # spo2 1, pulse 1
               rd("blood_pressure", 1, systolic=105, pulse_rate=112),  # sys 1, pulse 2 (newer)
               rd("temperature", 2, body_temperature=38.3),        # 1
               rd("respiratory_rate", 3, respiratory_rate=22))     # 2
    f = evaluate(rule, window, T0 + timedelta(minutes=5))
    assert f is not None and f.firing
    assert f.detail["total"] == 7 and f.detail["response"] == "high"
    assert f.severity is Severity.RED
    assert f.detail["partial"] and f.detail["missing"] == ["consciousness"]
    assert "partial" in f.summary


@pytest.mark.hazard("H-022")
def test_news2_rule_ignores_values_older_than_max_age():
    rule = DEFAULT["news2"]
    window = W(rd("respiratory_rate", -13 * 60, respiratory_rate=30), rd("spo2", 0, spo2=97))
    f = evaluate(rule, window, T0)
    assert verdict(f) == "clear"
    assert "respiratory_rate" in f.detail["missing"]


def test_news2_rule_single_red_parameter_is_amber():
    f = evaluate(DEFAULT["news2"], W(rd("respiratory_rate", 0, respiratory_rate=26)), T0)
    assert (verdict(f), f.detail["response"]) == ("amber", "low-medium")


def test_news2_rule_scale_2_and_oxygen_flag():
    rule = rule_from("{spo2_scale: 2}", kind="news2", reading_kinds="[spo2]")
    on_air = evaluate(rule, W(rd("spo2", 0, spo2=89)), T0)
    assert on_air.detail["parameters"]["spo2"] == 0 and verdict(on_air) == "clear"
    on_o2 = evaluate(rule, W(rd("spo2", 0, flags=["on_oxygen"], spo2=97)), T0)
    assert on_o2.detail["parameters"] == {"spo2": 3, "air_or_oxygen": 2}
    assert verdict(on_o2) == "amber"  # total 5: medium


# --- change over a window --------------------------------------------------------------

@pytest.mark.parametrize(("weights", "expected"), [
    ([(0, 80.0), (1, 81.0), (2, 82.0)], None),  # exactly 2 kg: not more than 2
    ([(0, 80.0), (1, 80.5), (2, 81.0)], "clear"),  # within clear_rise (1 kg)
    ([(0, 80.0), (1, 81.0), (2, 82.1)], "amber"),         # > 2 kg in 3 days
    ([(0, 80.0), (4, 82.5)], None),                         # 4 days apart: nothing to compare
    ([(0, 84.0), (1, 81.9)], "amber"),                     # rapid loss
    ([(0, 80.0), (1, 81.5)], None),                         # between clear (1) and trigger (2)
])
def test_weight_change(weights, expected):
    rule = DEFAULT["hf_weight_change"]
    window = W(*[rd("weight", d * 1440, body_weight=w) for d, w in weights])
    now = window.readings[-1].taken_at
    assert verdict(evaluate(rule, window, now)) == expected


# --- averages (NICE NG136 HBPM) ----------------------------------------------------------

def _hbpm(days, sys_, dia, first_day=(170, 100)):
    out = [rd("blood_pressure", 0, systolic=first_day[0], diastolic=first_day[1])]
    for d in range(1, days):
        for h in (0, 12 * 60):
            out.append(rd("blood_pressure", d * 1440 + h, systolic=sys_, diastolic=dia))
    return W(*out)


@pytest.mark.parametrize(("days", "sys_", "dia", "expected"), [
    (7, 136, 80, "info"),     # systolic average >= 135
    (7, 130, 85, "info"),     # diastolic average >= 85
    (7, 134, 84, "clear"),    # first day's 170/100 is discarded
    (4, 140, 90, None),       # only 3 days after discarding day 1: NG136 wants >= 4
    (5, 140, 90, "info"),
])
def test_home_bp_average(days, sys_, dia, expected):
    window = _hbpm(days, sys_, dia)
    now = window.readings[-1].taken_at
    assert verdict(evaluate(DEFAULT["home_bp_average"], window, now)) == expected


# --- missed readings, hub, battery ---------------------------------------------------------

def _missed_rule():
    return rule_from('{at: ["08:00", "20:00"], grace: 1h, early: 2h}', kind="missed_reading")


@pytest.mark.hazard("H-013")
@pytest.mark.parametrize(("now_h", "readings_h", "expected"), [
    (8.5, [], "amber"),                      # 08:00 not due yet: yesterday 20:00 was missed
    (9.0, [], "amber"),                      # 08:00 + 1h grace passed, nothing since 06:00
    (9.0, [6.5], "clear"),                   # taken early (within 2h before the slot)
    (9.0, [5.5], "amber"),                   # too early to count for 08:00
    (20.5, [8.1], "clear"),                  # 20:00 not yet due (grace): 08:00 was met
    (21.0, [8.1], "amber"),
])
def test_missed_reading(now_h, readings_h, expected):
    day = datetime(2026, 11, 23, tzinfo=UTC)  # GMT in November: London = UTC
    window = W(*[WindowReading(f"m{h}", "spo2", day + timedelta(hours=h), {"spo2": 97})
                 for h in readings_h], monitored_since=day - timedelta(days=3))
    f = evaluate(_missed_rule(), window, day + timedelta(hours=now_h))
    assert verdict(f) == expected


@pytest.mark.hazard("H-013")
@pytest.mark.parametrize(("now_h", "readings_h", "expected"), [
    (21.0, [], "amber"),                     # 08:00 and 20:00 both missed
    (21.0, [8.1], "clear"),                  # only 20:00 missed: one slot is not two
    (9.0, [-3.5], "clear"),                  # yesterday 20:00 met (taken 20:30)
    (9.0, [-6.5], "amber"),                  # 17:30: too early for 20:00; 08:00 missed
    (21.0, [20.6], "clear"),                 # late for 20:00 but received: clears
])
def test_missed_reading_consecutive_slots(now_h, readings_h, expected):
    rule = rule_from('{at: ["08:00", "20:00"], grace: 1h, early: 2h, consecutive: 2}',
                     kind="missed_reading")
    day = datetime(2026, 11, 23, tzinfo=UTC)
    window = W(*[WindowReading(f"m{h}", "spo2", day + timedelta(hours=h), {"spo2": 97})
                 for h in readings_h], monitored_since=day - timedelta(days=3))
    f = evaluate(rule, window, day + timedelta(hours=now_h))
    assert verdict(f) == expected
    if expected == "amber":
        assert "last 2 slots" in f.summary


@pytest.mark.parametrize("value", [0, 2.5, "2", 100])
def test_missed_reading_consecutive_must_be_a_sensible_count(value):
    with pytest.raises(RuleError, match="consecutive"):
        rule_from(f'{{at: ["08:00"], consecutive: {value!r}}}', kind="missed_reading")


def test_missed_reading_slot_is_local_time_in_summer():
    day = datetime(2026, 7, 1, tzinfo=UTC)  # BST: 08:00 London = 07:00 UTC
    window = W(WindowReading("x", "spo2", day + timedelta(hours=6, minutes=30), {}),
               monitored_since=day - timedelta(days=1))
    f = evaluate(_missed_rule(), window, day + timedelta(hours=8, minutes=5))
    assert verdict(f) == "clear"  # slot 07:00 UTC, reading 06:30 UTC is within 'early'
    assert f.key == f"slot:{(day + timedelta(hours=7)).isoformat()}"


@pytest.mark.hazard("H-013")
def test_missed_reading_never_before_monitoring_began():
    day = datetime(2026, 11, 23, tzinfo=UTC)
    window = W(monitored_since=day + timedelta(hours=8, minutes=30))
    assert evaluate(_missed_rule(), window, day + timedelta(hours=10)) is None


@pytest.mark.hazard("H-014")
@pytest.mark.parametrize(("state", "state_age", "seen_age", "expected"), [
    ("offline", 20, 20, "amber"),      # last will 20 min ago (after: 15m)
    ("offline", 10, 10, None),         # not long enough yet
    ("online", 300, 300, "amber"),     # silent for 5 h (silence: 4h)
    ("online", 5, 5, "clear"),
])
def test_hub_offline(state, state_age, seen_age, expected):
    window = W(hub_id="hub-9", hub_state=state, hub_state_at=T0 - timedelta(minutes=state_age),
               hub_last_seen=T0 - timedelta(minutes=seen_age))
    assert verdict(evaluate(DEFAULT["hub_offline"], window, T0)) == expected


@pytest.mark.hazard("H-014")
@pytest.mark.parametrize(("enrolled_h", "expected"), [
    (5, "amber"),     # enrolled 5 h ago and never heard from (silence: 4h)
    (3, None),        # not yet: it may still be being set up
    (None, None),     # no enrolment start known
])
def test_a_hub_never_heard_from_is_silent_since_its_enrolment(enrolled_h, expected):
    window = W(hub_id="hub-9", hub_state=None, hub_state_at=None, hub_last_seen=None,
               monitored_since=None if enrolled_h is None else T0 - timedelta(hours=enrolled_h))
    finding = evaluate(DEFAULT["hub_offline"], window, T0)
    assert verdict(finding) == expected
    if expected:
        assert finding.detail["reason"] == "never_seen" and "nothing ever heard" in finding.summary


@pytest.mark.parametrize(("batteries", "expected"), [
    ([80, 19], "info"), ([80, 20], "clear"), ([None], None)])
def test_battery_low(batteries, expected):
    window = W(devices=tuple(DeviceView(f"A{i}", "spo2", b) for i, b in enumerate(batteries)))
    assert verdict(evaluate(DEFAULT["battery_low"], window, T0)) == expected
