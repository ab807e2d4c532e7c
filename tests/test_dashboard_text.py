"""How the dashboard words times, readings and rules (pure functions, no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.ruleset import load_ruleset
from server.api import clinical_text, humantime

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)        # GMT: London = UTC
SUMMER = datetime(2026, 7, 15, 9, 30, tzinfo=UTC)     # BST: London = UTC + 1


@pytest.mark.parametrize(("at", "now", "clock"), [
    (NOW - timedelta(minutes=88), NOW, "08:02 today"),
    (NOW - timedelta(hours=16), NOW, "yesterday 17:30"),
    (NOW + timedelta(hours=15), NOW, "tomorrow 00:30"),
    (NOW - timedelta(days=3), NOW, "Sun 09:30"),
    (NOW - timedelta(days=40), NOW, "23 Oct 10:30"),        # 23 Oct was still BST
    (NOW - timedelta(days=400), NOW, "28 Oct 2025 09:30"),
    (SUMMER - timedelta(minutes=30), SUMMER, "10:00 today"),  # 09:00 UTC is 10:00 BST
    (datetime(2026, 7, 14, 23, 30, tzinfo=UTC), SUMMER, "00:30 today"),  # a London day
])
def test_clock_words_are_london_local(at: datetime, now: datetime, clock: str) -> None:
    assert humantime.clock(at, now) == clock


@pytest.mark.parametrize(("delta", "words"), [
    (timedelta(seconds=10), "just now"),
    (timedelta(minutes=5), "5 min ago"),
    (timedelta(hours=3), "3 h ago"),
    (timedelta(hours=2, minutes=15), "2 h 15 min ago"),
    (timedelta(hours=8, minutes=15), "8 h ago"),
    (timedelta(days=2, hours=5), "2 d ago"),
    (-timedelta(minutes=20), "in 20 min"),
    (-timedelta(seconds=20), "in under a minute"),
])
def test_ago_words(delta: timedelta, words: str) -> None:
    assert humantime.ago(NOW - delta, NOW) == words


def test_the_filter_gives_the_exact_time_on_hover() -> None:
    html = humantime.when("2026-07-15T08:02:13+00:00", now=SUMMER)
    assert html == ('<time datetime="2026-07-15T08:02:13Z" title="Wed 15 Jul 2026 09:02:13 BST">'
                    "09:02 today</time>")
    assert 'data-rel="ago"' in humantime.when(NOW, "ago", now=NOW)
    assert humantime.when(None) == '<span class="none">—</span>'


@pytest.mark.parametrize(("born", "age"), [
    ("1948-12-02", 78), ("1948-12-03", 77), (None, None)])
def test_age_in_whole_years(born: str | None, age: int | None) -> None:
    assert humantime.age_years(born, NOW) == age


@pytest.mark.parametrize(("kind", "values", "text"), [
    ("blood_pressure", {"systolic": 192, "diastolic": 110, "mean_arterial": 137,
                        "pulse_rate": 71}, "192/110 mmHg, pulse 71/min"),
    ("spo2", {"spo2": 91, "pulse_rate": 80}, "91 %, pulse 80/min"),
    ("temperature", {"body_temperature": 38.2}, "38.2 °C"),
    ("weight", {"body_weight": 83.4}, "83.4 kg"),
    ("respiratory_rate", {"respiratory_rate": 22}, "22/min"),
    ("glucose", {}, ""),
])
def test_reading_values_as_a_nurse_writes_them(kind: str, values: dict[str, float],
                                               text: str) -> None:
    assert clinical_text.format_values(kind, values) == text


def test_every_shipped_rule_reads_in_words_without_raw_parameters() -> None:
    for rule in load_ruleset().rules:
        words = clinical_text.rule_in_words(rule.as_json())
        assert words, rule.id
        assert not any(w.startswith("Parameters:") for w in words), (rule.id, words)


def test_threshold_rules_in_words_and_their_lines() -> None:
    rules = load_ruleset().by_id()
    spo2 = rules["spo2_low"].as_json()
    assert clinical_text.rule_in_words(spo2) == [
        "Amber when SpO₂ ≤ 94 %.", "Red when SpO₂ ≤ 92 %.",
        "Clears when SpO₂ ≥ 95 % on 2 readings in a row."]
    lines = clinical_text.thresholds("spo2_low", "red", spo2["params"])
    assert [(t.severity, t.op, t.value) for t in lines] == [("amber", "<=", 94.0),
                                                            ("red", "<=", 92.0)]
    bp = rules["bp_severe"].as_json()
    assert [(t.metric, t.value, t.severity) for t in
            clinical_text.thresholds("bp_severe", "red", bp["params"])] == [
        ("systolic", 180.0, "red"), ("diastolic", 120.0, "red")]


def test_the_threshold_editor_finds_every_number_with_its_path() -> None:
    params = load_ruleset().by_id()["bp_severe"].raw_params
    assert clinical_text.editable_limits(params) == [
        ("when.any.0.value", "systolic", ">=", 180.0),
        ("when.any.1.value", "diastolic", ">=", 120.0)]
