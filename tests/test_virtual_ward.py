"""The virtual ward (issue 14): a seeded cohort through the real alert engine, measured.

The cohort generator is pure; the runs use a private PostgreSQL (fast) and, for the live
run, private servers, virtual devices and real edge agents."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pytest
import yaml

from alerts import rules as rules_package
from alerts.routing import load_routing
from alerts.ruleset import RuleSet, load_ruleset, parse_ruleset
from device_sim.cohort import DETERIORATIONS, CohortSpec, generate
from homeward.wire import Reading
from stack.services import PostgresServer
from stack.ward_fast import run_fast
from stack.ward_live import run_live
from stack.ward_metrics import detections, evaluate
from stack.ward_run import RunResult

ROUTING = load_routing()
SHIPPED = load_ruleset()


def _rules(edit: Callable[[dict[str, Any]], None]) -> RuleSet:
    raw = yaml.safe_load((Path(rules_package.__file__).parent / "default.yaml").read_text())
    edit(raw)
    return parse_ruleset(yaml.safe_dump(raw), source="<test rules>")


@pytest.fixture
def fast(postgres_server: PostgresServer) -> Callable[..., RunResult]:
    """Run a cohort fast on a fresh database of the session's server."""
    counter = iter(range(10_000))

    def run(cohort: Any, ruleset: RuleSet = SHIPPED) -> RunResult:
        url = postgres_server.create_database(f"ward{id(cohort)}_{next(counter)}",
                                              template="homeward_template")
        return run_fast(url, cohort, ruleset, ROUTING)
    return run


# -- the cohort ---------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_cohort_and_another_seed_another() -> None:
    spec = CohortSpec(patients=30, days=4, seed=3)
    a, b = generate(spec), generate(spec)
    assert a.readings == b.readings and a.episodes == b.episodes and a.patients == b.patients
    other = generate(dataclasses.replace(spec, seed=4))
    assert other.readings != a.readings
    # a smaller cohort is the first patients of a bigger one
    small = generate(dataclasses.replace(spec, patients=10))
    assert a.patients[:10] == small.patients


def test_every_reading_is_valid_on_the_wire_and_at_device_resolution() -> None:
    cohort = generate(CohortSpec(patients=100, days=7, seed=1))
    for number, r in enumerate(cohort.readings):
        # the wire model refuses implausible values, as the ingest would
        Reading(id=uuid.UUID(int=number), kind=r.kind, taken_at=r.taken_at, device="x",
                values=dict(r.values))
        assert r.taken_at.microsecond == 0
        for metric, value in r.values.items():
            step = {"body_temperature": 0.1, "body_weight": 0.05, "blood_glucose": 0.1}.get(
                metric, 1.0)
            assert abs(value / step - round(value / step)) < 1e-6, (metric, value)


def test_a_caseload_has_every_condition_every_scenario_and_its_faults() -> None:
    cohort = generate(CohortSpec(patients=500, days=30, seed=7))
    assert {p.condition for p in cohort.patients} == {
        "copd", "heart_failure", "hypertension", "diabetes", "post_discharge"}
    assert {e.scenario for e in cohort.episodes} == set(DETERIORATIONS)
    stable = 500 - len(cohort.episodes)
    assert 0.55 * 500 < stable < 0.85 * 500
    faults = {f for p in cohort.patients for f in p.faults.values()}
    assert faults == {"wrong_clock", "low_battery", "malformed"}
    whys = {r.why for r in cohort.readings}
    assert whys == {"scheduled", "late", "repeat"}
    for e in cohort.episodes:
        assert e.onset <= e.peak < e.harm <= e.end
        assert cohort.spec.start_at <= e.onset and e.harm < cohort.spec.end_at


def test_a_deterioration_moves_the_physiology_it_names() -> None:
    cohort = generate(CohortSpec(patients=200, days=14, seed=5, adherence=1.0))
    frame = cohort.readings_frame()
    for episode in cohort.episodes:
        mine = frame[frame["patient"] == episode.patient]
        before = mine[mine["taken_at"] < episode.onset]
        during = mine[(mine["taken_at"] >= episode.peak) & (mine["taken_at"] < episode.harm)]
        metric, direction = {
            "copd_exacerbation": ("spo2", -1), "hf_decompensation": ("body_weight", 1),
            "sepsis": ("body_temperature", 1), "hypertensive_urgency": ("systolic", 1),
            "hypoglycaemia": ("blood_glucose", -1)}[episode.scenario]
        b, d = before[metric].dropna(), during[metric].dropna()
        if len(b) and len(d):
            assert (d.mean() - b.mean()) * direction > 0, (episode, b.mean(), d.mean())


def test_a_cohort_is_written_as_csv_and_parquet(tmp_path: Path) -> None:
    cohort = generate(CohortSpec(patients=8, days=2, seed=2))
    for fmt in ("csv", "parquet"):
        paths = cohort.write(tmp_path / fmt, fmt=fmt)
        assert [p.name for p in paths] == [f"readings.{fmt}", f"episodes.{fmt}",
                                           f"patients.{fmt}"]
        back = (pd.read_csv if fmt == "csv" else pd.read_parquet)(paths[0])
        assert len(back) == len(cohort.readings)
    with pytest.raises(ValueError, match="unknown format"):
        cohort.write(tmp_path, fmt="xlsx")


# -- fast runs ----------------------------------------------------------------------------

@pytest.mark.integration
def test_the_same_seed_gives_the_same_report_twice(fast: Callable[..., RunResult]) -> None:
    cohort = generate(CohortSpec(patients=12, days=3, seed=11))
    first = evaluate(cohort, fast(cohort), SHIPPED, ROUTING)
    again = generate(CohortSpec(patients=12, days=3, seed=11))
    assert evaluate(again, fast(again), SHIPPED, ROUTING) == first
    assert first["alerts"] > 0 and first["cohort"]["episodes"] > 0


@pytest.mark.integration
def test_every_rule_disabled_gives_no_alerts_and_sensitivity_zero(
        fast: Callable[..., RunResult]) -> None:
    def disable(raw: dict[str, Any]) -> None:
        for rule in raw["rules"]:
            rule["enabled_by_default"] = False

    cohort = generate(CohortSpec(patients=12, days=3, seed=11, care_plans=False))
    report = evaluate(cohort, fast(cohort, _rules(disable)), SHIPPED, ROUTING)
    assert report["alerts"] == 0 and report["sensitivity"] == 0.0
    assert report["false_alerts_per_patient_day"] == 0.0
    assert report["readings_stored"] == sum(not r.malformed for r in cohort.readings)


@pytest.mark.integration
def test_a_tighter_threshold_alerts_sooner_and_falsely_more(
        fast: Callable[..., RunResult]) -> None:
    def tighten(raw: dict[str, Any]) -> None:
        rule = next(r for r in raw["rules"] if r["id"] == "bp_severe")
        rule["params"]["when"]["any"][0]["value"] = 160  # systolic, shipped 180

    cohort = generate(CohortSpec(patients=40, days=8, seed=21, deterioration_share=0.5,
                                 conditions={"hypertension": 1.0}))
    tight = _rules(tighten)
    shipped = evaluate(cohort, fast(cohort), SHIPPED, ROUTING)
    tighter = evaluate(cohort, fast(cohort, tight), tight, ROUTING)
    urgency = "hypertensive_urgency"
    assert tighter["scenarios"][urgency]["median_hours_to_alert"] < \
        shipped["scenarios"][urgency]["median_hours_to_alert"]
    assert tighter["rules"]["bp_severe"]["false"] > shipped["rules"].get(
        "bp_severe", {"false": 0})["false"]
    assert tighter["false_alerts_per_patient_day"] > shipped["false_alerts_per_patient_day"]


# -- fast and live ------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.hazard("H-007", "H-011")
def test_fast_and_live_agree_and_every_deterioration_reaches_the_routed_team(
        fast: Callable[..., RunResult]) -> None:
    """20 patients, 3 days: every scripted deterioration is alerted before its harm time to
    the team the routing tree names for that hour, through the engine alone and through
    devices, edge agents, broker and ingest; the two runs raise the same alerts."""
    cohort = generate(CohortSpec(patients=20, days=3, seed=7))
    assert cohort.episodes
    quick = fast(cohort)
    live = run_live(cohort, SHIPPED, ROUTING)
    assert live.readings_stored == quick.readings_stored == sum(
        not r.malformed for r in cohort.readings)
    assert live.signature() == quick.signature()
    for run in (quick, live):
        episodes = detections(cohort, run, SHIPPED, ROUTING)
        missed = episodes[~episodes["alerted"]]
        assert missed.empty, missed.to_dict("records")
        wrong = episodes[~episodes["right_team"].astype(bool)]
        assert wrong.empty, wrong.to_dict("records")
    hours = detections(cohort, quick, SHIPPED, ROUTING)["in_hours"]
    assert hours.any() and not hours.all(), "the cohort should alert both in and out of hours"


# -- the commands -------------------------------------------------------------------------

@pytest.mark.integration
def test_sim_evaluate_writes_the_report_csvs_and_charts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stack.cli import app

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["sim", "evaluate", "--patients", "6", "--days", "2",
                                      "--seed", "3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["cohort"] == {"patients": 6, "days": 2, "seed": 3, "start": "2026-11-02",
                                "readings": report["cohort"]["readings"],
                                "episodes": report["cohort"]["episodes"]}
    assert json.loads((out / "report.json").read_text()) == report
    for name in ("episodes.csv", "alerts.csv", "false-alerts.csv"):
        assert (out / name).stat().st_size > 0
    for name in ("sensitivity.png", "time-to-alert.png", "workload.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["sim", "evaluate", "--step", "2h"])
    assert bad.exit_code != 0 and "--step" in bad.output


def test_sim_cohort_writes_the_cohort(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stack.cli import app

    result = CliRunner().invoke(app, ["sim", "cohort", str(tmp_path), "--patients", "5",
                                      "--days", "2", "--format", "parquet"])
    assert result.exit_code == 0, result.output
    episodes = pd.read_parquet(tmp_path / "episodes.parquet")
    assert list(episodes.columns) == ["patient", "scenario", "onset", "peak", "harm", "end"]
    patients = pd.read_parquet(tmp_path / "patients.parquet")
    assert len(patients) == 5 and set(patients["condition"]) <= set(
        d.condition for d in DETERIORATIONS.values())
