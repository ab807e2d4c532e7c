"""NEWS2 against the RCP 2017 chart: every band edge of every parameter, both SpO2 scales,
air and oxygen, and the aggregate / single-parameter response thresholds.

Source: Royal College of Physicians, NEWS2 (2017), Chart 1 (scoring) and Charts 2 and 4
(response); transcribed in ../shared/reference/clinical.md section 4.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.news2 import score

# (value, points) on both sides of every band edge of Chart 1.
RESPIRATORY_RATE = [(4, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2),
                    (25, 3), (40, 3)]
SPO2_SCALE_1 = [(80, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(70, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0),
            (220, 3), (250, 3)]
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
         (130, 2), (131, 3), (180, 3)]
TEMPERATURE = [(34.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1),
               (39.0, 1), (39.1, 2), (41.0, 2)]
# Scale 2: (spo2, on_oxygen, points)
SPO2_SCALE_2 = [
    (80, False, 3), (83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1),
    (87, False, 1), (88, False, 0), (92, False, 0),
    (93, False, 0), (97, False, 0), (100, False, 0),          # >= 93 on air scores 0
    (83, True, 3), (84, True, 2), (86, True, 1), (88, True, 0), (92, True, 0),
    (93, True, 1), (94, True, 1), (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3),
]


@pytest.mark.parametrize(("value", "points"), RESPIRATORY_RATE)
def test_respiratory_rate_bands(value, points):
    assert score(respiratory_rate=value).parameters["respiratory_rate"] == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_1)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_bands_do_not_depend_on_oxygen(value, points, on_oxygen):
    s = score(spo2=value, on_oxygen=on_oxygen)
    assert s.parameters["spo2"] == points
    assert s.parameters["air_or_oxygen"] == (2 if on_oxygen else 0)


@pytest.mark.hazard("H-022")
@pytest.mark.parametrize(("value", "on_oxygen", "points"), SPO2_SCALE_2)
def test_spo2_scale_2_bands(value, on_oxygen, points):
    assert score(spo2=value, spo2_scale=2, on_oxygen=on_oxygen).parameters["spo2"] == points


@pytest.mark.parametrize(("value", "points"), SYSTOLIC)
def test_systolic_bands(value, points):
    assert score(systolic=value).parameters["systolic"] == points


@pytest.mark.parametrize(("value", "points"), PULSE)
def test_pulse_bands(value, points):
    assert score(pulse_rate=value).parameters["pulse_rate"] == points


@pytest.mark.parametrize(("value", "points"), TEMPERATURE)
def test_temperature_bands(value, points):
    assert score(temperature=value).parameters["temperature"] == points


@pytest.mark.parametrize(("level", "points"),
                         [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3), ("a", 0)])
def test_consciousness_acvpu(level, points):
    assert score(consciousness=level).parameters["consciousness"] == points


@pytest.mark.hazard("H-022")
@pytest.mark.parametrize(("kwargs", "points"), [
    ({"temperature": 38.04}, 0),      # rounds to 38.0
    ({"temperature": 38.05}, 1),      # rounds half-up to 38.1
    ({"temperature": 35.04}, 3),      # 35.0
    ({"temperature": 35.05}, 1),      # 35.1
    ({"respiratory_rate": 20.4}, 0),
    ({"respiratory_rate": 20.5}, 2),  # 21
    ({"pulse_rate": 90.5}, 1),        # 91
    ({"systolic": 110.4}, 1),         # 110
])
def test_values_are_rounded_to_chart_precision_before_banding(kwargs, points):
    (name,) = kwargs
    assert score(**kwargs).parameters[name] == points


def test_air_or_oxygen_scores_two_on_oxygen():
    assert score(on_oxygen=True).parameters["air_or_oxygen"] == 2
    assert score(on_oxygen=False).parameters["air_or_oxygen"] == 0


NORMAL = {"respiratory_rate": 16, "spo2": 97, "systolic": 120, "pulse_rate": 70,
          "consciousness": "A", "temperature": 37.0}


@pytest.mark.parametrize(("changes", "total", "response"), [
    ({}, 0, "low"),
    ({"pulse_rate": 95}, 1, "low"),                                         # 1
    ({"pulse_rate": 95, "temperature": 38.5, "systolic": 105, "spo2": 95}, 4, "low"),
    ({"respiratory_rate": 26}, 3, "low-medium"),                            # a single 3
    ({"consciousness": "C"}, 3, "low-medium"),
    ({"respiratory_rate": 22, "pulse_rate": 95, "spo2": 95, "systolic": 105}, 5, "medium"),
    ({"respiratory_rate": 22, "pulse_rate": 115, "spo2": 95, "systolic": 105}, 6, "medium"),
    ({"respiratory_rate": 26, "spo2": 95, "systolic": 105}, 5, "medium"),   # 3 inside 5-6
    ({"respiratory_rate": 22, "pulse_rate": 115, "spo2": 94, "systolic": 105,
      "temperature": 35.5}, 7, "high"),
    ({"respiratory_rate": 26, "spo2": 90, "systolic": 88, "pulse_rate": 135,
      "consciousness": "U", "temperature": 40.0}, 17, "high"),
])
def test_aggregate_thresholds_and_response(changes, total, response):
    s = score(**{**NORMAL, **changes})
    assert (s.total, s.response, s.partial) == (total, response, False)
    assert s.total == sum(s.parameters.values())


def test_maximum_score_is_twenty():
    s = score(respiratory_rate=5, spo2=80, on_oxygen=True, systolic=80, pulse_rate=150,
              consciousness="U", temperature=34.0)
    assert s.total == 3 + 3 + 2 + 3 + 3 + 3 + 3 == 20
    assert s.response == "high"


def test_oxygen_alone_can_move_the_band():
    assert score(**NORMAL, on_oxygen=False).total == 0
    s = score(**{**NORMAL, "pulse_rate": 115, "temperature": 38.5}, on_oxygen=True)
    assert (s.total, s.response) == (5, "medium")


def test_missing_parameters_make_a_partial_score():
    s = score(spo2=95, systolic=120, pulse_rate=80, temperature=37.2, consciousness=None)
    assert s.partial
    assert set(s.missing) == {"respiratory_rate", "consciousness"}
    assert "respiratory_rate" not in s.parameters
    assert s.total == 1
    assert not score(**NORMAL).partial
    assert score().partial  # nothing but air and the default "alert"


@pytest.mark.parametrize("bad", [{"spo2_scale": 3}, {"consciousness": "X"}])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        score(**bad)

maybe = st.none() | st.floats(min_value=0, max_value=300, allow_nan=False)


@given(rr=maybe, spo2=maybe, scale=st.sampled_from([1, 2]), o2=st.booleans(), sys_=maybe,
       pulse=maybe, avpu=st.sampled_from(["A", "C", "V", "P", "U", None]), temp=maybe)
def test_score_invariants(rr, spo2, scale, o2, sys_, pulse, avpu, temp):
    s = score(respiratory_rate=rr, spo2=spo2, spo2_scale=scale, on_oxygen=o2, systolic=sys_,
              pulse_rate=pulse, consciousness=avpu, temperature=temp)
    assert s.total == sum(s.parameters.values())
    assert all(0 <= p <= 3 for p in s.parameters.values())
    assert s.partial == (None in (rr, spo2, sys_, pulse, avpu, temp))
    expected = ("high" if s.total >= 7 else "medium" if s.total >= 5
                else "low-medium" if 3 in s.parameters.values() else "low")
    assert s.response == expected
