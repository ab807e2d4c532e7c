"""``homeward safety report`` (issue 13): each hazard's risk before and after its controls,
the controls, and each named test's outcome from the run, in Markdown and HTML; a failed
or missing piece of evidence fails the command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.safety_log import load
from stack.safety_report import evidence_for, render, report_context

ROOT = Path(__file__).resolve().parent.parent
LOG = load(ROOT / "docs" / "safety" / "hazard-log.yaml")
RUN = {"version": "0.1.0", "commit": "abc1234", "generated": "3 December 2026, 11:00 GMT",
       "python": "3.11", "platform": "linux", "seconds": 60, "command": "homeward safety report",
       "hostname": "ci"}


def results(outcome_of: dict[str, str]) -> dict[str, dict[str, object]]:
    """A run in which every test the log names passed, but those given."""
    return {test: {"outcome": outcome_of.get(test, "passed"), "duration": 0.5, "hazards": []}
            for hazard in LOG.hazards for test in hazard.tests}


@pytest.mark.parametrize(("cases", "outcome"), [
    ([], "not run"),
    (["passed", "passed"], "passed"),
    (["passed", "skipped"], "passed"),
    (["skipped"], "skipped"),
    (["passed", "failed"], "failed"),
    (["passed", "error"], "error"),
])
def test_a_named_test_s_outcome_over_its_cases(cases: list[str], outcome: str) -> None:
    run = {f"tests/t.py::test_x[{n}]": {"outcome": o, "duration": 1.0}
           for n, o in enumerate(cases)}
    run["tests/t.py::test_xy"] = {"outcome": "failed", "duration": 1.0}  # another test
    assert evidence_for("tests/t.py::test_x", run).outcome == outcome


def test_every_hazard_is_reported_with_its_risks_controls_and_evidence() -> None:
    context = report_context(LOG, results({}), [], RUN)
    markdown = render(context, "safety-report.md.j2")
    html = render(context, "safety-report.html.j2")
    assert context["passing"]
    for hazard in LOG.hazards:
        assert f"### {hazard.id}: {hazard.title}" in markdown
        assert f'id="{hazard.id}"' in html
        for control in hazard.controls:
            for test in control.tests:
                assert f"passed: `{test}`" in markdown
    first = LOG.hazards[0]
    assert (f"| {first.id} | {first.title} | {first.initial.risk} ({first.initial.severity}, "
            f"{first.initial.likelihood} likelihood) | {first.residual.risk} (") in markdown
    assert "Every control's evidence passed" in markdown


def test_a_failed_test_and_a_disagreement_are_the_verdict() -> None:
    failing = LOG.hazards[0].tests[0]
    context = report_context(LOG, results({failing: "failed"}), ["H-001: x is not marked"], RUN)
    markdown = render(context, "safety-report.md.j2")
    assert not context["passing"]
    assert f"failed: `{failing}`" in markdown
    assert "Not every control's evidence passed" in markdown
    assert "H-001: x is not marked" in markdown
    summary = next(h for h in context["hazards"] if h["hazard"].id == LOG.hazards[0].id)
    assert summary["verdict"].startswith("1 of ")


def test_markup_in_the_log_is_escaped_in_html() -> None:
    context = report_context(LOG, results({}), ["<script>alert(1)</script>"], RUN)
    html = render(context, "safety-report.html.j2")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_the_command_reports_again_from_a_stored_run_and_fails_on_failed_evidence(
        tmp_path: Path) -> None:
    homeward = shutil.which("homeward", path=str(Path(sys.executable).parent))
    assert homeward is not None
    out = tmp_path / "report"
    out.mkdir()
    failing = LOG.hazards[1].tests[0]
    (out / "results.json").write_text(json.dumps({"results": results({failing: "failed"}),
                                                  "collected": {}, "exitstatus": 1}))
    done = subprocess.run([homeward, "safety", "report", "--no-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed" in done.stdout and "0 consistency problem(s)" in done.stdout
    markdown = (out / "safety-case-report.md").read_text()
    assert f"failed: `{failing}`" in markdown
    assert (out / "safety-case-report.html").read_text().startswith("<!doctype html>")


def test_the_command_outside_a_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    homeward = shutil.which("homeward", path=str(Path(sys.executable).parent))
    assert homeward is not None
    done = subprocess.run([homeward, "safety", "report"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "run this in a Homeward checkout" in done.stderr
